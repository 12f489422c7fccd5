"""Train the music-or-words decision head (:mod:`talkplay.decision`) of a bundle's packaged checkpoint.

    python -m train.training.decision --catalog catalog/demo    # → <bundle>/model/decision.safetensors,
                                                                #   reports/decision_<catalog>.{json,md}

The head is a logistic regression on the model's last hidden state after the assistant header, computed by the
engine itself (:meth:`talkplay.recommender.Recommender.forward_hidden`, same precision as it serves). Its messages
are synthetic, from the bundle's own data:

* words only (0): the turns of :mod:`train.data.talk_turns` (greetings, thanks, goodbyes, questions about the app
  or about the playing track), after 0–3 music turns of a conversation;
* music (1): the conversations' own requests at a random turn, first requests of :mod:`train.data.text_requests`,
  short follow-ups after a played track (``talk_turns.FOLLOW_UPS``: "next", "one more") and thanks joined to the
  next request ("thanks! now something upbeat").

The L2 weight and the threshold are chosen on the validation split (balanced accuracy); the held-out messages of
``eval/dialogue_acts.jsonl`` are never read here (``train.evaluation.conversation_checks`` measures on them).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.training.decision")

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

L2_GRID = (1e-3, 1e-2, 1e-1)
THRESHOLDS = tuple(round(x, 2) for x in np.arange(0.1, 0.91, 0.05))


def messages(bundle: Path, split: str, n: int, seed: int) -> list[tuple]:
    """(state, text, label, kind) for ``split``: n words-only turns, n conversation requests, n/2 first requests,
    n/4 short follow-ups and n/4 thanks-then-request messages."""
    from talkplay.catalog import load_catalog
    from talkplay.conversation import ConversationState
    from train.data.build import conversations_path
    from train.data.conversation_schema import read_conversations
    from train.data.talk_turns import FOLLOW_UPS, USER, talk_conversations
    from train.data.text_requests import bundle_requests
    from train.evaluation.model_eval import state_from_history

    catalog = load_catalog(bundle)
    convs = read_conversations(conversations_path(bundle, split), catalog)
    rng = random.Random(f"decision:{split}:{seed}")
    out = []
    for t in talk_conversations(rng.sample(convs, min(n, len(convs))), catalog, seed=seed, follow_share=0.0):
        state, text = state_from_history(list(t.messages[:-1]))
        out.append((state, text, 0, t.act))
    for conv in rng.sample(convs, min(n, len(convs))):
        msgs = list(conv.messages)
        i = 3 * rng.randrange(len(msgs) // 3)
        state, text = state_from_history(msgs[:i + 1])
        out.append((state, text, 1, "request"))
    firsts = bundle_requests(bundle, 1, seed if split == "train" else seed + 1000)
    for r in rng.sample(firsts, min(n // 2, len(firsts))):
        out.append((ConversationState(), r.text, 1, "first_request"))
    for conv in rng.sample(convs, min(n // 4, len(convs))):
        k = rng.randint(1, 3)
        msgs = list(conv.messages)
        state, _ = state_from_history(msgs[:3 * k + 1])
        out.append((state, rng.choice(FOLLOW_UPS), 1, "follow_up"))
    for conv in rng.sample(convs, min(n // 4, len(convs))):
        msgs = list(conv.messages)
        state, text = state_from_history(msgs[:4])  # after the first turn: thanks, then the next request
        out.append((state, f"{rng.choice(USER['thanks'])}! {text}", 1, "thanks_then_request"))
    return out


@torch.no_grad()
def features(rec, items: list[tuple], log=print) -> np.ndarray:
    """The hidden state after the assistant header for each (state, text, …), as the engine computes it."""
    from transformers import DynamicCache

    out = []
    for k, (state, text, *_) in enumerate(items, 1):
        prompt = rec._prompt(state, text)
        _, hidden = rec.forward_hidden(torch.tensor([prompt]), DynamicCache(), 1, len(prompt) - 2)
        out.append(hidden.float().cpu().numpy())
        if k % 200 == 0:
            log(f"  {k}/{len(items)} hidden states")
    return np.stack(out).astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression (L-BFGS) on standardized ``x``; returns (weight, bias)."""
    X, Y = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    pos = float(Y.mean())
    weight = torch.where(Y > 0, 0.5 / pos, 0.5 / (1 - pos))
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(X @ w + b, Y, reduction="none")).mean()
        loss = loss + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def balanced(p: np.ndarray, y: np.ndarray, threshold: float) -> float:
    music = p >= threshold
    return float((music[y == 1].mean() + (~music[y == 0]).mean()) / 2)


def train_head(rec, bundle: Path, n_train: int, n_valid: int, seed: int = 0, log=print,
               cache: Path | None = None) -> tuple:
    """Fit the head; returns (MusicDecision, report dict). ``cache``: an .npz keeping the hidden states (they take
    minutes; the fit takes seconds).

    Choice on the validation split: the best balanced accuracy; among equals, the lowest validation log-loss (the
    better calibrated L2) and then the middle of the thresholds that reach it (the widest margin both ways)."""
    from talkplay.decision import MusicDecision

    t0 = time.perf_counter()
    train, valid = messages(bundle, "train", n_train, seed), messages(bundle, "valid", n_valid, seed)
    log(f"{len(train)} training and {len(valid)} validation messages")
    if cache is not None and cache.exists():  # the same messages' hidden states from an earlier run
        saved = np.load(cache)
        xt, xv = saved["train"], saved["valid"]
        if len(xt) != len(train) or len(xv) != len(valid):
            raise ValueError(f"{cache}: cached hidden states are for other messages; delete it")
    else:
        xt, xv = features(rec, train, log), features(rec, valid, log)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, train=xt, valid=xv)
    yt, yv = np.array([m[2] for m in train]), np.array([m[2] for m in valid])
    mean, scale = xt.mean(0), xt.std(0) + 1e-6
    zt, zv = (xt - mean) / scale, (xv - mean) / scale
    grid, fits = [], []
    for l2 in L2_GRID:
        w, b = fit_logistic(zt, yt, l2)
        pv = np.clip(1 / (1 + np.exp(-(zv @ w + b))), 1e-9, 1 - 1e-9)
        loss = float(-np.mean(yv * np.log(pv) + (1 - yv) * np.log(1 - pv)))
        rows = [{"l2": l2, "threshold": th, "valid_balanced_accuracy": round(balanced(pv, yv, th), 4),
                 "valid_log_loss": round(loss, 4)} for th in THRESHOLDS]
        grid += rows
        top = max(r["valid_balanced_accuracy"] for r in rows)
        tied = [r for r in rows if r["valid_balanced_accuracy"] == top]
        fits.append((top, -loss, tied[len(tied) // 2], w, b, pv))
    _, _, row, w, b, pv = max(fits, key=lambda f: (f[0], f[1]))
    head = MusicDecision(w, b, mean, scale, row["threshold"])
    kinds = sorted({m[3] for m in valid})
    by_kind = {k: round(float(np.mean([(p >= head.threshold) == bool(m[2]) for p, m in zip(pv, valid) if m[3] == k])), 4)
               for k in kinds}
    report = {"catalog": bundle.name, "train_messages": dict(Counter(m[3] for m in train)),
              "valid_messages": dict(Counter(m[3] for m in valid)), "chosen": row, "valid_by_kind": by_kind,
              "grid": grid, "seconds": round(time.perf_counter() - t0, 1)}
    return head, report


def markdown(r: dict, command: str) -> str:
    c = r["chosen"]
    lines = [f"# Music or words: the decision head — `{r['catalog']}`", "",
             "A logistic head on the model's last hidden state after the assistant header (`talkplay.decision`), "
             "trained on synthetic messages of the bundle's train split and chosen on its validation split "
             f"(L2 {c['l2']}, threshold {c['threshold']}: balanced accuracy **{c['valid_balanced_accuracy']:.1%}**). "
             "The held-out messages people might send are measured by `python -m train.evaluation.conversation_checks` "
             "(reports/conversation_checks.md), never used here.", "",
             f"Reproduce: `{command}`.", "",
             "| validation messages | count | right |", "|---|---|---|"]
    for kind, n in sorted(r["valid_messages"].items()):
        lines.append(f"| {kind} | {n} | {r['valid_by_kind'][kind]:.0%} |")
    lines += ["", "Training messages: " + ", ".join(f"{k} {v}" for k, v in sorted(r["train_messages"].items())) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.training.decision", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle with model/ and data/")
    p.add_argument("--train-messages", type=int, default=400, help="words-only turns (and as many requests) to fit on")
    p.add_argument("--valid-messages", type=int, default=120, help="the same from the validation split")
    p.add_argument("--precision", default="bf16", help="model precision on CPU (as the engine serves)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="an .npz keeping the messages' hidden states between runs")
    p.add_argument("--reports", type=Path, default=Path("reports"), help="where decision_<catalog>.{json,md} go")
    args = p.parse_args(argv)
    from talkplay.checkpoint import checkpoint_dir
    from talkplay.decision import DECISION_FILE
    from talkplay.recommender import load_recommender

    rec = load_recommender(args.catalog, "cpu", args.precision)
    rec.decision = None  # features only; a head already there is replaced
    head, report = train_head(rec, args.catalog, args.train_messages, args.valid_messages, args.seed,
                              cache=args.cache)
    path = head.save(checkpoint_dir(args.catalog) / DECISION_FILE,
                     {"valid_balanced_accuracy": str(report["chosen"]["valid_balanced_accuracy"]),
                      "precision": args.precision, "synthetic_data": "true"})
    command = "python -m train.training.decision " + " ".join(argv if argv is not None else sys.argv[1:])
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / f"decision_{args.catalog.name}.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.reports / f"decision_{args.catalog.name}.md").write_text(markdown(report, command.strip()))
    print(f"wrote {path}; validation balanced accuracy {report['chosen']['valid_balanced_accuracy']:.3f} "
          f"(L2 {report['chosen']['l2']}, threshold {report['chosen']['threshold']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

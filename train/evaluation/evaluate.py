"""Held-out evaluation of conversational recommenders, turn by turn (the TalkPlay paper's Table 2).

    python -m train.evaluation.evaluate --catalog catalog/demo        # every system → reports/eval_demo.{json,md}, _turns.png
    python -m train.evaluation.evaluate --catalog catalog/demo --systems random popularity bm25 dense item2vec --name baselines

Systems: the retrieval baselines of :mod:`train.evaluation.baselines` (built from the TRAIN split) and the bundle's own
model (:mod:`train.evaluation.model_eval`): ``talkplay`` (constrained, log-likelihood ranking) and ``talkplay-paper``
(free generation + weighted partial matching, with its exact/partial/no-match counts).

For each conversation of the split and each turn ``user → music → assistant``, the system sees the
conversation so far (every earlier message plus this turn's user request; earlier music messages are the
tracks already played) and ranks the whole catalog; the target is that turn's track.

* Turns whose track is *rejected* are not targets (the listener turned it down, so it is not a relevant
  item) but stay in the history of later turns, rejection text included.
* Tracks already played in the conversation are removed from the candidates (they cannot be the
  target: a conversation never repeats a track).
* Ties are pessimistic (``train.evaluation.metrics``); the top-1 recommendation for coverage/diversity is the
  highest score, ties broken by catalog order.

Reported per system: MRR, Hit@{1,10,100}, nDCG@{1,10,20} macro over turns and over conversations,
per-turn-index curves, warm vs cold-start targets (cold ids from ``<bundle>/splits.json``), catalog
coverage of the top-1 and top-10 lists and the normalized entropy of top-1 recommendations. The
audio-text baseline of the paper (CLAP-style) is reported as not available: no offline audio-text model.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.evaluation.evaluate")

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkplay.catalog import Catalog, atomic_write, load_catalog
from train.evaluation.baselines import BASELINES, Ranker, build_baselines, played_ids
from train.data.conversation_schema import Conversation, Message
from train.evaluation.metrics import (
    DEFAULT_SPEC,
    MetricSpec,
    macro_over_conversations,
    macro_over_turns,
    mean_metrics,
    rank_of,
)

AUDIO_TEXT_NOTE = "audio-text baseline: not available (no offline audio-text model)"
MODEL_SYSTEMS = ("talkplay", "talkplay-paper")  # the bundle's own model (train.evaluation.model_eval)
TIE_POLICY = "pessimistic: a target tied with other candidates ranks after all of them"


@dataclass(frozen=True)
class EvalTurn:
    """One evaluated turn: what the system sees and the track it should rank first."""

    conversation_id: str
    turn: int  # 1-based turn index within the conversation
    history: tuple[Message, ...]  # messages before this turn's music message
    target: str  # track id
    cold: bool  # the target is a cold-start track
    held_out: bool = False  # the request uses a phrasing or slot word held out of training


def eval_turns(conversations: Sequence[Conversation], cold: set[str] = frozenset()) -> tuple[list[EvalTurn], int]:
    """The turns to evaluate and the number of rejected turns skipped as targets."""
    out, skipped = [], 0
    for c in conversations:
        for t, i in enumerate(range(0, len(c.messages) - 2, 3), 1):
            music = c.messages[i + 1]
            if music.rejected:
                skipped += 1
                continue
            out.append(EvalTurn(c.conversation_id, t, c.messages[: i + 1], music.content, music.content in cold,
                                bool(getattr(c.messages[i], "held_out", False))))
    return out, skipped


def cold_track_ids(bundle: Path) -> set[str]:
    path = bundle / "splits.json"
    if not path.exists():
        return set()
    return set(json.loads(path.read_text(encoding="utf-8")).get("cold_start_track_ids", []))


def _entropy(counts: Counter, n_items: int) -> float:
    total = sum(counts.values())
    if total == 0 or n_items < 2:
        return 0.0
    p = np.array(list(counts.values()), np.float64) / total
    return float(-(p * np.log(p)).sum() / math.log(n_items))


class ScoreCache:
    """Per-turn scores of one system, appended as JSON lines so a long evaluation resumes where it stopped.

    The file name carries a key (system, catalog and checkpoint versions, split, seed, precision); a line is
    ``{"conversation_id", "turn", "scores", "info"}`` where ``info`` is what the ranker needs to restore its
    own counters (``ranker.turn_info()`` / ``ranker.restore(info)``, e.g. paper-mode match counts). A torn
    last line (process killed mid-write) is ignored and recomputed.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: dict[tuple[str, int], dict] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.rows[(row["conversation_id"], row["turn"])] = row

    def get(self, turn: EvalTurn) -> dict | None:
        return self.rows.get((turn.conversation_id, turn.turn))

    def put(self, turn: EvalTurn, scores: np.ndarray, info: dict | None) -> None:
        row = {"conversation_id": turn.conversation_id, "turn": turn.turn,
               "scores": [None if not math.isfinite(x) else round(float(x), 6) for x in scores], "info": info}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
        self.rows[(turn.conversation_id, turn.turn)] = row

    @staticmethod
    def decode(row: dict) -> np.ndarray:
        return np.asarray([-np.inf if x is None else x for x in row["scores"]], dtype=np.float64)


def evaluate_ranker(ranker: Ranker, turns: Sequence[EvalTurn], catalog: Catalog, spec: MetricSpec = DEFAULT_SPEC,
                    cache: ScoreCache | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Metrics of one ranker over the given turns (scores read from / appended to ``cache`` when given)."""
    t0 = time.perf_counter()
    ids = [t.track_id for t in catalog.tracks]
    index = {t: i for i, t in enumerate(ids)}
    if hasattr(ranker, "prepare"):
        ranker.prepare([t.history for t in turns], catalog)
    by_conv: dict[str, list[int]] = {}
    by_turn: dict[int, list[int]] = {}
    warm, cold, held, seen = [], [], [], []
    ranks: list[list] = []  # [conversation id, turn, rank] per turn: the paired bootstrap reads them
    top1: Counter = Counter()
    top10: set[str] = set()
    hits = 0
    for n, turn in enumerate(turns, 1):
        if turn.target not in index:
            raise KeyError(f"conversation {turn.conversation_id!r}, turn {turn.turn}: target track {turn.target!r} "
                           f"is not in catalog {catalog.root}")
        row = cache.get(turn) if cache is not None else None
        if row is not None and len(row["scores"]) == len(ids):
            scores, hits = ScoreCache.decode(row), hits + 1
            if hasattr(ranker, "restore"):
                ranker.restore(row.get("info"))
        else:
            scores = np.asarray(ranker.scores(turn.history, catalog), dtype=np.float64)
            if cache is not None:
                cache.put(turn, scores, ranker.turn_info() if hasattr(ranker, "turn_info") else None)
        if cache is not None and n % 50 == 0:
            log(f"  {getattr(ranker, 'name', '?')}: {n}/{len(turns)} turns ({hits} from cache, "
                f"{time.perf_counter() - t0:.0f} s)")
        if scores.shape != (len(ids),):
            raise ValueError(f"ranker {getattr(ranker, 'name', ranker)!r} returned shape {scores.shape}, "
                             f"expected ({len(ids)},)")
        mask = np.zeros(len(ids), bool)
        mask[[index[p] for p in played_ids(turn.history) if p in index]] = True
        rank = rank_of(scores, index[turn.target], mask)
        by_conv.setdefault(turn.conversation_id, []).append(rank)
        by_turn.setdefault(turn.turn, []).append(rank)
        (cold if turn.cold else warm).append(rank)
        (held if turn.held_out else seen).append(rank)
        ranks.append([turn.conversation_id, turn.turn, rank])
        masked = np.where(mask, -np.inf, scores)
        top1[ids[int(np.argmax(masked))]] += 1
        top10.update(ids[j] for j in np.argsort(-masked, kind="stable")[:10])
    return {
        "macro_over_turns": macro_over_turns(by_conv, spec),
        "macro_over_conversations": macro_over_conversations(by_conv, spec),
        "warm": mean_metrics(warm, spec),
        "cold": mean_metrics(cold, spec),
        "held_out_phrasing": mean_metrics(held, spec),
        "seen_phrasing": mean_metrics(seen, spec),
        "ranks": ranks,
        "by_turn": [{"turn": k, **mean_metrics(v, spec)} for k, v in sorted(by_turn.items())],
        "coverage": {"top1_distinct": len(top1), "top1_coverage": len(top1) / len(ids),
                     "top10_coverage": len(top10) / len(ids), "top1_entropy": _entropy(top1, len(ids)),
                     "top1_most_common": top1.most_common(1)[0][0] if top1 else None,
                     "top1_most_common_share": top1.most_common(1)[0][1] / len(turns) if top1 else 0.0},
        "seconds": round(time.perf_counter() - t0, 2),
        "turns_from_cache": hits,
    }


def evaluate_systems(bundle: str | Path, systems: Mapping[str, Ranker] | Sequence[str], split: str = "test",
                     max_conversations: int | None = None, spec: MetricSpec = DEFAULT_SPEC,
                     cache_dir: str | Path | None = None, seed: int = 0,
                     log: Callable[[str], None] = lambda s: None, score_cache: Callable[[str], ScoreCache | None] | None = None,
                     shard: tuple[int, int] | None = None) -> dict:
    """Evaluate rankers (or baseline names, built from the bundle's TRAIN data) on a split.

    ``score_cache(name)`` gives the resumable per-turn cache of a system (or None: computed every time).
    ``shard=(k, n)`` evaluates only turns k, k+n, k+2n, … (parallel processes filling one score cache; the
    metrics of a shard alone are not the report's).
    Returns a JSON-ready dict: settings, counts and, per system, the metrics of ``evaluate_ranker``.
    """
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    bundle = Path(bundle)
    catalog = load_catalog(bundle)
    conversations = read_conversations(conversations_path(bundle, split), catalog)
    if max_conversations is not None:
        conversations = conversations[:max_conversations]
    cold = cold_track_ids(bundle)
    turns, skipped = eval_turns(conversations, cold)
    if shard is not None:
        turns = turns[shard[0]::shard[1]]
    build_seconds = {}
    if not isinstance(systems, Mapping):
        from talkplay.bundle import read_playlists

        t0 = time.perf_counter()
        train_playlists = [p.track_ids for p in read_playlists(bundle) if p.split == "train"]
        train_convs = read_conversations(conversations_path(bundle, "train"))
        systems = build_baselines(list(systems), train_playlists, train_convs, seed, cache_dir)
        build_seconds["build_baselines"] = round(time.perf_counter() - t0, 2)
    results = {}
    for name, ranker in systems.items():
        log(f"evaluating {name} on {len(turns)} turns …")
        results[name] = evaluate_ranker(ranker, turns, catalog, spec,
                                        score_cache(name) if score_cache is not None else None, log)
        log(f"  {name}: MRR {results[name]['macro_over_turns']['mrr']:.4f} ({results[name]['seconds']} s)")
    comparison = compare_to_baselines(results, seed=seed)
    for r in results.values():
        r.pop("ranks", None)  # per-turn ranks: read by the comparison above, too long for the report
    return {
        "comparison": comparison,
        "catalog": catalog.name, "bundle": str(bundle), "split": split, "tracks": len(catalog),
        "conversations": len(conversations), "turns": len(turns), "cold_turns": sum(t.cold for t in turns),
        "skipped_rejected_turns": skipped, "metrics": list(spec.names), "tie_policy": TIE_POLICY,
        "played_tracks": "excluded from the candidates",
        "synthetic_data": any(c.synthetic for c in conversations),
        "not_available": {"audio-text": AUDIO_TEXT_NOTE}, "timing": build_seconds, "systems": results,
    }


# ---------------------------------------------------------------- paired comparison

GOALS = {"all": 1.3, "first": 1.5}  # the model's MRR ≥ goal × the best baseline's: all turns, first turns


def _mrr_by_conversation(ranks: Sequence[Sequence], first_only: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for conv, turn, rank in ranks:
        if not first_only or turn == 1:
            out.setdefault(conv, []).append(1.0 / rank)
    return out


def paired_bootstrap(a: Sequence[Sequence], b: Sequence[Sequence], ratio: float = 1.0, first_only: bool = False,
                     resamples: int = 2000, seed: int = 0) -> dict:
    """MRR of A − ``ratio`` × MRR of B over the same turns (macro over turns), with a 95 % interval from
    resampling whole conversations (a conversation's turns are not independent). ``a``/``b``: [conversation,
    turn, rank] rows of two systems on the same turns."""
    ra, rb = _mrr_by_conversation(a, first_only), _mrr_by_conversation(b, first_only)
    if set(ra) != set(rb) or any(len(ra[c]) != len(rb[c]) for c in ra):
        raise ValueError("paired_bootstrap: the two systems were evaluated on different turns")
    convs = sorted(ra)
    if not convs:
        return {"n_turns": 0, "n_conversations": 0}
    sa = np.asarray([sum(ra[c]) for c in convs])
    sb = np.asarray([sum(rb[c]) for c in convs])
    n = np.asarray([len(ra[c]) for c in convs])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(convs), size=(resamples, len(convs)))
    tot = n[idx].sum(axis=1)
    diff = (sa[idx].sum(axis=1) - ratio * sb[idx].sum(axis=1)) / tot
    lo, hi = np.quantile(diff, [0.025, 0.975])
    return {"n_turns": int(n.sum()), "n_conversations": len(convs), "mrr_a": float(sa.sum() / n.sum()),
            "mrr_b": float(sb.sum() / n.sum()), "ratio": ratio,
            "difference": float((sa.sum() - ratio * sb.sum()) / n.sum()), "ci95": [float(lo), float(hi)]}


def compare_to_baselines(results: Mapping[str, dict], seed: int = 0) -> dict:
    """For each model system: the best baseline (by MRR, all turns and first turns apart) and the paired
    bootstrap of the model's MRR against it — the plain difference and against the goal (``GOALS``)."""
    baselines = {k: v for k, v in results.items() if k not in MODEL_SYSTEMS and v.get("ranks")}
    out: dict[str, dict] = {}
    for name in MODEL_SYSTEMS:
        if name not in results or not baselines:
            continue
        rows = results[name]["ranks"]
        out[name] = {}
        for scope, goal in GOALS.items():
            first = scope == "first"
            best = max(baselines, key=lambda b: paired_bootstrap(rows, baselines[b]["ranks"], 1.0, first, 1)["mrr_b"])
            other = baselines[best]["ranks"]
            out[name][scope] = {"best_baseline": best, "goal_ratio": goal,
                                "vs_best": paired_bootstrap(rows, other, 1.0, first, seed=seed),
                                "vs_goal": paired_bootstrap(rows, other, goal, first, seed=seed)}
    return out


def comparison_markdown(comparison: Mapping[str, dict]) -> list[str]:
    if not comparison:
        return []
    lines = ["## The model against the best baseline (paired bootstrap over conversations)", "",
             "| system | turns | best baseline | its MRR | model MRR | ratio | model − baseline (95 % CI) | "
             "model − goal × baseline (95 % CI) |", "|---|---|---|---|---|---|---|---|"]
    for name, scopes in comparison.items():
        for scope, c in scopes.items():
            v, g = c["vs_best"], c["vs_goal"]
            if not v.get("n_turns"):
                continue
            ratio = v["mrr_a"] / v["mrr_b"] if v["mrr_b"] else float("inf")
            lines.append(f"| {name} | {'all' if scope == 'all' else 'first'} ({v['n_turns']}) | {c['best_baseline']} | "
                         f"{v['mrr_b']:.4f} | {v['mrr_a']:.4f} | {ratio:.2f}× | {v['difference']:+.4f} "
                         f"[{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] | {g['difference']:+.4f} "
                         f"[{g['ci95'][0]:+.4f}, {g['ci95'][1]:+.4f}] (goal {c['goal_ratio']}×) |")
    return lines + ["", "An interval above 0 in the last column means the goal is met with 95 % confidence "
                        "(resampling whole conversations, 2,000 times).", ""]


# ---------------------------------------------------------------- report


def _row(name: str, m: dict, names: Sequence[str]) -> str:
    cells = ["—" if (isinstance(m[k], float) and math.isnan(m[k])) else f"{m[k]:.4f}" for k in names]
    return f"| {name} | " + " | ".join(cells) + f" | {m['n']} |"


def markdown_report(result: dict) -> str:
    """Tables for a result of ``evaluate_systems``."""
    names = result["metrics"]
    head = "| system | " + " | ".join(n.replace("mrr", "MRR").replace("hit", "Hit").replace("ndcg", "nDCG")
                                     for n in names) + " | n |"
    rule = "|---|" + "---|" * (len(names) + 1)
    systems = result["systems"]
    lines = [f"# Evaluation — `{result['catalog']}` catalog, {result['split']} split", "",
             f"{result['conversations']} conversations, {result['turns']} evaluated turns "
             f"({result['cold_turns']} with a cold-start target; {result['skipped_rejected_turns']} rejected turns "
             f"kept in history but not evaluated), {result['tracks']} candidate tracks.", ""]
    if result.get("synthetic_data"):
        lines += ["The conversations are **synthetic** (see the data report); numbers compare systems on this data, "
                  "not real listeners.", ""]
    lines += [f"Ties: {result['tie_policy']}. Already-played tracks are {result['played_tracks']}.", "",
              f"- {result['not_available']['audio-text']}", ""]
    for title, key in (("Macro over turns (Table 2)", "macro_over_turns"),
                       ("Macro over conversations", "macro_over_conversations"),
                       ("Warm targets", "warm"), ("Cold-start targets", "cold"),
                       ("Requests in held-out phrasings (templates or slot words never seen in training)",
                        "held_out_phrasing"), ("Requests in phrasings seen in training", "seen_phrasing")):
        if not all(key in r for r in systems.values()):
            continue
        lines += [f"## {title}", "", head, rule]
        lines += [_row(s, r[key], names) for s, r in systems.items()]
        lines += ["", ""]
    lines += comparison_markdown(result.get("comparison") or {})
    turns = sorted({b["turn"] for r in systems.values() for b in r["by_turn"]})
    lines += ["## MRR by turn index", "", "| system | " + " | ".join(str(t) for t in turns) + " |",
              "|---|" + "---|" * len(turns)]
    for s, r in systems.items():
        by = {b["turn"]: b["mrr"] for b in r["by_turn"]}
        lines.append(f"| {s} | " + " | ".join(f"{by[t]:.3f}" if t in by else "—" for t in turns) + " |")
    lines += ["", "Turns per index: " + ", ".join(
        f"{b['turn']}: {b['n']}" for b in next(iter(systems.values()))["by_turn"]) if systems else "", "",
              "## Coverage and diversity of recommendations", "",
              "| system | distinct top-1 | top-1 coverage | top-10 coverage | top-1 entropy (norm.) | most frequent top-1 (share) | seconds |",
              "|---|---|---|---|---|---|---|"]
    for s, r in systems.items():
        c = r["coverage"]
        lines.append(f"| {s} | {c['top1_distinct']} | {c['top1_coverage']:.3f} | {c['top10_coverage']:.3f} | "
                     f"{c['top1_entropy']:.3f} | {c['top1_most_common']} ({c['top1_most_common_share']:.3f}) | "
                     f"{r['seconds']}{' (scores from the resumable cache)' if r.get('turns_from_cache') else ''} |")
    lines += ["", f"Regenerate: `{result.get('command') or 'python -m train.evaluation.evaluate --catalog ' + result['bundle']}`.", ""]
    return "\n".join(lines)


def write_report(result: dict, out_dir: Path, suffix: str = "") -> tuple[Path, Path]:
    """Write ``eval_<catalog>[_<suffix>].json``, ``.md`` and ``_turns.png`` (MRR per turn index) under ``out_dir``."""
    stem = f"eval_{result['catalog']}" + (f"_{suffix}" if suffix else "")
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=2, allow_nan=True) + "\n"
    atomic_write(js, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    report = markdown_report(result)
    if result.get("paper_mode"):
        from train.evaluation.model_eval import paper_markdown

        report += "\n" + paper_markdown(result["paper_mode"])
    atomic_write(md, lambda tmp: tmp.write_text(report, encoding="utf-8"))
    turns_plot(result, out_dir / f"{stem}_turns.png")
    return js, md


def turns_plot(result: dict, path: Path) -> Path:
    """MRR by turn index, one line per system (the paper's Figure 3 for our data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, r in result["systems"].items():
        xs = [b["turn"] for b in r["by_turn"]]
        ax.plot(xs, [b["mrr"] for b in r["by_turn"]], marker="o", ms=3, label=name)
    ax.set(xlabel="turn index", ylabel="MRR", title=f"MRR per turn — {result['catalog']} {result['split']} split "
           f"({result['turns']} turns; synthetic conversations)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def build_systems(bundle: Path, names: Sequence[str], seed: int, cache_dir, precision: str = "bf16") -> dict:
    """Rankers by name: baselines from the TRAIN split, model systems from the bundle's checkpoint (CPU)."""
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path
    from talkplay.bundle import read_playlists

    bundle = Path(bundle)
    base_names = [n for n in names if n in BASELINES]
    systems: dict = {}
    if base_names:
        train_playlists = [p.track_ids for p in read_playlists(bundle) if p.split == "train"]
        train_convs = read_conversations(conversations_path(bundle, "train"))
        systems.update(build_baselines(base_names, train_playlists, train_convs, seed, cache_dir))
    model_names = [n for n in names if n in MODEL_SYSTEMS]
    if model_names:
        from talkplay.recommender import load_recommender
        from train.evaluation.model_eval import ModelRanker, PaperModeRanker

        rec = load_recommender(bundle, "cpu", precision)
        for n in model_names:
            systems[n] = ModelRanker(rec) if n == "talkplay" else PaperModeRanker(rec, seed)
    return {n: systems[n] for n in names}


def versions(bundle: Path) -> dict:
    """Versions that decide the numbers: code commit, checkpoint and catalog content, key libraries."""
    import subprocess

    import torch
    import transformers

    from talkplay.chat_session import version_of

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent).stdout.strip()
    except OSError:
        commit = ""
    return {"commit": commit, "checkpoint": version_of(Path(bundle) / "model" / "checkpoint.json"),
            "catalog": version_of(Path(bundle) / "tracks.parquet"), "torch": torch.__version__,
            "transformers": transformers.__version__}


def main(argv: list[str] | None = None) -> int:
    from talkplay.previews import default_cache_dir

    parser = argparse.ArgumentParser(prog="python -m train.evaluation.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory")
    parser.add_argument("--systems", nargs="+", default=[*BASELINES, *MODEL_SYSTEMS],
                        choices=[*BASELINES, *MODEL_SYSTEMS], help="systems to evaluate")
    parser.add_argument("--name", default="", help="report name suffix: reports/eval_<catalog>[_<name>].*")
    # fp32 by default: an evaluated turn prefills its whole history (hundreds of tokens, no earlier turn cached),
    # where this CPU (no native bf16) runs fp32 several times faster — measured on the test split with two shards:
    # bf16 ~8 turns/min, fp32 ~40 turns/min. The app's batch-1 decoding is where bf16 wins (reports/bench.md)
    parser.add_argument("--precision", default="fp32", help="model precision on CPU (fp32 or bf16)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--max-conversations", type=int, default=None, help="evaluate only the first N")
    parser.add_argument("--out", type=Path, default=Path("reports"), help="where the report files go")
    parser.add_argument("--cache", type=Path, default=None,
                        help="embedding/item2vec cache (default: <talkplay cache>/eval)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random ranker and item2vec")
    parser.add_argument("--no-resume", action="store_true",
                        help="recompute the model systems' per-turn scores instead of reusing the score cache")
    parser.add_argument("--shard", default=None, metavar="K/N",
                        help="only fill the score cache for turns K, K+N, … (run N such processes side by side, "
                             "then the plain command, which reads the cache); writes no report")
    args = parser.parse_args(argv)
    shard = None
    if args.shard:
        try:
            k, n = (int(x) for x in args.shard.split("/"))
            assert 0 <= k < n
        except (ValueError, AssertionError):
            parser.error(f"--shard {args.shard!r}: expected K/N with 0 ≤ K < N, e.g. 0/2")
        shard = (k, n)
    t0 = time.perf_counter()
    cache_dir = args.cache or default_cache_dir() / "eval"
    systems = build_systems(args.catalog, args.systems, args.seed, cache_dir, args.precision)
    vers = versions(args.catalog)

    def score_cache(name: str) -> ScoreCache | None:
        # only the model systems are slow enough to be worth resuming (seconds per turn on a CPU)
        if name not in MODEL_SYSTEMS:
            return None
        # the scores belong to the checkpoint, the catalog and the ranking objective (weights, listening vectors)
        ranking = getattr(systems[name], "key", lambda: None)()
        key = hashlib.sha256(json.dumps([name, vers["checkpoint"], vers["catalog"], args.split, args.seed,
                                         args.precision, ranking]).encode()).hexdigest()[:12]
        path = cache_dir / "scores" / f"{args.catalog.name}-{args.split}-{name}-{key}.jsonl"
        if args.no_resume and path.exists():
            path.unlink()
        return ScoreCache(path)

    result = evaluate_systems(args.catalog, systems, args.split, args.max_conversations,
                              log=lambda s: print(s, file=sys.stderr, flush=True), score_cache=score_cache,
                              shard=shard)
    if shard is not None:
        print(f"shard {args.shard}: {result['turns']} turns cached; run without --shard for the report")
        return 0
    paper = systems.get("talkplay-paper")
    if paper is not None:
        result["paper_mode"] = paper.stats()
    result["timing"]["total"] = round(time.perf_counter() - t0, 2)
    result["command"] = "python -m train.evaluation.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    result["seed"] = args.seed
    result["versions"] = vers
    js, md = write_report(result, args.out, args.name)
    print(f"wrote {js} and {md} ({result['timing']['total']} s)")
    print(AUDIO_TEXT_NOTE)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engine benchmark: are generated recommendations always valid, and how fast is a turn?

    python -m train.checks.bench_engine --catalog catalog/demo            # → reports/engine_demo.{md,json}

1. **Validity** — ``--conversations`` (40) × ``--turns-per`` (5) generated turns with the bundle's model,
   constrained mode, sampling as in the paper. The requests are the user messages of the bundle's test
   conversations (synthetic; first requests and follow-ups such as "less dark"); after the second turn of
   each conversation the listener rejects the track. Counted: tracks not in the catalog, repeats within a
   conversation, rejected tracks returned.
2. **Speed** — per precision (bf16 and 4-bit on CPU by default), on one fixed request: time to the first
   track (prompt → TrackChosen) and reply tokens/s, next to a bare ``model.generate`` producing the same
   number of new tokens from the same prompt ids (greedy, no constraints, no grounding). Median of
   ``--repeats`` runs after one warm-up.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.bench_engine")

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from talkplay.catalog import atomic_write
from talkplay.conversation import ConversationState, Done, TrackChosen
from talkplay.recommender import GenerationConfig, Recommender, load_recommender

REPO = Path(__file__).resolve().parents[2]
SPEED_REQUEST = "I want something calm and ambient to study to"


def benchmark_requests(bundle: Path, n_conversations: int, turns_per: int) -> list[list[str]]:
    """User messages of the first test conversations that have at least ``turns_per`` turns."""
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    out = []
    for conv in read_conversations(conversations_path(bundle, "test")):
        users = [m.content for m in conv.messages if m.role == "user"]
        if len(users) >= turns_per:
            out.append(users[:turns_per])
        if len(out) == n_conversations:
            break
    if len(out) < n_conversations:
        raise ValueError(f"{bundle}: only {len(out)} test conversations have {turns_per} turns")
    return out


def validity(rec: Recommender, conversations: list[list[str]], seed: int = 0, reject_after: int = 2,
             max_reply_tokens: int = 48) -> dict:
    invalid = repeats = rejected_returned = turns = names_track = 0
    ttft, reply_tps, chosen = [], [], []
    for c, requests in enumerate(conversations):
        state = ConversationState()
        gen = GenerationConfig(seed=seed * 100_003 + c, max_reply_tokens=max_reply_tokens, talk=False)
        for t, text in enumerate(requests):
            before_played, before_rejected = set(state.played), set(state.rejected)
            events = list(rec.respond(state, text, generation=gen))
            first, done = events[0], events[-1]
            assert isinstance(first, TrackChosen) and isinstance(done, Done)
            track_id = done.turn.track_id
            turns += 1
            invalid += track_id not in rec.catalog
            repeats += track_id in before_played
            rejected_returned += track_id in before_rejected
            ttft.append(first.seconds)
            if done.reply_tokens:
                reply_tps.append(done.reply_tokens / max(done.seconds - first.seconds, 1e-9))
            chosen.append(track_id)
            names_track += rec.catalog[track_id].title.lower() in done.turn.reply.lower()
            if t + 1 == reject_after:
                state.reject()
    return {"turns": turns, "conversations": len(conversations), "valid": turns - invalid,
            "invalid": invalid, "repeats": repeats, "rejected_returned": rejected_returned,
            "distinct_tracks": len(set(chosen)), "replies_naming_the_track": names_track, "ttft_s_median": statistics.median(ttft),
            "reply_tokens_per_s_median": statistics.median(reply_tps) if reply_tps else None}


def speed(rec: Recommender, repeats: int = 3, reply_tokens: int = 48) -> dict:
    """Time to first track and reply tokens/s of the engine vs a bare ``generate`` of as many tokens."""
    gen = GenerationConfig(temperature=0.0, max_reply_tokens=reply_tokens, talk=False)  # time to a track: always one
    runs = []
    for i in range(repeats + 1):
        state = ConversationState()
        events = list(rec.respond(state, SPEED_REQUEST, generation=gen))
        first, done = events[0], events[-1]
        if i:  # the first run warms up
            runs.append((first.seconds, done.reply_tokens, done.seconds - first.seconds, done.seconds))
    new_tokens = len(rec.store.vocab) + 1 + max(r[1] for r in runs)  # span + END + reply
    prompt = torch.tensor([rec._prompt(ConversationState(), SPEED_REQUEST)], device=rec.device)
    bare = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = rec.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens,
                                     min_new_tokens=new_tokens, do_sample=False,
                                     pad_token_id=rec.tokenizer.pad_token_id or rec.tokenizer.eos_token_id)
        if i:
            bare.append((time.perf_counter() - t0, out.shape[1] - prompt.shape[1]))
    engine_total = statistics.median(r[3] for r in runs)
    engine_tokens = len(rec.store.vocab) + 1 + statistics.median(r[1] for r in runs)
    bare_s = statistics.median(b[0] for b in bare)
    return {
        "prompt_tokens": int(prompt.shape[1]),
        "ttft_s": statistics.median(r[0] for r in runs),
        "reply_tokens": statistics.median(r[1] for r in runs),
        "reply_tokens_per_s": statistics.median(r[1] / r[2] for r in runs if r[2] > 0),
        "engine_turn_s": engine_total, "engine_tokens_per_s": engine_tokens / engine_total,
        "bare_generate_tokens": bare[0][1], "bare_generate_s": bare_s,
        "bare_generate_tokens_per_s": bare[0][1] / bare_s,
        "bare_generate_time_to_span_s": bare_s * (len(rec.store.vocab) + 1) / bare[0][1],
    }


def markdown(result: dict) -> str:
    v = result.get("validity")
    lines = [f"# Engine benchmark — {result['catalog']}", "",
             f"Machine: {result['machine']}; torch {result['torch']}, {result['threads']} threads. "
             "Command: `python -m train.checks.bench_engine --catalog " + result["catalog"] + "`.", ""]
    if v:
        lines += ["## Validity (constrained decoding, sampling T=1.0, top-p 0.9)", "",
                  f"{v['conversations']} conversations × {v['turns'] // v['conversations']} turns of synthetic test requests; "
                  "the listener rejects the track after turn 2.", "",
                  "| turns | valid catalog tracks | repeats in a conversation | rejected returned | distinct tracks "
                  "| replies naming the played track |",
                  "|---|---|---|---|---|---|",
                  f"| {v['turns']} | {v['valid']} | {v['repeats']} | {v['rejected_returned']} | {v['distinct_tracks']} "
                  f"| {v['replies_naming_the_track']} |",
                  "", f"Median time to first track {v['ttft_s_median']:.2f} s, reply {v['reply_tokens_per_s_median']:.1f} tokens/s "
                  f"(precision {v['precision']}, {v.get('threads', '?')} torch threads).", ""]
    if result.get("speed"):
        lines += ["## Speed on one request (greedy)", "", f"Request: “{SPEED_REQUEST}”.", "",
                  "| precision | prompt tokens | time to first track | reply tokens/s | engine turn (tokens/s) "
                  "| bare generate, same tokens (tokens/s) |", "|---|---|---|---|---|---|"]
        for prec, s in result["speed"].items():
            if "error" in s:
                lines.append(f"| {prec} | – | {s['error']} | | | |")
                continue
            lines.append(f"| {prec} | {s['prompt_tokens']} | {s['ttft_s']:.2f} s | {s['reply_tokens_per_s']:.1f} | "
                         f"{s['engine_turn_s']:.2f} s ({s['engine_tokens_per_s']:.1f}) | "
                         f"{s['bare_generate_s']:.2f} s ({s['bare_generate_tokens_per_s']:.1f}) |")
        lines += ["", "Engine turn = prompt + constrained span + grounding span + streamed reply; the bare "
                  "`model.generate` produces the same number of new tokens without constraints or grounding."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.checks.bench_engine", description=__doc__.split("\n\n")[0])
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"))
    p.add_argument("--conversations", type=int, default=40)
    p.add_argument("--turns-per", type=int, default=5)
    p.add_argument("--precisions", default="bf16,4bit", help="comma-separated precisions for the speed part")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-validity", action="store_true")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=REPO / "reports")
    args = p.parse_args(argv)
    name = args.catalog.name
    result = {"catalog": args.catalog.as_posix(), "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "device": args.device}
    json_path = args.out / f"engine_{name}.json"
    if json_path.exists():  # keep the part not re-run
        old = json.loads(json_path.read_text())
        result.update({k: old[k] for k in ("validity", "speed") if k in old})
    precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    recs = {}
    if not args.skip_validity:
        rec = recs["bf16"] = load_recommender(args.catalog, args.device, "bf16")
        t0 = time.perf_counter()
        result["validity"] = validity(rec, benchmark_requests(args.catalog, args.conversations, args.turns_per))
        result["validity"].update(precision="bf16", threads=torch.get_num_threads(),
                                  seconds=round(time.perf_counter() - t0, 1))
        print(json.dumps(result["validity"]))
    if not args.skip_speed:
        result["speed"] = {}
        for prec in precisions:
            rec = recs.get(prec) or load_recommender(args.catalog, args.device, prec)
            loaded = type(rec.model.get_decoder().layers[0].mlp.down_proj).__name__
            if prec == "4bit" and "4bit" not in loaded:
                result["speed"][prec] = {"error": f"4-bit unavailable here (loaded {loaded})"}
                continue
            result["speed"][prec] = speed(rec, args.repeats)
            result["speed"][prec]["linear_layer"] = loaded
            print(prec, json.dumps(result["speed"][prec]))
            recs.pop(prec, None)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    md = args.out / f"engine_{name}.md"
    atomic_write(md, lambda tmp: tmp.write_text(markdown(result)))
    print(f"wrote {md} and {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

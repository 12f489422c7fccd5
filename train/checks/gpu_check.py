"""The GPU serving path, measured: the demo checkpoint in 4-bit NF4 and in bf16 on one CUDA device → reports/gpu.{json,md}.

    python -m train.checks.gpu_check --catalog catalog/demo [--base-model PATH] [--sessions 32] [--seconds 60]

Per precision: load the bundle's checkpoint (``talkplay.recommender.load_recommender``), run the engine
benchmark (``train.checks.bench_engine.speed``: time to first track, reply tokens/s, next to a bare ``generate``), then
an in-process load: ``--sessions`` listener threads, each a conversation of requests through the batching
scheduler (one row per listener), for ``--seconds``. Recorded: device name, the precision actually loaded
(4-bit falls back to bf16, with a warning, where bitsandbytes is missing), time to first track p50/p95 under
load, turns completed, reply tokens/s, peak GPU memory (``torch.cuda.max_memory_allocated``). About 2½ minutes
per precision: the whole check stays under 6 minutes.

Without CUDA it refuses (exit status 2) and writes nothing. On a machine without a model hub give
``--base-model`` a local copy of the base (see ``train.training.gpu_run`` on carrying the offline GGUF to a device).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.gpu_check")

import argparse
import gc
import json
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def inprocess_load(rec, sessions: int, seconds: float, requests: tuple[str, ...], turns_per_conversation: int = 6
                   ) -> dict:
    """``sessions`` threads chatting with ``rec`` (its scheduler running) for ``seconds``; turn statistics."""
    from talkplay.conversation import ConversationState, Done, TrackChosen
    from train.checks.load_test import run_threads

    ttft, totals, reply_tokens, errors, repeats = [], [], [], [], 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    from dataclasses import replace

    music = replace(rec.generation, talk=False)  # time to a track: every request gets one

    def listener(i: int) -> None:
        nonlocal repeats
        state, k = ConversationState(), i
        while time.monotonic() < deadline:
            if len(state.turns) >= turns_per_conversation:
                state = ConversationState()
            t0 = time.perf_counter()
            first = None
            try:
                for event in rec.respond(state, requests[k % len(requests)], generation=music):
                    if isinstance(event, TrackChosen):
                        first = time.perf_counter() - t0
                    elif isinstance(event, Done):
                        with lock:
                            ttft.append(first)
                            totals.append(time.perf_counter() - t0)
                            reply_tokens.append(event.reply_tokens)
                            repeats += event.turn.track_id in state.played[:-1]  # respond recorded the turn
            except Exception as err:  # counted; the listener goes on
                with lock:
                    errors.append(f"{type(err).__name__}: {str(err)[:160]}")
            k += 7

    wall = run_threads(listener, sessions)

    def pct(xs, q):
        xs = sorted(xs)
        return round(xs[min(len(xs) - 1, round(q * (len(xs) - 1)))], 3) if xs else None

    return {"sessions": sessions, "seconds": round(wall, 1), "turns": len(ttft), "errors": len(errors),
            "error_samples": errors[:5], "repeated_tracks": repeats,
            "ttft_s": {"p50": pct(ttft, 0.5), "p95": pct(ttft, 0.95)},
            "turn_s": {"p50": pct(totals, 0.5), "p95": pct(totals, 0.95)},
            "reply_tokens_per_s": round(sum(reply_tokens) / wall, 1),
            "mean_reply_tokens": round(statistics.fmean(reply_tokens), 1) if reply_tokens else None}


def check(catalog: Path, precisions: list[str], sessions: int, seconds: float, base_model: str | None) -> dict:
    import torch

    from talkplay.recommender import load_recommender
    from train.checks.bench_engine import speed
    from train.checks.load_test import REQUESTS

    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "catalog": str(catalog),
           "sessions": sessions, "seconds": seconds, "results": {}}
    for precision in precisions:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        rec = load_recommender(catalog, "cuda", precision, base_model=base_model)
        loaded = "4bit" if getattr(rec.model, "is_loaded_in_4bit", False) else str(rec.model.dtype).replace("torch.", "")
        load_s = time.perf_counter() - t0
        rec.prior(), rec.text_match()
        engine = speed(rec, repeats=3)
        rec.serve(max_batch=sessions)
        load = inprocess_load(rec, sessions, seconds, REQUESTS)
        rec.scheduler.close()
        stats = rec.scheduler.stats
        out["results"][precision] = {
            "loaded_as": loaded, "load_s": round(load_s, 1), "engine": engine, "load": load,
            "mean_batch": round(stats.step_rows / max(stats.steps, 1), 2),
            "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
        print(f"gpu_check {precision}: {json.dumps(out['results'][precision])}", file=sys.stderr, flush=True)
        del rec
        gc.collect()
    return out


def markdown(r: dict) -> str:
    lines = [f"# GPU serving check — {r['device']}", "",
             f"`python -m train.checks.gpu_check` on {r['device']} (torch {r['torch']}), bundle `{r['catalog']}`: per precision the "
             f"engine benchmark (one listener), then {r['sessions']} listeners in-process through the batching scheduler "
             f"for {r['seconds']:.0f} s.", "",
             "| precision (loaded as) | time to first track, alone | reply tokens/s, alone | bare `generate` tokens/s | "
             "turns under load | time to first track p50 / p95 under load | reply tokens/s under load | mean batch | "
             "peak GPU memory |", "|---|---|---|---|---|---|---|---|---|"]
    for p, v in r["results"].items():
        e, load = v["engine"], v["load"]
        lines.append(f"| {p} ({v['loaded_as']}) | {e['ttft_s']:.2f} s | {e['reply_tokens_per_s']:.1f} | "
                     f"{e['bare_generate_tokens_per_s']:.1f} | {load['turns']} ({load['errors']} errors) | "
                     f"{load['ttft_s']['p50']} / {load['ttft_s']['p95']} s | {load['reply_tokens_per_s']} | "
                     f"{v['mean_batch']} | {v['peak_gpu_memory_mb']} MB |")
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.checks.gpu_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle whose checkpoint is served")
    p.add_argument("--precisions", nargs="+", default=["4bit", "bf16"], choices=["4bit", "bf16", "fp32"])
    p.add_argument("--sessions", type=int, default=32, help="concurrent in-process listeners (= scheduler rows)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load per precision")
    p.add_argument("--base-model", default=None, help="base model path or id (default: the checkpoint's)")
    p.add_argument("--reports", type=Path, default=REPO / "reports", help="where gpu.{json,md} go")
    args = p.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("train.checks.gpu_check: no CUDA device here — this check measures the GPU serving path and runs only on a "
              "machine with one (nothing written). The CPU numbers are in reports/bench.md and reports/load.md.",
              file=sys.stderr)
        return 2
    result = check(args.catalog, args.precisions, args.sessions, args.seconds, args.base_model)
    result["command"] = "python -m train.checks.gpu_check " + " ".join(argv if argv is not None else sys.argv[1:])
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / "gpu.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.reports / "gpu.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

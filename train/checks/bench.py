"""Benchmarks (never part of the test suite): speed and memory of every stage, in one report.

    python -m train.checks.bench --catalog catalog/demo                   # all parts → reports/bench.{json,md}
    python -m train.checks.bench --parts store catalog                    # rerun some parts; the others are kept

Parts (each replaces its own section of ``reports/bench.json``; run them on an otherwise idle machine):

* ``engine`` — per precision (bf16, 4-bit): time to the first track and reply tokens/s of a turn, next to a
  bare ``model.generate`` producing the same number of new tokens from the same prompt
  (:func:`train.checks.bench_engine.speed`).
* ``batching`` — per precision (bf16, fp32) and batch size (1, 4, 8, 16): the scheduler's one-token step with
  exactly that many rows (:mod:`talkplay.scheduler`, :class:`talkplay.kvcache.SlotCache`), a burst of twice as
  many turns decoded by the running scheduler (mean batch reached, tokens/s, time to first track), and a bare
  ``model.generate`` of the same batch (greedy, 48 new tokens, same prompt in every row).
* ``app`` — peak resident memory (VmHWM) of the real app process (``python app.py``) after it loaded the
  model and answered a few turns through ``gradio_client`` (:mod:`train.checks.load_test`, 1 session).
* ``store`` — the decoding constraint (catalog trie: build, allowed-set query per decoding step) and the
  partial matcher (one free span against the store: ``match`` with postings, ``match_scores`` over every
  row) on synthetic token stores of 1e3, 1e4, 1e5 and 1e6 items; time and traced peak memory.
* ``train`` — training tokens/s with and without the supervised-positions LM head
  (:mod:`train.checks.bench_sft`, same batches).
* ``catalog`` — catalog build throughput (tracks/min) of the demo pipeline (:mod:`train.catalog.demo_catalog`) on
  one pinned package with an empty analysis cache: download, credits, analysis (descriptors, musicnn tags
  and embedding), preview cut, bundle.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.checks.bench")

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PARTS = ("engine", "batching", "app", "store", "train", "catalog")
BATCHES = (1, 4, 8, 16)
STORE_SIZES = (1_000, 10_000, 100_000, 1_000_000)
CATALOG_PACKAGE = "singularity-music"  # 16 tracks, 52 MB: the smallest pinned package


def _machine() -> dict:
    import torch

    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


# ------------------------------------------------------------------------------------------ parts


def bench_engine(catalog: Path, precisions: list[str], repeats: int) -> dict:
    import torch

    from talkplay.recommender import load_recommender
    from train.checks.bench_engine import speed

    out = {}
    for p in precisions:
        rec = load_recommender(catalog, "cpu", p)
        out[p] = speed(rec, repeats)
        print(f"engine {p}: {json.dumps(out[p])}", file=sys.stderr, flush=True)
        del rec
        gc.collect()
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
    return out


def bench_batching(catalog: Path, precisions: list[str], batches: tuple[int, ...], reply_tokens: int = 48) -> dict:
    import statistics

    import torch

    from talkplay.conversation import ConversationState, Done, TrackChosen
    from talkplay.recommender import GenerationConfig, load_recommender
    from train.checks.load_test import REQUESTS, run_threads

    gen = GenerationConfig(temperature=0.0, max_reply_tokens=reply_tokens, talk=False)  # time to a track: always one
    out: dict = {}
    for p in precisions:
        rec = load_recommender(catalog, "cpu", p)
        rec.prior(), rec.text_match()
        rows = {}
        for b in batches:
            scheduler = rec.serve(max_batch=b)
            first_track, replies = [], []

            def one(i: int) -> None:
                t0 = time.perf_counter()
                for event in rec.respond(ConversationState(), REQUESTS[i % len(REQUESTS)], generation=gen):
                    if isinstance(event, TrackChosen) and i < b:  # the first `b` of the burst (no row to wait for)
                        first_track.append(time.perf_counter() - t0)
                    elif isinstance(event, Done):
                        replies.append(event.reply_tokens)

            one(0)  # warm-up
            first_track.clear(), replies.clear()
            steps0, rows0, secs0 = scheduler.stats.steps, scheduler.stats.step_rows, scheduler.stats.step_seconds
            n = 3 if b == 1 else 2 * b
            if b == 1:
                t0 = time.perf_counter()
                for i in range(n):
                    one(i)
                wall = time.perf_counter() - t0
            else:
                wall = run_threads(one, n)
            st = scheduler.stats
            steps, step_rows, step_s = st.steps - steps0, st.step_rows - rows0, st.step_seconds - secs0
            scheduler.close()
            full = _full_batch_step(rec, b, gen)
            prompt = torch.tensor([rec._prompt(ConversationState(), REQUESTS[0])] * b, device=rec.device)
            bare = []
            for i in range(2):
                t1 = time.perf_counter()
                with torch.no_grad():
                    rec.model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=reply_tokens,
                                       min_new_tokens=reply_tokens, do_sample=False,
                                       pad_token_id=rec.tokenizer.pad_token_id or rec.tokenizer.eos_token_id)
                if i:  # the first call warms up
                    bare.append(time.perf_counter() - t1)
            rows[b] = {
                **full, "turns": n, "mean_batch": round(step_rows / max(steps, 1), 2),
                "step_ms": round(1e3 * step_s / max(steps, 1), 1),
                "decode_tokens_per_s": round(step_rows / step_s, 1) if step_s else None,
                "turns_reply_tokens_per_s": round(sum(replies) / wall, 1),
                "ttft_s_median": round(statistics.median(first_track), 3),
                "bare_generate_tokens_per_s": round(b * reply_tokens / bare[0], 1),
                "bare_generate_step_ms": round(1e3 * bare[0] / reply_tokens, 1),
            }
            print(f"batching {p} batch {b}: {json.dumps(rows[b])}", file=sys.stderr, flush=True)
        base = rows[batches[0]]["full_batch_tokens_per_s"]
        out[p] = {"rows": rows, "speedup_at_largest": round(rows[batches[-1]]["full_batch_tokens_per_s"] / base, 2)}
        del rec
        gc.collect()
    return out


def _full_batch_step(rec, b: int, gen, steps: int = 16) -> dict:
    """The scheduler's decoding step with exactly ``b`` rows: ``b`` turn starts copied into one slot cache
    (``talkplay.kvcache.SlotCache``), then ``steps`` one-token steps timed (median)."""
    import statistics

    import torch

    from talkplay.conversation import ConversationState
    from talkplay.kvcache import SlotCache
    from train.checks.load_test import REQUESTS

    slots, tokens = SlotCache(rec.model.config.num_hidden_layers), []
    for i in range(b):
        _, reply, cache = rec._start_turn(ConversationState(), REQUESTS[i % len(REQUESTS)], gen, ())
        slots.add(cache)
        tokens.append(int(reply.logits.argmax()))
    times = []
    for step in range(steps + 1):
        mask, positions = slots.step_inputs(rec.device)
        t0 = time.perf_counter()
        logits = rec.forward(torch.tensor(tokens)[:, None], slots, attention_mask=mask, position_ids=positions)
        slots.advance()
        tokens = logits[:, -1].argmax(-1).tolist()
        if step:  # the first step warms up
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {"full_batch_step_ms": round(1e3 * median, 1), "full_batch_tokens_per_s": round(b / median, 1)}


def bench_app(catalog: Path) -> dict:
    from train.checks.load_test import run

    with tempfile.TemporaryDirectory() as tmp:
        r = run(catalog, sessions=1, minutes=0.5, out=Path(tmp), concurrency=4, seed=0)
    return {"peak_rss_mb": r["app_peak_hwm_mb"], "turns": r["requests"]["turns"], "errors": r["errors"],
            "note": "VmHWM of `python app.py` (CPU, auto precision) after model load and "
                    f"{r['requests']['turns'] + 1} turns"}


def _synthetic_store(n: int, rng: np.random.Generator):
    """A token store shaped like a large catalog's: five modalities of 2 residual levels × 256 codes."""
    from talkplay.token_store import TokenStore
    from talkplay.tokens import ModalitySpec, MusicVocab

    vocab = MusicVocab([ModalitySpec(m, 2, 256, 1) for m in ("playlist", "semantic", "metadata", "lyrics", "audio")])
    codes = rng.integers(1, 256, size=(n, len(vocab)), dtype=np.int64)
    # coarse codes follow a skewed distribution, as real clusters do (a few big, many small)
    codes[:, ::2] = np.minimum(rng.zipf(1.3, size=(n, len(vocab) // 2 + len(vocab) % 2)), 255)
    return TokenStore(vocab, [f"t{i}" for i in range(n)], codes)


def _traced(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak / 2**20


def bench_store(sizes: tuple[int, ...], queries: int = 100) -> dict:
    from talkplay.trie import CatalogTrie, ExcludeTracks
    from talkplay.matching import match, match_scores

    rows = []
    for n in sizes:
        rng = np.random.default_rng(n)
        store, _, store_mb = _traced(lambda: _synthetic_store(n, rng))
        trie, build_s, trie_mb = _traced(lambda: CatalogTrie(store))
        exclude = ExcludeTracks(played=frozenset(f"t{i}" for i in rng.choice(n, 20, replace=False)))
        trie.allowed([], exclude)  # the exclusion's per-conversation setup, once
        picks = rng.integers(0, n, size=queries)
        t0, calls = time.perf_counter(), 0
        for r in picks:
            tup = store.codes[r]
            for k in range(len(store.vocab)):
                trie.allowed(tup[:k], exclude)
                calls += 1
        step_ms = (time.perf_counter() - t0) / calls * 1e3
        _ = store.postings(0, 1)  # build the inverted index outside the timing
        free = [rng.integers(1, 256, size=len(store.vocab)) for _ in range(20)]
        t0 = time.perf_counter()
        for q in free:
            match(store, q.tolist())
        match_ms = (time.perf_counter() - t0) / len(free) * 1e3
        _, scores_s, scores_mb = _traced(lambda: [match_scores(store, q.tolist()) for q in free[:5]])
        rows.append({"items": n, "store_mb": round(store_mb, 1), "trie_build_s": round(build_s, 3),
                     "trie_mb": round(trie_mb, 1), "allowed_step_ms": round(step_ms, 4),
                     "match_ms": round(match_ms, 3), "match_scores_ms": round(scores_s / 5 * 1e3, 2),
                     "match_scores_peak_mb": round(scores_mb, 1)})
        print(f"store {rows[-1]}", file=sys.stderr, flush=True)
        del store, trie
        gc.collect()
    return {"rows": rows, "store": "synthetic: 5 modalities × 2 residual levels × 256 codes (coarse level "
            "Zipf-distributed), 20 tracks excluded", "queries": queries}


def bench_train(catalog: Path, steps: int) -> dict:
    from train.checks.bench_sft import main as sft_main

    with tempfile.TemporaryDirectory() as tmp:
        sft_main(["--catalog", str(catalog), "--steps", str(steps), "--out", tmp])
        return json.loads(next(Path(tmp).glob("sft_speed_*.json")).read_text())


def bench_catalog(package: str, limit: int | None) -> dict:
    """Build a one-package bundle from scratch with empty caches; the download is timed on its own."""
    from talkplay.debsource import fetch_deb
    from train.catalog.demo_catalog import PACKAGES, build

    spec = next((s for s in PACKAGES if s.deb.name == package), None)
    if spec is None:
        raise SystemExit(f"--package {package!r}: not a pinned demo package ({[s.deb.name for s in PACKAGES]})")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        t0 = time.perf_counter()
        fetch_deb(spec.deb, cache / "debs")
        download_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        stats = build(Path(tmp) / "bundle", cache, [package], limit, log=lambda s: None)
        seconds = time.perf_counter() - t0
    n = sum(p["tracks"] for p in stats["packages"].values())
    return {"package": package, "tracks": n, "download_s": round(download_s, 1), "download_mb": round(spec.deb.size / 2**20, 1),
            "seconds": round(seconds, 1), "tracks_per_min": round(n / seconds * 60, 2) if seconds else None}


# ------------------------------------------------------------------------------------------ report


def markdown(r: dict) -> str:
    m = r.get("machine", {})
    lines = ["# Benchmarks", "", f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, torch {m.get('torch', '?')} "
             f"({m.get('torch_threads', '?')} threads). Regenerate: `python -m train.checks.bench --catalog {r.get('bundle', 'catalog/demo')}`"
             " (parts: `--parts " + " ".join(PARTS) + "`).", ""]
    if "engine" in r:
        lines += ["## Turn speed on CPU (demo checkpoint)", "",
                  "| precision | time to first track | reply tokens/s | engine tokens/s (span + reply) | "
                  "bare `generate` tokens/s (same count) | bare time to as many tokens as the span |",
                  "|---|---|---|---|---|---|"]
        for p, e in r["engine"]["results"].items():
            lines.append(f"| {p} | {e['ttft_s']:.2f} s | {e['reply_tokens_per_s']:.1f} | {e['engine_tokens_per_s']:.1f} | "
                         f"{e['bare_generate_tokens_per_s']:.1f} | {e['bare_generate_time_to_span_s']:.2f} s |")
        lines += ["", "Time to first track includes the prompt and the constrained music span (trie masks at every "
                  "step); the bare `generate` column is the same model without constraints or grounding.", ""]
    if "batching" in r:
        lines += ["## Batched decoding of concurrent turns (the app's scheduler)", "",
                  "**Full batch**: the scheduler's one-token step with exactly that many rows (turn starts copied into "
                  "one slot cache, 16 steps timed). **Scheduler run**: twice as many turns as rows submitted at once "
                  "(greedy, up to 48 reply tokens), decoded by `talkplay.scheduler` — rows join as their starts finish "
                  "and leave at their end, so the mean batch is what this workload reaches; time to first track is "
                  "the median over the first `rows` turns of the burst. **Bare `generate`**: the same batch of one "
                  "prompt, 48 tokens, no constraints.", "",
                  "| precision | rows | full batch: ms per step | full batch: tokens/s | scheduler run: mean batch | "
                  "ms per step | decode tokens/s | time to first track | bare `generate` tokens/s | bare ms per step |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for p, v in r["batching"]["results"].items():
            for b, row in v["rows"].items():
                lines.append(f"| {p} | {b} | {row.get('full_batch_step_ms', '—')} | {row.get('full_batch_tokens_per_s', '—')} | "
                             f"{row['mean_batch']} | {row['step_ms']} | {row['decode_tokens_per_s']} | "
                             f"{row['ttft_s_median']:.2f} s | {row['bare_generate_tokens_per_s']} | "
                             f"{row['bare_generate_step_ms']} |")
        speedups = ", ".join(f"{p} ×{v['speedup_at_largest']}" for p, v in r["batching"]["results"].items())
        lines += ["", f"Full-batch tokens/s at the largest batch over batch 1: {speedups}.", ""]
    if "app" in r:
        a = r["app"]["results"]
        lines += ["## App memory", "", f"Peak resident memory of the app process: **{a['peak_rss_mb']} MB** ({a['note']}; "
                  f"{a['errors']} errors). Under 16 concurrent sessions see `reports/load.md`.", ""]
    if "store" in r:
        s = r["store"]["results"]
        lines += ["## Decoding constraint and matcher vs catalog size", "", f"Token store: {s['store']}.", "",
                  "| items | store | trie build | trie memory | allowed set per step | `match` (postings) | "
                  "`match_scores` (all rows) | its peak memory |", "|---|---|---|---|---|---|---|---|"]
        for row in s["rows"]:
            lines.append(f"| {row['items']:,} | {row['store_mb']} MB | {row['trie_build_s']} s | {row['trie_mb']} MB | "
                         f"{row['allowed_step_ms']} ms | {row['match_ms']} ms | {row['match_scores_ms']} ms | "
                         f"{row['match_scores_peak_mb']} MB |")
        lines += ["", "Memory is Python's traced peak (numpy buffers included) while building/querying.", ""]
    if "train" in r:
        t = r["train"]["results"]
        lines += ["## Training speed", "", f"{t['machine']}, batch {t['batch_size']}, {t['steps']} timed steps per mode:", "",
                  "| LM head | s/step | tokens/s |", "|---|---|---|"]
        for mode, v in t["modes"].items():
            lines.append(f"| {mode.replace('_', ' ')} | {v['seconds_per_step']:.2f} | {v['tokens_per_s']:.0f} |")
        lines += ["", f"Supervised-positions head speed-up: ×{t['speedup']:.2f}.", ""]
    if "catalog" in r:
        c = r["catalog"]["results"]
        lines += ["## Catalog build throughput", "",
                  f"`{c['package']}`: {c['tracks']} tracks in {c['seconds']} s → **{c['tracks_per_min']} tracks/min** "
                  "(unpack, credits, analysis with descriptors + musicnn tags and embedding, preview cut, bundle; empty "
                  f"analysis cache). The download ({c['download_mb']} MB from the Debian mirror) took {c['download_s']} s "
                  "and is not included.", ""]
    when = {k: v.get("measured") for k, v in r.items() if isinstance(v, dict) and "measured" in v}
    lines += ["Measured: " + ", ".join(f"{k} {v}" for k, v in when.items()), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.checks.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("catalog/demo"))
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "4bit"], help="engine part")
    parser.add_argument("--batch-precisions", nargs="+", default=["bf16", "fp32"], help="batching part")
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", type=int, default=list(STORE_SIZES))
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--package", default=CATALOG_PACKAGE)
    parser.add_argument("--limit", type=int, default=None, help="tracks of the package (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "reports")
    args = parser.parse_args(argv)
    path = args.out / "bench.json"
    result = json.loads(path.read_text()) if path.exists() else {}
    result.update({"bundle": str(args.catalog), "machine": _machine()})
    for part in args.parts:
        t0 = time.perf_counter()
        if part == "engine":
            value = bench_engine(args.catalog, args.precisions, args.repeats)
        elif part == "batching":
            value = bench_batching(args.catalog, args.batch_precisions, tuple(args.batches))
        elif part == "app":
            value = bench_app(args.catalog)
        elif part == "store":
            value = bench_store(tuple(args.sizes))
        elif part == "train":
            value = bench_train(args.catalog, args.train_steps)
        else:
            value = bench_catalog(args.package, args.limit)
        result[part] = {"results": value, "seconds": round(time.perf_counter() - t0, 1),
                        "measured": time.strftime("%Y-%m-%d"),
                        "command": "python -m train.checks.bench " + " ".join(argv if argv is not None else sys.argv[1:])}
        args.out.mkdir(parents=True, exist_ok=True)
        from talkplay.catalog import atomic_write

        text = json.dumps(result, indent=2) + "\n"
        atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))  # after every part: resumable
        report = markdown(result)
        atomic_write(path.with_suffix(".md"), lambda tmp: tmp.write_text(report, encoding="utf-8"))
        print(f"{part}: done in {result[part]['seconds']} s", file=sys.stderr, flush=True)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

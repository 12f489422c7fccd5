"""Fit check: does the track that plays fit a typical first request, as a listener would judge it?

    python -m train.evaluation.fit_check --catalog catalog/demo      # → reports/fit_check.{json,md}

The requests file (``<bundle>/eval/fit_requests.jsonl``) holds first requests written the way people type
them — moods, scenes, instruments, negations, "something like <title>", misspellings — each with the tags
a fitting track must carry: ``need`` is a list of tag groups (at least one tag of every group) and
``avoid`` tags it must not carry. It is a report, not a tuning target: tuning happens on the validation
split, and these requests were written without looking at what any system answers. A second file,
``eval/fit_requests_unseen.jsonl`` (50 requests, ``--requests … --name unseen``), was written by a separate session
that saw neither the concept table of ``talkplay.intent`` nor any system's answers; the table's authors looked at
its misses once, after the table was written (fixes were to the reader's rules — typos, negation — not its words).

Per request and system:

* TalkPlay *played* — the track the app would play: the engine's constrained music span, sampled as the
  app samples it (its default generation settings), over ``--samples`` seeds; the share that fits;
* TalkPlay top-1 / top-5 — the model's own ranking of every track by music-token likelihood;
* BM25 and dense MiniLM top-1 / top-5 over the request text (the retrieval baselines of
  ``train.evaluation.baselines``), popularity top-1, and random (the share of catalog tracks that fit).

The JSON's top-level ``summary`` holds ``talkplay_played_fit``, ``bm25_top1_fit``, ``dense_top1_fit`` and
``requests``; ``played_distinct`` counts distinct played tracks (a model that ignores the words plays the
same few tracks for everything).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.evaluation.fit_check")

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from talkplay.catalog import Catalog, CatalogError, Track, load_catalog

REQUESTS_FILE = Path("eval") / "fit_requests.jsonl"  # inside a bundle


@dataclass(frozen=True)
class FitRequest:
    """A first request and what a fitting track carries."""

    text: str  # as a listener types it
    need: tuple[frozenset[str], ...]  # ≥ 1 tag of every group
    avoid: frozenset[str] = frozenset()  # none of these tags

    def fits(self, track: Track) -> bool:
        tags = frozenset(track.tags)
        return all(tags & group for group in self.need) and not tags & self.avoid


def read_requests(path: Path, catalog: Catalog | None = None) -> list[FitRequest]:
    """Parse and validate a fit-requests JSONL file; errors name the file, line and field.

    With ``catalog``, every tag must exist in it and every request must have at least one fitting track.
    """
    known = {tag for t in catalog for tag in t.tags} if catalog is not None else None
    out = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise CatalogError(path, f"cannot read ({err})") from err
    for row, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as err:
            raise CatalogError(path, f"not JSON ({err})", row=row) from err
        text = data.get("request")
        if not isinstance(text, str) or not text.strip():
            raise CatalogError(path, "expected a non-empty string", row=row, field="request")
        need = data.get("need")
        if not isinstance(need, list) or not need or not all(isinstance(g, list) and g for g in need):
            raise CatalogError(path, "expected a non-empty list of non-empty tag lists", row=row, field="need")
        avoid = data.get("avoid", [])
        if not isinstance(avoid, list):
            raise CatalogError(path, "expected a list of tags", row=row, field="avoid")
        req = FitRequest(text.strip(), tuple(frozenset(g) for g in need), frozenset(avoid))
        if known is not None:
            unknown = sorted(({t for g in req.need for t in g} | set(req.avoid)) - known)
            if unknown:
                raise CatalogError(path, f"tag(s) {unknown} occur in no track of {catalog.root}", row=row,
                                   field="need")
            if not any(req.fits(t) for t in catalog):
                raise CatalogError(path, f"no track of {catalog.root} fits {text!r}", row=row, field="need")
        out.append(req)
    if not out:
        raise CatalogError(path, "no requests")
    return out


def split_requests(bundle: Path, split: str = "valid", limit: int | None = None) -> list[FitRequest]:
    """First requests of a split's synthetic conversations that name slots (style, mood, instrument, tempo,
    activity), each needing what its slot words need (``train.data.lexicon``). For tuning decoding settings on
    the validation split, so the hand-written requests file stays a report."""
    from train.data import lexicon as lx
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    out = []
    for conv in read_conversations(conversations_path(Path(bundle), split)):
        text = conv.messages[0].content
        slots = [lx.SLOTS[k] for k, _ in lx.find_slot_words(text) if not k.startswith("era:")]
        if not slots:
            continue
        need = tuple(g for s in slots for g in s.need) or tuple(frozenset(s.words[:1]) for s in slots)
        out.append(FitRequest(text, need, frozenset().union(*(s.avoid for s in slots))))
        if limit and len(out) >= limit:
            break
    return out


def _user_history(text: str) -> list:
    from train.data.conversation_schema import Message

    return [Message("user", text)]


def _top(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -scores))[:k]]


def played_fit(rec, catalog: Catalog, requests: Sequence[FitRequest], samples: int, config) -> float:
    """Share of sampled plays (``samples`` seeds per request, sampling ``config``) that fit their request."""
    from talkplay.conversation import ConversationState

    hits = [req.fits(rec.choose(ConversationState(), req.text, generation=replace(config, seed=s)).track)
            for req in requests for s in range(samples)]
    return float(np.mean(hits)) if hits else float("nan")


def run_fit_check(bundle: Path, requests: Sequence[FitRequest], samples: int = 5, cache_dir=None,
                  precision: str = "bf16", recommender=None, baselines=None, log=print) -> dict:
    """Fit of every system for every request (see module docstring); returns the report dict.

    Args:
        recommender: a ready :class:`talkplay.recommender.Recommender` (default: the bundle's, on CPU).
        baselines: {name: ranker} (default: bm25, dense and popularity built from the bundle's TRAIN data).
    """
    from talkplay.conversation import ConversationState
    from talkplay.recommender import GenerationConfig, load_recommender
    from train.evaluation.evaluate import build_systems

    catalog = load_catalog(bundle)
    tracks = list(catalog)
    rec = recommender or load_recommender(bundle, "cpu", precision)
    systems = baselines if baselines is not None else build_systems(bundle, ["bm25", "dense", "popularity"], 0,
                                                                    cache_dir)
    app_config = GenerationConfig()  # what the app samples with by default
    rows, t0 = [], time.perf_counter()
    for n, req in enumerate(requests, 1):
        fit = [req.fits(t) for t in tracks]
        row = {"request": req.text, "fitting_tracks": int(sum(fit)), "random": float(np.mean(fit))}
        for name, ranker in systems.items():
            top = _top(np.asarray(ranker.scores(_user_history(req.text), catalog), dtype=float), 5)
            row[f"{name}_top1"] = tracks[top[0]].track_id
            row[f"{name}_top1_fit"] = bool(fit[top[0]])
            row[f"{name}_top5_fit"] = float(np.mean([fit[i] for i in top]))
        ranked = rec.rank(ConversationState(), req.text, k=5)
        index = {t.track_id: i for i, t in enumerate(tracks)}
        row["talkplay_top1"] = ranked[0].track_id
        row["talkplay_top1_fit"] = bool(fit[index[ranked[0].track_id]])
        row["talkplay_top5_fit"] = float(np.mean([fit[index[r.track_id]] for r in ranked]))
        played = [rec.choose(ConversationState(), req.text,
                             generation=GenerationConfig(temperature=app_config.temperature, top_p=app_config.top_p,
                                                         seed=s)).track.track_id for s in range(samples)]
        row["talkplay_played"] = played
        row["talkplay_played_fit"] = float(np.mean([fit[index[t]] for t in played]))
        if rec.may_talk(app_config):  # the app answers in words only below the threshold: then nothing plays
            row["talkplay_p_music"] = round(rec.music_probability(ConversationState(), req.text), 4)
            if row["talkplay_p_music"] < rec.threshold(app_config):
                row["answered_in_words"] = True
                row["talkplay_played_fit"] = 0.0
        rows.append(row)
        log(f"[{n}/{len(requests)}] {req.text!r}: played fit {row['talkplay_played_fit']:.2f}, "
            f"top-1 {row['talkplay_top1']} ({'fits' if row['talkplay_top1_fit'] else 'no'}); "
            f"bm25 {'fits' if row.get('bm25_top1_fit') else 'no'}")

    def mean(key: str) -> float | None:
        vals = [float(r[key]) for r in rows if key in r]
        return round(float(np.mean(vals)), 4) if vals else None

    played_all = [t for r in rows for t in r["talkplay_played"]]
    summary = {
        "requests": len(rows), "samples_per_request": samples,
        "talkplay_played_fit": mean("talkplay_played_fit"), "talkplay_top1_fit": mean("talkplay_top1_fit"),
        "talkplay_top5_fit": mean("talkplay_top5_fit"), "random_fit": mean("random"),
        "played_distinct": len(set(played_all)), "played_most_common": Counter(played_all).most_common(3),
        "answered_in_words": sum(bool(r.get("answered_in_words")) for r in rows),  # counted as not fitting
        "top1_distinct": {"talkplay": len({r["talkplay_top1"] for r in rows}),
                          **{n: len({r[f"{n}_top1"] for r in rows}) for n in systems}},
    }
    for name in systems:
        summary[f"{name}_top1_fit"] = mean(f"{name}_top1_fit")
        summary[f"{name}_top5_fit"] = mean(f"{name}_top5_fit")
    return {"summary": summary, "requests": rows, "bundle": str(bundle), "generation": {
        "temperature": app_config.temperature, "music_temperature": app_config.music_temperature,
        "top_p": app_config.top_p, "mode": app_config.mode, "prior_weight": app_config.prior_weight,
        "text_weight": app_config.text_weight},
        "seconds": round(time.perf_counter() - t0, 1)}


def markdown(result: dict) -> str:
    s = result["summary"]
    names = [k[: -len("_top1_fit")] for k in s if k.endswith("_top1_fit") and k != "talkplay_top1_fit"]
    lines = [
        f"# Fit check — `{result['bundle']}`", "",
        f"{s['requests']} typical first requests (`{result.get('requests_file', REQUESTS_FILE)}`), each with the tags a "
        f"fitting track "
        f"must carry. *Played*: the track the app plays with its default settings (music temperature "
        f"{result['generation'].get('music_temperature')}, prior weight {result['generation'].get('prior_weight', '–')}, "
        f"text-match weight {result['generation'].get('text_weight', '–')}: the text match's shortlist scored by the "
        f"model, or the model's constrained span alone when the words name nothing on a card), "
        f"{s['samples_per_request']} sample(s) per request. "
        f"Reproduce: `{result.get('command') or 'python -m train.evaluation.fit_check --catalog ' + result['bundle']}`.", "",
        "| system | played / top-1 fits | top-5 fits | distinct top-1 tracks |", "|---|---|---|---|",
        f"| **TalkPlay, played** | **{s['talkplay_played_fit']:.2f}** | – | {s['played_distinct']} (all samples) |",
        f"| TalkPlay, top-1 of its ranking | {s['talkplay_top1_fit']:.2f} | {s['talkplay_top5_fit']:.2f} | "
        f"{s['top1_distinct']['talkplay']} |",
    ]
    for n in names:
        lines.append(f"| {n} | {s[f'{n}_top1_fit']:.2f} | {s[f'{n}_top5_fit']:.2f} | {s['top1_distinct'][n]} |")
    lines += [f"| random (share of fitting tracks) | {s['random_fit']:.2f} | {s['random_fit']:.2f} | – |", ""]
    if s.get("answered_in_words") is not None:
        lines += [f"Requests the app would answer in words only (the model's P(music) below the threshold; counted as "
                  f"not fitting, since nothing plays): {s['answered_in_words']}.", ""]
    lines += [
              "| request | fitting tracks | TalkPlay played (fit share) | TalkPlay top-1 | BM25 top-1 | dense top-1 |",
              "|---|---|---|---|---|---|"]
    mark = {True: "✓", False: "✗"}
    for r in result["requests"]:
        lines.append(f"| {r['request']} | {r['fitting_tracks']} | {r['talkplay_played_fit']:.1f} | "
                     f"{r['talkplay_top1']} {mark[r['talkplay_top1_fit']]} | "
                     f"{r.get('bm25_top1', '–')} {mark.get(r.get('bm25_top1_fit'), '')} | "
                     f"{r.get('dense_top1', '–')} {mark.get(r.get('dense_top1_fit'), '')} |")
    return "\n".join(lines) + "\n"


def tune(args) -> dict:
    """Choose the prior weight and music temperature on the validation split (the fit check stays a report)."""
    from talkplay.conversation import ConversationState
    from talkplay.recommender import GenerationConfig, load_recommender

    rec = load_recommender(args.catalog, "cpu", args.precision)
    catalog = load_catalog(args.catalog)
    valid = split_requests(args.catalog, "valid", args.tune_requests)
    prior = rec.prior().row_scores
    ids = rec.store.track_ids
    hits = {b: [] for b in args.tune_priors}
    for req in valid:
        raw = {r.track_id: r.logprob for r in rec.rank(ConversationState(), req.text, k=len(ids), prior_weight=0.0,
                                                       generation=replace(rec.generation, first_request=None))}
        scores = np.array([raw[t] for t in ids])
        for b in args.tune_priors:
            hits[b].append(req.fits(catalog[ids[int(np.argmax(scores - b * prior))]]))
    top1 = {b: float(np.mean(h)) for b, h in hits.items()}
    for b, v in top1.items():
        print(f"prior weight {b}: top-1 fit {v:.3f} on {len(valid)} valid first requests", flush=True)
    best = max(top1, key=lambda b: (top1[b], -b))
    played = {}
    for t in args.tune_temperatures:
        played[t] = played_fit(rec, catalog, valid, args.samples, GenerationConfig(
            music_temperature=t, prior_weight=best, first_request=None))  # β as chosen, on every request
        print(f"prior weight {best}, music temperature {t}: played fit {played[t]:.3f}", flush=True)
    return {"top1_by_prior": top1, "best_prior": best, "played_by_temperature": played}


def tune_text(args) -> dict:
    """Choose the text-match weight λ (talkplay.textmatch) and the concepts' weight w (``TextMatch.tag_weight``,
    talkplay.intent) on the validation split: top-1 fit of the ranking and fit of the played track (greedy) for
    each (λ, w) (prior weight and temperature at their defaults)."""
    from talkplay.conversation import ConversationState
    from talkplay.recommender import GenerationConfig, load_recommender

    rec = load_recommender(args.catalog, "cpu", args.precision)
    catalog = load_catalog(args.catalog)
    valid = split_requests(args.catalog, "valid", args.tune_requests)
    ids = rec.store.track_ids
    beta = rec.generation.prior_weight if args.prior_weight is None else args.prior_weight
    prior = rec.prior().row_scores
    match = rec.text_match()
    weights = args.tag_weights if args.tag_weights is not None else [match.tag_weight]
    print(f"text match: BM25{' + sentence vectors' if match.vectors is not None else ' only'}", flush=True)
    grid = [(lam, w) for lam in args.tune_text for w in weights]
    top1 = {g: [] for g in grid}
    for req in valid:
        raw = {r.track_id: r.logprob for r in rec.rank(ConversationState(), req.text, k=len(ids), prior_weight=0.0,
                                                       text_weight=0.0,
                                                       generation=replace(rec.generation, first_request=None))}
        model = np.array([raw[t] for t in ids]) - beta * prior
        for lam, w in grid:
            match.tag_weight = w
            top1[(lam, w)].append(req.fits(catalog[ids[int(np.argmax(model + lam * match.scores(req.text)))]]))
    result = {"grid": [], "requests": len(valid), "prior_weight": beta}
    for lam, w in grid:
        match.tag_weight = w
        # these weights on the (first) requests, not a first request's own
        config = GenerationConfig(text_weight=lam, prior_weight=beta, seed=0, first_request=None)
        played = played_fit(rec, catalog, valid, 1, config)
        result["grid"].append({"text_weight": lam, "tag_weight": w, "top1": float(np.mean(top1[(lam, w)])),
                               "played": played})
        print(f"prior weight {beta}, text weight {lam}, tag weight {w}: top-1 fit {np.mean(top1[(lam, w)]):.3f}, "
              f"greedy played fit {played:.3f} on {len(valid)} valid first requests", flush=True)
    return result


def tune_shortlist(args) -> dict:
    """Choose how many text-match candidates the model scores when it plays (talkplay.recommender.SHORTLIST): greedy
    played fit on the validation split's first requests for each size (each candidate costs the start of every
    turn ~10 positions of model time)."""
    from talkplay.recommender import GenerationConfig, load_recommender

    rec = load_recommender(args.catalog, "cpu", args.precision)
    catalog = load_catalog(args.catalog)
    valid = split_requests(args.catalog, "valid", args.tune_requests)
    result = {"played_by_shortlist": {}, "requests": len(valid)}
    for size in args.tune_shortlist:
        rec.shortlist = size
        t0 = time.perf_counter()
        result["played_by_shortlist"][size] = played_fit(rec, catalog, valid, 1, GenerationConfig(seed=0))
        print(f"shortlist {size}: greedy played fit {result['played_by_shortlist'][size]:.3f} on {len(valid)} valid "
              f"first requests ({(time.perf_counter() - t0) / len(valid):.2f} s a request)", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.fit_check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory (with model/)")
    p.add_argument("--requests", type=Path, default=None, help=f"requests file (default: <catalog>/{REQUESTS_FILE})")
    p.add_argument("--samples", type=int, default=5, help="played tracks sampled per request (seeds 0..N-1)")
    p.add_argument("--precision", default="bf16", help="model precision on CPU (bf16, fp32 or int8)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where fit_check.{json,md} go")
    p.add_argument("--name", default="", help="report name suffix: fit_check[_<name>].*")
    p.add_argument("--tune-priors", type=float, nargs="+", default=None, metavar="BETA",
                   help="instead of the report: top-1 fit on the VALID split's first requests for each prior weight "
                        "β (talkplay.prior), then played fit for each --tune-temperatures at the best β")
    p.add_argument("--tune-temperatures", type=float, nargs="+", default=[1.0, 0.7, 0.5], metavar="T",
                   help="music-span temperatures tried with --tune-priors")
    p.add_argument("--tune-requests", type=int, default=80, help="valid first requests used for tuning")
    p.add_argument("--tune-text", type=float, nargs="+", default=None, metavar="LAMBDA",
                   help="instead of the report: top-1 and greedy played fit on the VALID split's first requests for "
                        "each text-match weight λ (talkplay.textmatch)")
    p.add_argument("--prior-weight", type=float, default=None, help="β used with --tune-text (default: the engine's)")
    p.add_argument("--tag-weights", type=float, nargs="+", default=None, metavar="W",
                   help="with --tune-text: also try each weight of the request's concepts (TextMatch.tag_weight, "
                        "talkplay.intent; default: the engine's)")
    p.add_argument("--tune-shortlist", type=int, nargs="+", default=None, metavar="N",
                   help="instead of the report: greedy played fit on the VALID split's first requests for each "
                        "shortlist size (text-match candidates the model scores)")
    args = p.parse_args(argv)
    from talkplay.previews import default_cache_dir

    if args.tune_priors:
        tune(args)
        return 0
    if args.tune_text:
        tune_text(args)
        return 0
    if args.tune_shortlist:
        tune_shortlist(args)
        return 0
    catalog = load_catalog(args.catalog)
    requests = read_requests(args.requests or args.catalog / REQUESTS_FILE, catalog)
    result = run_fit_check(args.catalog, requests, args.samples, default_cache_dir() / "embeddings", args.precision)
    path = args.requests or args.catalog / REQUESTS_FILE
    result["requests_file"] = str(path.relative_to(args.catalog) if path.is_relative_to(args.catalog) else path)
    result["command"] = "python -m train.evaluation.fit_check " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "fit_check" + (f"_{args.name}" if args.name else "")
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

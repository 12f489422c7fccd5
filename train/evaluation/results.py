"""The README's results section, generated from the report files (never typed by hand).

    python -m train.evaluation.results            # rewrites the block between the results markers in README.md
    python -m train.evaluation.results --check    # exit 1 if README.md is out of date with reports/

Reads ``reports/fit_check.json`` (train.evaluation.fit_check), ``reports/conversation_checks.json``
(train.evaluation.conversation_checks), ``reports/eval_<catalog>.json`` (train.evaluation.evaluate), ``reports/bench.json`` (train.checks.bench) and
``reports/load.json`` (train.checks.load_test); a report that does not exist yet is named as missing.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.evaluation.results")

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- results:begin (python -m train.evaluation.results) -->", "<!-- results:end -->"
LABELS = {"random": "random", "popularity": "popularity", "bm25": "BM25", "dense": "dense MiniLM",
          "item2vec": "item2vec (previous tracks)", "talkplay": "**TalkPlay, constrained** (ours)",
          "talkplay-paper": "TalkPlay, paper mode (ours)"}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def eval_block(r: dict, name: str) -> list[str]:
    lines = [f"**Recommendation quality** — `{r['catalog']}` catalog, {r['split']} split: {r['conversations']} "
             f"synthetic conversations, {r['turns']} turns ({r['cold_turns']} with a cold-start target), each system "
             f"ranking all {r['tracks']} tracks given the conversation so far (already-played tracks excluded, "
             "pessimistic ties). Macro over turns:", "",
             "| system | MRR | Hit@1 | Hit@10 | Hit@100 | nDCG@10 | cold-start MRR | top-1 coverage |",
             "|---|---|---|---|---|---|---|---|"]
    for s, v in r["systems"].items():
        m, c = v["macro_over_turns"], v["cold"]
        cold = "—" if c["n"] == 0 else f"{c['mrr']:.3f}"
        lines.append(f"| {LABELS.get(s, s)} | {m['mrr']:.3f} | {m['hit@1']:.3f} | {m['hit@10']:.3f} | "
                     f"{m['hit@100']:.3f} | {m['ndcg@10']:.3f} | {cold} | {v['coverage']['top1_coverage']:.2f} |")
    lines += ["", "Audio-text baseline: not available (no offline audio-text model). "]
    if r.get("paper_mode"):
        p = r["paper_mode"]
        lines[-1] += (f"Paper mode's freely generated spans: {p['exact']} exact, {p['partial']} partial, {p['none']} "
                      f"no match of {p['turns']} ({p['exact_rate']:.1%} exact; the paper reports 49.7 %). ")
    lines[-1] += (f"Per-turn curves, conversation-macro, warm/cold and diversity tables: "
                  f"[`reports/{name}.md`](reports/{name}.md), [`_turns.png`](reports/{name}_turns.png). "
                  f"Reproduce: `{r.get('command', 'python -m train.evaluation.evaluate')}`.")
    return lines


def fit_block(r: dict) -> list[str]:
    s = r["summary"]
    others = ", ".join(f"{label} {s[f'{k}_top1_fit']:.0%}" for k, label in
                       (("bm25", "BM25"), ("dense", "dense MiniLM"), ("popularity", "always the most popular track"))
                       if s.get(f"{k}_top1_fit") is not None)
    plays = s["requests"] * s["samples_per_request"]
    return [f"**Does the track that plays fit the request?** ([`reports/fit_check.md`](reports/fit_check.md), "
            f"`python -m train.evaluation.fit_check`) — {s['requests']} typical first requests written the way listeners type "
            f"them (moods, scenes, instruments, negations, misspellings), each with the tags a fitting track must "
            f"carry: the track TalkPlay plays fits **{s['talkplay_played_fit']:.0%}** of the time "
            f"({s['samples_per_request']} play{'s' if s['samples_per_request'] > 1 else ''} per request; its own top-1 {s['talkplay_top1_fit']:.0%}, "
            f"top-5 {s['talkplay_top5_fit']:.0%}). Top-1 of the baselines: {others}; a random track "
            f"{s['random_fit']:.0%}. {s['played_distinct']} distinct tracks over {plays} plays."]


def unseen_fit_block(r: dict) -> list[str]:
    """The same check on requests written by someone who saw neither the concept table nor any answer."""
    s = r["summary"]
    return [f"**…on requests nobody tuned for** ([`reports/fit_check_unseen.md`](reports/fit_check_unseen.md), "
            f"`python -m train.evaluation.fit_check --requests catalog/demo/eval/fit_requests_unseen.jsonl --name unseen`) — "
            f"{s['requests']} first requests written by a separate session that saw neither `talkplay.intent`'s "
            f"table nor any system's answers: played fits **{s['talkplay_played_fit']:.0%}** (top-1 "
            f"{s['talkplay_top1_fit']:.0%}); BM25 {s['bm25_top1_fit']:.0%}, dense MiniLM {s['dense_top1_fit']:.0%}, "
            f"random {s['random_fit']:.0%}."]


def checks_block(r: dict) -> list[str]:
    s = r["summary"]
    return [f"**Do the replies tell the truth?** ([`reports/conversation_checks.md`](reports/conversation_checks.md), "
            f"`python -m train.evaluation.conversation_checks`) — {s['replies']} replies generated with the app's settings: "
            f"{s['faithfulness_violation_rate']:.1%} state a name, number or attribute the played track's card "
            f"contradicts or lacks ({s['wrong_name_replies']} another track's name, {s['wrong_number_replies']} a "
            f"tempo/key/year, {s['absent_attribute_replies']} a style/mood/instrument); "
            f"{s['names_played_track_rate']:.0%} name the played track; {s['over_length_replies']} run into the "
            "length cap." + _refinement_sentence(r)]


def _refinement_sentence(r: dict) -> str:
    ref = r.get("refinement")
    if not ref:
        return ""
    rates = ref["rates"]

    def pct(x):
        return "—" if x is None else f"{x:.0%}"

    return (f" After a relative request (\"slower\", \"less dark, more upbeat\"; {ref['turns']} turns: {ref['test_turns']} "
            f"of the test split, {ref['script_turns']} of our own scripts) the next track moves the asked way "
            f"**{pct(rates['talkplay']['all'])}** of the time (test split {pct(rates['talkplay']['test'])}, scripts "
            f"{pct(rates['talkplay']['scripts'])}); BM25's top-1 {pct(rates['bm25']['all'])}, dense "
            f"{pct(rates['dense']['all'])}.")


def bench_block(b: dict) -> list[str]:
    out = ["**Speed and memory** ([`reports/bench.md`](reports/bench.md), `python -m train.checks.bench`; "
           f"{b['machine']['cores']} CPU cores):", ""]
    if "engine" in b:
        for p, e in b["engine"]["results"].items():
            out.append(f"- {p}: first track {e['ttft_s']:.2f} s after the request, reply {e['reply_tokens_per_s']:.0f} "
                       f"tokens/s; a bare `model.generate` of as many tokens: {e['bare_generate_tokens_per_s']:.0f} tokens/s.")
    if "batching" in b:
        for p, v in b["batching"]["results"].items():
            rows = v["rows"]
            one, big = rows[min(rows, key=int)], rows[max(rows, key=int)]
            out.append(f"- Batched decoding ({p}, `talkplay.scheduler`): the step with all rows full gives "
                       f"{one.get('full_batch_tokens_per_s')} tokens/s at batch 1 → {big.get('full_batch_tokens_per_s')} at "
                       f"batch {max(rows, key=int)} (×{v['speedup_at_largest']}); a bare `generate` of the same batches: "
                       f"{one['bare_generate_tokens_per_s']} → {big['bare_generate_tokens_per_s']} tokens/s. A burst of "
                       f"{big['turns']} turns reaches a mean batch of {big['mean_batch']}.")
    if "app" in b:
        out.append(f"- App process peak memory: {b['app']['results']['peak_rss_mb']:.0f} MB (model loaded, answering).")
    if "store" in b:
        rows = b["store"]["results"]["rows"]
        big = rows[-1]
        sizes = ", ".join(f"{r['items']:,}" for r in rows)
        out.append(f"- Decoding constraint at {big['items']:,} tracks: {big['allowed_step_ms']} ms per step "
                   f"(trie {big['trie_mb']} MB); partial matcher {big['match_ms']} ms per span "
                   f"({sizes} items measured).")
    if "train" in b:
        t = b["train"]["results"]
        out.append(f"- Training: {t['modes']['supervised_head']['tokens_per_s']:.0f} tokens/s with the "
                   f"supervised-positions LM head vs {t['modes']['full_head']['tokens_per_s']:.0f} without "
                   f"(×{t['speedup']:.2f}).")
    if "catalog" in b:
        c = b["catalog"]["results"]
        out.append(f"- Catalog build: {c['tracks_per_min']} tracks/min (analysis, tags, embedding, previews; "
                   "download excluded).")
    return out


def load_block(r: dict, name: str = "load") -> list[str]:
    f = r["feedback"]
    return [f"**Under load** ([`reports/{name}.md`](reports/{name}.md), `{r['command']}`): {r['sessions']} concurrent "
            f"sessions for {r['minutes']:g} minutes against the real app on CPU — {r['requests']['turns']} turns and "
            f"{r['requests']['feedback']} feedback events, **{r['errors']} errors**; time to first track p50 "
            f"{r['time_to_first_track_s']['p50']:.1f} s / p95 {r['time_to_first_track_s']['p95']:.1f} s (queueing "
            f"included: one model, batched, serves everyone); {f['sent']} feedback events sent, {f['rows_in_sqlite']} "
            f"rows stored; {r.get('repeated_tracks', '—')} tracks repeated in a conversation, "
            f"{r.get('rejected_tracks_returned', '—')} skipped tracks returned ({r.get('skips', '—')} skips)."]


# Where the product stood before the work these reports measure (quoted from the issues that set the targets).
BEFORE = {"load_turns": 51, "load_ttft_p50": 40.6, "fit": 0.50, "violations": 0.15, "names": 0.91}
TARGETS = {"fit": 0.80, "turn1_margin": 1.5, "all_margin": 1.3, "violations": 0.05, "names": 0.95,
           "refinements": 0.75, "load_turns_x": 3.0, "load_ttft_p50": 5.0, "load_ttft_p95": 10.0, "batch_x": 4.0}


def _best(systems: dict, value) -> tuple[str, float]:
    """The best baseline (not ours) by ``value(system dict)``."""
    name = max((k for k in systems if not k.startswith("talkplay")), key=lambda k: value(systems[k]))
    return LABELS.get(name, name), value(systems[name])


def _turn1(v: dict) -> float:
    return next((t["mrr"] for t in v["by_turn"] if t["turn"] == 1), float("nan"))


def reading_block(reports: Path, catalog: str = "demo", bundle: Path | None = None) -> list[str]:
    """"Reading it honestly": the numbers above set against the issues' targets and the state before, in words;
    generated like the rest of the block, so no number in it is typed by hand."""
    out = ["**Reading it honestly.**", ""]
    fit = _load(reports / "fit_check.json")
    if fit:
        s = fit["summary"]
        verdict = "meets" if s["talkplay_played_fit"] >= TARGETS["fit"] else "is short of"
        out.append(f"- *Does what plays fit?* On the fit check's {s['requests']} first requests the played track fits "
                   f"{s['talkplay_played_fit']:.0%} of the time (before this work: {BEFORE['fit']:.0%}), against "
                   f"BM25's top-1 {s['bm25_top1_fit']:.0%}, dense {s['dense_top1_fit']:.0%} and a random track "
                   f"{s['random_fit']:.0%}; it {verdict} the {TARGETS['fit']:.0%} the issue asks. The text match "
                   "— the request's words and its concepts read in the catalog's tags (`talkplay.intent`) — "
                   "proposes a shortlist and the model's log-likelihood chooses among it; the concept table was "
                   "written after seeing this file's older misses, so it flatters the table; the unseen requests "
                   "below are the fairer number, and the weights were chosen on the validation split.")
    unseen = _load(reports / "fit_check_unseen.json")
    if unseen:
        u = unseen["summary"]
        out.append(f"- *On requests nobody tuned for* the played track fits {u['talkplay_played_fit']:.0%} "
                   f"(BM25 {u['bm25_top1_fit']:.0%}, dense {u['dense_top1_fit']:.0%}); what misses there is mostly "
                   "a request whose words the table does not know or reads too broadly.")
    checks = _load(reports / "conversation_checks.json")
    if checks:
        s = checks["summary"]
        ok = s["faithfulness_violation_rate"] <= TARGETS["violations"] and s["names_played_track_rate"] >= TARGETS["names"]
        out.append(f"- *Do the replies tell the truth?* {s['faithfulness_violation_rate']:.1%} of {s['replies']} replies "
                   f"state something the card lacks or contradicts (before: {BEFORE['violations']:.0%}) and "
                   f"{s['names_played_track_rate']:.0%} name the played track (before: {BEFORE['names']:.0%}) — "
                   f"{'within' if ok else 'outside'} the issue's bounds. That comes from rules at decoding (the reply "
                   "opens with the card's name, attribute words the card lacks are banned: `talkplay.faithful`), not "
                   "from a better model; the replies still read like a small model's.")
        if s.get("music_decision_accuracy") is None:
            out.append("- *Talk without a track was not measured on this checkpoint* "
                       "(`python -m train.evaluation.conversation_checks` with `eval/dialogue_acts.jsonl`).")
        else:
            d = checks.get("dialogue", {})
            pct = lambda x: "—" if x is None else f"{x:.0%}"  # noqa: E731
            out.append(f"- *Talk without a track:* on {d.get('messages', '?')} messages people might send (greetings, "
                       f"thanks, questions about the app or the playing track, and requests; written by a separate "
                       f"session) the model chose music or words right {pct(s['music_decision_accuracy'])} of the time "
                       f"(non-requests {pct(s.get('music_decision_accuracy_non_requests'))}, requests "
                       f"{pct(s.get('music_decision_accuracy_requests'))}; {pct(d.get('accuracy_unseen'))} on the "
                       f"{d.get('unseen_messages', '?')} that are not also a training phrasing); questions about the "
                       f"playing track were answered from its card {pct(s.get('track_questions_answered_from_card'))} "
                       "of the time. The choice is the model's own: its probability of opening a music span after "
                       "the message.")
        if s.get("refinement_rate") is not None:
            out.append(f"- *Relative requests* (\"slower\", \"without drums\") move the next track the asked way "
                       f"{s['refinement_rate']:.0%} of the time, BM25's top-1 {s['refinement_rate_bm25']:.0%} and dense "
                       f"{s['refinement_rate_dense']:.0%}: the engine reads the direction and restricts the candidates "
                       "by the measured attribute (`talkplay.refine`). Our scripts and those patterns were written "
                       "together; the test split's phrasings were not.")
    ev = _load(reports / f"eval_{catalog}.json")
    if ev:
        systems = ev["systems"]
        ours, paper = systems.get("talkplay"), systems.get("talkplay-paper")
        if ours:
            b_name, b_mrr = _best(systems, lambda v: v["macro_over_turns"]["mrr"])
            t_name, t_mrr = _best(systems, _turn1)
            mrr, t1 = ours["macro_over_turns"]["mrr"], _turn1(ours)
            small = ", a small sample" if ev["conversations"] < 200 else ""
            line = (f"- *On the synthetic test split* ({ev['conversations']} conversations, {ev['turns']} turns{small}) "
                    f"TalkPlay's MRR is {mrr:.3f} against the best baseline's {b_mrr:.3f} ({b_name}, "
                    f"{mrr / b_mrr:.2f}×); its first-turn MRR {t1:.3f} against {t_mrr:.3f} ({t_name}, "
                    f"{t1 / t_mrr:.2f}×). The issue asks for {TARGETS['turn1_margin']}× on first turns and "
                    f"{TARGETS['all_margin']}× on all turns: first turns "
                    f"{'met' if t1 >= TARGETS['turn1_margin'] * t_mrr else 'not met'}, all turns "
                    f"{'met' if mrr >= TARGETS['all_margin'] * b_mrr else 'not met'}.")
            comp = (ev.get("comparison") or {}).get("talkplay", {})
            if comp.get("all") and comp.get("first"):
                a, f = comp["all"], comp["first"]
                line += (f" Paired bootstrap over conversations (95 %): MRR − {a['goal_ratio']}× {a['best_baseline']} "
                         f"{a['vs_goal']['difference']:+.3f} [{a['vs_goal']['ci95'][0]:+.3f}, "
                         f"{a['vs_goal']['ci95'][1]:+.3f}]; first turns − {f['goal_ratio']}× {f['best_baseline']} "
                         f"{f['vs_goal']['difference']:+.3f} [{f['vs_goal']['ci95'][0]:+.3f}, "
                         f"{f['vs_goal']['ci95'][1]:+.3f}]. The ranking objective adds the conversation's words, the "
                         "kept tracks' neighbours and popularity to the model's score (`talkplay.listening`); "
                         "[`reports/blend_demo.md`](reports/blend_demo.md) shows what each term adds on the "
                         "validation split, and the model's score alone.")
            if paper:
                line += (f" Constrained decoding beats the paper's free decoding on the same checkpoint "
                         f"({mrr:.3f} vs {paper['macro_over_turns']['mrr']:.3f}).")
            out.append(line)
    load = _load(reports / "load.json")
    if load:
        turns, ttft = load["requests"]["turns"], load["time_to_first_track_s"]
        x = turns / BEFORE["load_turns"]
        ok = (x >= TARGETS["load_turns_x"] and ttft["p50"] <= TARGETS["load_ttft_p50"]
              and ttft["p95"] <= TARGETS["load_ttft_p95"] and load["errors"] == 0)
        out.append(f"- *Many listeners at once.* {load['sessions']} listeners get their first track after "
                   f"{ttft['p50']:.1f} s (median; p95 {ttft['p95']:.1f} s; before batching {BEFORE['load_ttft_p50']} s) "
                   f"and complete {turns} turns in {load['minutes']:g} minutes (before: {BEFORE['load_turns']}, ×{x:.1f}) — "
                   f"{'within' if ok else 'outside'} the issue's bounds. Turn starts (prompt, shortlist, grounding "
                   "span, batch 1) run on a start thread while the replies decode together on another.")
    bench = _load(reports / "bench.json")
    if bench and "batching" in bench:
        res = bench["batching"]["results"]
        if "bf16" in res and "fp32" in res:
            big = max(res["bf16"]["rows"], key=int)
            bf, fp = res["bf16"]["rows"][big], res["fp32"]["rows"][big]
            out.append(f"- *bf16 is the CPU precision:* at batch {big} the full step gives "
                       f"{bf['full_batch_tokens_per_s']} tokens/s in bf16 vs {fp['full_batch_tokens_per_s']} in fp32 "
                       "on this CPU (no native bf16). `int8` is faster still but lowers the fit; it is an option.")
    if bundle is not None and (bundle / "model" / "checkpoint.json").exists():
        info = json.loads((bundle / "model" / "checkpoint.json").read_text(encoding="utf-8"))
        training = info.get("training", {})
        from train.catalog.package import lineage

        steps = lineage(training)["steps"]  # a continued run: its steps and those of the checkpoints it started from
        steps = "an unknown number of" if steps is None else steps
        tracks = ev["tracks"] if ev else "the"
        out.append(f"- All of this is on synthetic training data over {tracks} tracks, with a 135M model trained for "
                   f"{steps} CPU steps; the papers' absolute numbers are not comparable.")
    return out


def render(reports: Path, catalog: str = "demo") -> str:
    parts = []
    fit = _load(reports / "fit_check.json")
    parts += (fit_block(fit) if fit else ["*reports/fit_check.json missing: run `python -m train.evaluation.fit_check`.*"]) + [""]
    unseen = _load(reports / "fit_check_unseen.json")
    parts += (unseen_fit_block(unseen) + [""]) if unseen else []
    checks = _load(reports / "conversation_checks.json")
    parts += (checks_block(checks) + [""]) if checks else []
    ev = _load(reports / f"eval_{catalog}.json")
    parts += eval_block(ev, f"eval_{catalog}") if ev else [f"*reports/eval_{catalog}.json missing: run `python -m train.evaluation.evaluate`.*"]
    bench = _load(reports / "bench.json")
    parts += [""] + (bench_block(bench) if bench else ["*reports/bench.json missing: run `python -m train.checks.bench`.*"])
    load = _load(reports / "load.json")
    parts += [""] + (load_block(load) if load else ["*reports/load.json missing: run `python -m train.checks.load_test`.*"])
    for extra in sorted(reports.glob("load_*.json")):  # the same load at other session counts (where it bends)
        parts += [""] + load_block(_load(extra), extra.stem)
    gpu = _load(reports / "gpu.json")
    parts += [""] + ([f"**On a GPU** ([`reports/gpu.md`](reports/gpu.md), `python -m train.checks.gpu_check`): {gpu['device']}."]
                     if gpu else ["*No GPU run yet: `python -m train.checks.gpu_check` writes reports/gpu.{json,md} on a CUDA "
                                  "machine (it refuses without one).*"])
    parts += [""] + reading_block(reports, catalog, REPO / "catalog" / catalog)
    return "\n".join([BEGIN, *parts, END])


def update(readme: Path, reports: Path) -> bool:
    """Rewrite the marked block; True when the file changed."""
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no results markers ({BEGIN} … {END})")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = head + render(reports) + tail
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.evaluation.results", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    parser.add_argument("--reports", type=Path, default=REPO / "reports")
    parser.add_argument("--check", action="store_true", help="only check that the README is up to date")
    args = parser.parse_args(argv)
    if args.check:
        text = args.readme.read_text(encoding="utf-8")
        current = text.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in text else ""
        ok = BEGIN + current + END == render(args.reports)
        print("README results are up to date" if ok else "README results are out of date: python -m train.evaluation.results")
        return 0 if ok else 1
    changed = update(args.readme, args.reports)
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Conversation checks: do the replies tell the truth about the track that plays?

    python -m train.evaluation.conversation_checks --catalog catalog/demo    # → reports/conversation_checks.{json,md}

Generates turns with the app's own engine and settings — the test split's turns (history replayed from
the data, the model answering the last request) and the fit check's first requests — and counts, per
reply (a reply may break several rules; it counts once in the violation rate):

* **wrong names** — a title, artist or album of *another* catalog track that the played track does not
  share (names of at least two words or seven letters, matched as whole words, so "Intro" in "an intro"
  is not one);
* **wrong numbers** — a tempo ("120 BPM"), key ("E minor") or year that contradicts the card or that the
  card does not state;
* **absent attributes** — a style, mood, tempo or instrument word of the catalog's tag vocabulary (plus
  common instruments and styles, "trumpet", "choir", "jazz", …: :mod:`talkplay.faithful`, the vocabulary the
  engine's reply rule uses too) that is not in the played track's tags or caption (plural forms count as the
  tag: "synths" for "synth");
* **over length** — the reply ran into the engine's token cap instead of ending;
* **names the played track** — the title appears in the reply.

The JSON's ``summary`` holds ``faithfulness_violation_rate``, ``names_played_track_rate`` and
``over_length_replies`` and ``refinement_rate`` (with ``refinement_rate_bm25`` / ``_dense`` beside it): the share
of relative requests ("slower", "less dark, more upbeat") — test-split turns and our own scripts
(``eval/refinement_scripts.jsonl`` in the bundle) — after which the played track moves every asked way from the
previous one (:func:`talkplay.refine.moves`).

``music_decision_accuracy`` is the share of messages of ``eval/dialogue_acts.jsonl`` (in the bundle: greetings,
thanks, goodbyes, questions about the app or the playing track, and requests — written by a separate session that
saw neither the training phrasings nor any answer; the accuracy on the messages that are not also a training
phrasing is reported apart) for which the engine's choice, a new track or words only, is the right one. Messages that follow a
conversation's start (thanks, follow-ups, questions about the track) are sent after one played request. A
question about the playing track that is answered in words counts as *answered from the card* when the answer
states the asked fact as the card gives it (key, tempo, artist, album, year, an instrument or genre tag), or,
for a fact the card span lacks (the license terms, the length), points to the card or the player; its answer is
also checked for faithfulness like any reply. (The threshold was chosen on the validation split's synthetic turns
when the decision head was trained, ``train.training.decision``.) Requests the model answers in words
are left out of the faithfulness rates (there is no track to be faithful to) and counted apart.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("use python -m train.evaluation.conversation_checks")

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from talkplay.catalog import Catalog, Track, load_catalog
from talkplay.faithful import attribute_vocabulary, card_words, on_card

_BPM = re.compile(r"(\d{2,3})\s*(?:-ish\s*)?bpm", re.IGNORECASE)
_KEY = re.compile(r"\b([A-G])\s?([#♯b♭]?)\s+(major|minor)\b")
_YEAR = re.compile(r"\b(19[5-9]\d|20[0-3]\d)\b")
MIN_NAME_LETTERS = 7  # a one-word name shorter than this is too likely an ordinary word ("Intro", "Menu")


@dataclass(frozen=True)
class Card:
    """The facts a track's card shows, in the form the checks compare against."""

    names: frozenset[str]  # title, artist, album
    words: frozenset[str]  # lower-case words of tags and caption
    tags: frozenset[str]
    bpm: int | None
    key: str | None  # "E minor", sharps as '#'
    year: int | None

    @classmethod
    def of(cls, track: Track) -> "Card":
        caption = track.caption or ""
        bpm = _BPM.search(caption)
        key = _KEY.search(caption)
        return cls(frozenset(n for n in (track.title, track.artist, track.album) if n),
                   card_words(track), frozenset(t.lower() for t in track.tags),
                   int(bpm.group(1)) if bpm else None, _norm_key(key) if key else None, track.year)


def _norm_key(m: re.Match) -> str:
    accidental = {"♯": "#", "♭": "b"}.get(m.group(2), m.group(2))
    return f"{m.group(1)}{accidental} {m.group(3)}"


def _has_words(text: str, phrase: str, case: bool = False) -> bool:
    flags = 0 if case else re.IGNORECASE
    return re.search(r"(?<![\w'-])" + re.escape(phrase) + r"(?![\w'-])", text, flags) is not None


@dataclass
class Vocabulary:
    """What a reply could wrongly mention: other tracks' names and attribute words."""

    names: dict[str, set[str]]  # name → track ids carrying it
    attributes: frozenset[str]

    @classmethod
    def of(cls, catalog: Catalog) -> "Vocabulary":
        names: dict[str, set[str]] = {}
        for t in catalog:
            for n in (t.title, t.artist, t.album):
                if n and (" " in n.strip() or sum(c.isalpha() for c in n) >= MIN_NAME_LETTERS):
                    names.setdefault(n, set()).add(t.track_id)
        return cls(names, attribute_vocabulary(catalog))  # the vocabulary the engine's reply rule uses


@dataclass
class ReplyCheck:
    """What one reply got wrong (empty lists: nothing)."""

    wrong_names: list[str] = field(default_factory=list)
    wrong_numbers: list[str] = field(default_factory=list)
    absent_attributes: list[str] = field(default_factory=list)
    over_length: bool = False
    names_track: bool = False

    @property
    def violates(self) -> bool:
        return bool(self.wrong_names or self.wrong_numbers or self.absent_attributes)


def check_reply(reply: str, track: Track, vocab: Vocabulary, reply_tokens: int = 0, cap: int = 0) -> ReplyCheck:
    """The checks of the module docstring for one reply about ``track``."""
    card = Card.of(track)
    out = ReplyCheck(over_length=bool(cap) and reply_tokens >= cap,
                     names_track=_has_words(reply, track.title) or track.title.lower() in reply.lower())
    own = " | ".join(card.names).lower()
    for name, ids in vocab.names.items():
        if track.track_id in ids or name.lower() in own:
            continue
        if _has_words(reply, name, case=True):
            out.wrong_names.append(name)
    for m in _BPM.finditer(reply):
        if card.bpm is None or abs(int(m.group(1)) - card.bpm) > 3:
            out.wrong_numbers.append(m.group(0))
    for m in _KEY.finditer(reply):
        if _norm_key(m) != card.key:
            out.wrong_numbers.append(m.group(0))
    for m in _YEAR.finditer(reply):
        if card.year is None or int(m.group(1)) != int(card.year):
            out.wrong_numbers.append(m.group(0))
    scrubbed = reply
    for n in card.names:  # a title may contain an attribute word ("Dark Forest") — that is not a claim
        scrubbed = re.sub(re.escape(n), " ", scrubbed, flags=re.IGNORECASE)
    for word in sorted(vocab.attributes):
        if not on_card(word, card.words) and _has_words(scrubbed, word):
            out.absent_attributes.append(word)
    return out


def _test_turns(bundle: Path, max_turns: int) -> list[tuple[list, str, str]]:
    """(history messages, request, conversation id) of the first ``max_turns`` test turns, in order."""
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    out = []
    for conv in read_conversations(conversations_path(bundle, "test")):
        msgs = list(conv.messages)
        for i in range(0, len(msgs), 3):
            out.append((msgs[:i + 1], msgs[i].content, conv.conversation_id))
            if len(out) >= max_turns:
                return out
    return out


def run_checks(bundle: Path, rec, max_test_turns: int, fit_requests: Iterable[str] = (), seed: int = 0,
               log=print) -> dict:
    """Generate the turns and check every reply; returns the report dict."""
    from talkplay.conversation import Done, TrackChosen
    from talkplay.recommender import GenerationConfig
    from train.evaluation.model_eval import state_from_history

    catalog = load_catalog(bundle)
    vocab = Vocabulary.of(catalog)
    config = GenerationConfig(seed=seed)  # the app's defaults, made reproducible
    jobs = [("test", history, cid) for history, _, cid in _test_turns(bundle, max_test_turns)]
    from train.data.conversation_schema import Message

    jobs += [("fit", [Message("user", text)], f"fit-{i}") for i, text in enumerate(fit_requests)]
    rows, t0 = [], time.perf_counter()
    for n, (source, history, cid) in enumerate(jobs, 1):
        state, text = state_from_history(history)
        events = list(rec.respond(state, text, generation=config))
        chosen = next((e for e in events if isinstance(e, TrackChosen)), None)
        done = next(e for e in events if isinstance(e, Done))
        if chosen is None:  # the model answered a request in words only: no track, so it names none
            rows.append({"source": source, "conversation": cid, "request": text, "track_id": None,
                         "reply": done.turn.reply, "reply_tokens": done.reply_tokens, "violates": False,
                         "wrong_names": [], "wrong_numbers": [], "absent_attributes": [],
                         "over_length": done.reply_tokens >= config.max_reply_tokens, "names_track": False})
            continue
        check = check_reply(done.turn.reply, chosen.track, vocab, done.reply_tokens, config.max_reply_tokens)
        rows.append({"source": source, "conversation": cid, "request": text, "track_id": chosen.track.track_id,
                     "reply": done.turn.reply, "reply_tokens": done.reply_tokens, "violates": check.violates,
                     "wrong_names": check.wrong_names, "wrong_numbers": check.wrong_numbers,
                     "absent_attributes": check.absent_attributes, "over_length": check.over_length,
                     "names_track": check.names_track})
        if n % 20 == 0:
            log(f"[{n}/{len(jobs)}] violation rate so far {sum(r['violates'] for r in rows) / len(rows):.3f}")
    words_only = sum(r["track_id"] is None for r in rows)
    rows_all, rows = rows, [r for r in rows if r["track_id"] is not None]  # the rates are over replies about a track
    n = max(1, len(rows))
    summary = {
        "replies": len(rows), "faithfulness_violation_rate": round(sum(r["violates"] for r in rows) / n, 4),
        "names_played_track_rate": round(sum(r["names_track"] for r in rows) / n, 4),
        "over_length_replies": sum(r["over_length"] for r in rows_all),
        "wrong_name_replies": sum(bool(r["wrong_names"]) for r in rows),
        "wrong_number_replies": sum(bool(r["wrong_numbers"]) for r in rows),
        "absent_attribute_replies": sum(bool(r["absent_attributes"]) for r in rows),
        "requests_answered_without_track": words_only,  # requests the model answered in words (no track to check)
        "music_decision_accuracy": None, "refinement_rate": None,  # filled in by the checks below (main)
    }
    common = Counter(w for r in rows for w in r["absent_attributes"] + r["wrong_names"] + r["wrong_numbers"])
    return {"summary": summary, "most_common_violations": common.most_common(15), "rows": rows_all,
            "bundle": str(bundle), "generation": {"temperature": config.temperature,
                                                  "music_temperature": config.music_temperature,
                                                  "top_p": config.top_p, "max_reply_tokens": config.max_reply_tokens,
                                                  "seed": seed},
            "seconds": round(time.perf_counter() - t0, 1)}


REFINEMENT_SCRIPTS = Path("eval/refinement_scripts.jsonl")  # in the bundle: multi-turn scripts written by us


def labelled_directions(template: str | None) -> tuple[str, ...]:
    """The directions a synthetic user message asks for, from its template id ("slower.04",
    "reject.14+too_slow.06+faster.04": a rejection reason counts as the direction away from it)."""
    from talkplay.refine import DIRECTIONS
    from train.data.lexicon import REASON_DIRECTION

    parts = [p.split(".")[0] for p in (template or "").split("+")]
    found = {p for p in parts if p in DIRECTIONS} | {REASON_DIRECTION[p] for p in parts if p in REASON_DIRECTION}
    return tuple(d for d in DIRECTIONS if d in found)


def _refinement_turns(bundle: Path, max_turns: int) -> list[tuple[list, tuple[str, ...], str]]:
    """(history, labelled directions, conversation id) of the test split's first relative requests."""
    from train.data.conversation_schema import read_conversations
    from train.data.build import conversations_path

    out = []
    for conv in read_conversations(conversations_path(bundle, "test")):
        msgs = list(conv.messages)
        for i in range(3, len(msgs), 3):
            wanted = labelled_directions(msgs[i].template)
            if wanted:
                out.append((msgs[:i + 1], wanted, conv.conversation_id))
                if len(out) >= max_turns:
                    return out
    return out


def read_scripts(path: Path) -> list[dict]:
    """Refinement scripts: {"id", "turns": [first request, {"text", "directions"}, …]} per line."""
    from talkplay.refine import DIRECTIONS

    scripts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            script = json.loads(line)
            for turn in script["turns"][1:]:
                if isinstance(turn, dict) and not set(turn["directions"]) <= set(DIRECTIONS):
                    raise ValueError(f"unknown direction in {turn['directions']}")
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {n}: {err}") from err
        scripts.append(script)
    return scripts


def refinement_check(bundle: Path, rec, max_test_turns: int, scripts: Sequence[dict], seed: int = 0,
                     log=print) -> dict:
    """Does the next track move the asked way ("slower", "less dark") from the previous one? Test-split relative
    turns (labels from their templates) and our scripts; BM25 and dense top-1 on the same turns beside it."""
    from talkplay.conversation import ConversationState
    from talkplay.recommender import GenerationConfig
    from talkplay.refine import moves
    from talkplay.textmatch import positive_text, tokenize
    from train.evaluation.model_eval import state_from_history

    config = GenerationConfig(seed=seed)
    attrs, match = rec.attributes(), rec.text_match()
    ids = rec.store.track_ids
    rows: list[dict] = []

    def judge(source: str, state, text: str, wanted: tuple[str, ...], played: str | None) -> None:
        prev = state.last_track
        heard = state.exclude()
        allowed = [r for r, t in enumerate(ids) if t not in heard]
        query = positive_text(text)
        bm25 = match.bm25.score(tokenize(query))
        picks = {"talkplay": played, "bm25": ids[max(allowed, key=lambda r: bm25[r])]}
        if match.vectors is not None and match.embed is not None:
            cos = match.vectors @ match.embed([query])[0]
            picks["dense"] = ids[max(allowed, key=lambda r: cos[r])]
        row = {"source": source, "request": text, "directions": list(wanted), "previous": prev}
        for name, track in picks.items():
            row[name] = track  # None: TalkPlay answered in words only, so nothing moved
            row[f"{name}_moved"] = track is not None and all(moves(attrs[prev], attrs[track], d) for d in wanted)
        rows.append(row)

    for history, wanted, cid in _refinement_turns(bundle, max_test_turns):
        state, text = state_from_history(history)
        if state.last_track not in attrs:
            continue
        judge("test", state, text, wanted, rec.choose(state, text, generation=config).track.track_id)
    for script in scripts:
        state = ConversationState()
        for turn in script["turns"]:
            text = turn if isinstance(turn, str) else turn["text"]
            before = ConversationState(list(state.turns), set(state.rejected), state.key)
            played = rec.chat(state, text, generation=config).track_id
            if not isinstance(turn, str) and before.last_track is not None:
                judge("scripts", before, text, tuple(turn["directions"]), played)
        log(f"refinement script {script['id']} done")

    def rate(name: str, source: str | None = None) -> float | None:
        sel = [r for r in rows if (source is None or r["source"] == source) and f"{name}_moved" in r]
        return round(sum(r[f"{name}_moved"] for r in sel) / len(sel), 4) if sel else None

    return {"turns": len(rows), "test_turns": sum(r["source"] == "test" for r in rows),
            "script_turns": sum(r["source"] == "scripts" for r in rows),
            "rates": {name: {"all": rate(name), "test": rate(name, "test"), "scripts": rate(name, "scripts")}
                      for name in ("talkplay", "bm25", "dense")},
            "rows": rows}


def markdown(result: dict) -> str:
    s = result["summary"]
    g = result["generation"]
    lines = [f"# Conversation checks — `{result['bundle']}`", "",
             f"{s['replies']} replies generated by the engine with the app's settings (reply temperature "
             f"{g['temperature']}, music temperature {g['music_temperature']}, top-p {g['top_p']}, cap "
             f"{g['max_reply_tokens']} tokens, seed {g['seed']}): test-split turns with their history, and the fit "
             "check's first requests. Reproduce: `python -m train.evaluation.conversation_checks`.", "",
             "| check | value |", "|---|---|",
             f"| replies stating a name, number or attribute the card contradicts or lacks | "
             f"**{s['faithfulness_violation_rate']:.1%}** |",
             f"| … another track's title/artist/album | {s['wrong_name_replies']} |",
             f"| … a tempo/key/year the card contradicts or lacks | {s['wrong_number_replies']} |",
             f"| … a style/mood/instrument absent from the tags and caption | {s['absent_attribute_replies']} |",
             f"| replies naming the played track | **{s['names_played_track_rate']:.1%}** |",
             f"| replies cut at the length cap | {s['over_length_replies']} |",
             f"| requests answered in words only (no track; left out of the rates above) | "
             f"{s.get('requests_answered_without_track', 0)} |",
             f"| talk without a track: music/words chosen right | {_dialogue_cell(result)} |",
             f"| refinements moving the asked way (TalkPlay · BM25 · dense) | {_refinement_cell(result)} |", "",
             "Most common violations: " + (", ".join(f"{w} ({c})" for w, c in result["most_common_violations"])
                                         or "none") + ".", "", "## Examples", ""]
    about = [r for r in result["rows"] if r["track_id"] is not None]
    for r in [r for r in about if r["violates"]][:10] + [r for r in about if not r["violates"]][:5]:
        bad = ", ".join(r["wrong_names"] + r["wrong_numbers"] + r["absent_attributes"]) or "—"
        lines.append(f"- *{r['request']}* → `{r['track_id']}`: “{r['reply']}” — violations: {bad}")
    ref = result.get("refinement")
    if ref:
        rates = ref["rates"]
        lines += ["", "## Refinements", "",
                  f"{ref['turns']} relative requests: {ref['test_turns']} test-split turns (synthetic; the direction read from "
                  f"their template) and {ref['script_turns']} turns of our own multi-turn scripts "
                  f"(`{REFINEMENT_SCRIPTS}` in the bundle). A turn counts when the played track moves every asked way "
                  "from the previous one by the rule the data is generated with (`talkplay.refine.moves`: e.g. ≥ 15 BPM "
                  "slower). BM25 and dense play their top-1 for the request's words (tracks heard excluded).", "",
                  "| | TalkPlay | BM25 | dense |", "|---|---|---|---|"]
        for part in ("all", "test", "scripts"):
            lines.append(f"| {part} | " + " | ".join(_pct(rates[n][part]) for n in ("talkplay", "bm25", "dense")) + " |")
        lines += ["", "Our scripts' turns:", ""]
        for r in [r for r in ref["rows"] if r["source"] == "scripts"]:
            lines.append(f"- *{r['request']}* ({', '.join(r['directions'])}) after `{r['previous']}` → `{r['talkplay']}`: "
                         + ("moved" if r["talkplay_moved"] else "did not move"))
    from train.evaluation.dialogue_acts import markdown_section

    lines += markdown_section(result)
    return "\n".join(lines) + "\n"


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _dialogue_cell(result: dict) -> str:
    d = result.get("dialogue")
    if not d:
        return "not run"
    return (f"**{_pct(d['accuracy'])}** of {d['messages']} (non-requests {_pct(d['accuracy_non_requests'])}, requests "
            f"{_pct(d['accuracy_requests'])}); track questions answered from the card {_pct(d['answered_from_card_rate'])}")


def _refinement_cell(result: dict) -> str:
    ref = result.get("refinement")
    if not ref:
        return "not run"
    r = ref["rates"]
    return f"**{_pct(r['talkplay']['all'])}** · {_pct(r['bm25']['all'])} · {_pct(r['dense']['all'])} ({ref['turns']} turns)"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.conversation_checks", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--catalog", type=Path, default=Path("catalog/demo"), help="bundle directory (with model/)")
    p.add_argument("--test-turns", type=int, default=150, help="test-split turns to answer (in file order)")
    p.add_argument("--no-fit-requests", action="store_true", help="leave out the fit check's first requests")
    p.add_argument("--refinement-turns", type=int, default=80, help="test-split relative requests to play (0: none)")
    p.add_argument("--no-faithfulness", action="store_true", help="only the refinement check (the report keeps "
                   "the previous faithfulness numbers)")
    p.add_argument("--no-dialogue", action="store_true", help="leave out the music/words check (eval/dialogue_acts.jsonl)")
    p.add_argument("--dialogue-only", action="store_true", help="only the music/words check (the report keeps the "
                   "previous faithfulness and refinement numbers)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--precision", default="bf16", help="model precision on CPU")
    p.add_argument("--out", type=Path, default=Path("reports"), help="where conversation_checks.{json,md} go")
    args = p.parse_args(list(argv) if argv is not None else None)
    from talkplay.recommender import load_recommender
    from train.evaluation.dialogue_acts import ACTS_FILE, dialogue_check, read_acts
    from train.evaluation.fit_check import REQUESTS_FILE, read_requests

    rec = load_recommender(args.catalog, "cpu", args.precision)
    fit = [] if args.no_fit_requests else [r.text for r in read_requests(args.catalog / REQUESTS_FILE)]
    path = args.out / "conversation_checks.json"
    if args.no_faithfulness or args.dialogue_only:
        result = json.loads(path.read_text(encoding="utf-8"))
    else:
        result = run_checks(args.catalog, rec, args.test_turns, fit, args.seed)
    scripts_file = args.catalog / REFINEMENT_SCRIPTS
    scripts = read_scripts(scripts_file) if scripts_file.exists() else []
    if not args.dialogue_only:
        result["refinement"] = refinement_check(args.catalog, rec, args.refinement_turns, scripts, args.seed)
        result["summary"]["refinement_rate"] = result["refinement"]["rates"]["talkplay"]["all"]
        result["summary"]["refinement_rate_bm25"] = result["refinement"]["rates"]["bm25"]["all"]
        result["summary"]["refinement_rate_dense"] = result["refinement"]["rates"]["dense"]["all"]
    acts_file = args.catalog / ACTS_FILE
    if not args.no_dialogue and acts_file.exists():
        vocab = Vocabulary.of(rec.catalog)
        result["dialogue"] = dialogue_check(rec, read_acts(acts_file),
                                            lambda reply, track, n, cap: check_reply(reply, track, vocab, n, cap),
                                            args.seed)
        result["summary"]["music_decision_accuracy"] = result["dialogue"]["accuracy"]
        result["summary"]["music_decision_accuracy_non_requests"] = result["dialogue"]["accuracy_non_requests"]
        result["summary"]["music_decision_accuracy_requests"] = result["dialogue"]["accuracy_requests"]
        result["summary"]["track_questions_answered_from_card"] = result["dialogue"]["answered_from_card_rate"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "conversation_checks.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    (args.out / "conversation_checks.md").write_text(markdown(result))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

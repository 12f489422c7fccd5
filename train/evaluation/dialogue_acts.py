"""Talk without a track: does the engine choose music or words the right way, and answer questions from the card?

Part of ``python -m train.evaluation.conversation_checks`` (its report holds the numbers); see that module's
docstring for what is counted. The messages come from ``eval/dialogue_acts.jsonl`` in the bundle, one JSON object
per line::

    {"text": "wat bpm is this", "music": false, "kind": "track_question", "asks": "tempo"}
    {"text": "nah, too dark", "music": true, "kind": "follow_up"}

The threshold is chosen on the validation split when the decision head is trained (``train.training.decision``),
never on this file.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.evaluation.dialogue_acts is a module of the train package: use "
                     "python -m train.evaluation.conversation_checks")

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ACTS_FILE = Path("eval/dialogue_acts.jsonl")  # in the bundle
KINDS = {False: ("greeting", "thanks", "goodbye", "app_question", "track_question"),
         True: ("first_request", "follow_up")}
ASKS = ("key", "tempo", "artist", "album", "year", "title", "instruments", "genre", "license", "duration")
AFTER_A_TRACK = ("thanks", "goodbye", "track_question", "follow_up")  # sent after one played request
OPENERS = ("calm piano music", "something epic and orchestral", "fast electronic music with drums",
           "medieval folk with a flute", "heavy metal")  # the played request before such a message (cycled)


@dataclass(frozen=True)
class Act:
    text: str
    music: bool
    kind: str
    asks: str | None = None


def read_acts(path: Path) -> list[Act]:
    """The messages of ``path``; a bad line raises ValueError naming the file, line and field."""
    acts = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            text, music, kind = row["text"], row["music"], row["kind"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {n}: not a message record ({err})") from err
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}, line {n}, field 'text': empty")
        if not isinstance(music, bool):
            raise ValueError(f"{path}, line {n}, field 'music': expected true or false")
        if kind not in KINDS[music]:
            raise ValueError(f"{path}, line {n}, field 'kind': {kind!r} is not one of {KINDS[music]}")
        asks = row.get("asks")
        if kind == "track_question" and asks not in ASKS:
            raise ValueError(f"{path}, line {n}, field 'asks': {asks!r} is not one of {ASKS}")
        acts.append(Act(text, music, kind, asks))
    return acts


def answered_from_card(answer: str, track, asks: str | None) -> bool:
    """The answer states the asked fact as ``track``'s card gives it (or, when the card lacks it, says so or
    points to the card/player)."""
    from talkplay.answers import GENRE_TAGS, INSTRUMENT_TAGS, card_bpm, card_key

    low = answer.lower()
    pointer = any(w in low for w in ("card", "player", "doesn't give", "does not give", "no artist", "no album",
                                     "no year", "lists no"))
    if asks == "key":
        key = card_key(track)
        return key.lower().replace("♯", "#") in low.replace("♯", "#") if key else pointer
    if asks == "tempo":
        bpm = card_bpm(track)
        paces = [t for t in ("slow", "mid-tempo", "fast") if t in track.tags]
        if bpm is None and not paces:
            return pointer
        return (bpm is not None and re.search(rf"\b{bpm}\b", answer) is not None) or any(t in low for t in paces)
    if asks in ("artist", "title"):
        name = track.artist if asks == "artist" else track.title
        return bool(name) and name.lower() in low or (not name and pointer)
    if asks == "album":
        return bool(track.album) and track.album.lower() in low or (not track.album and pointer)
    if asks == "year":
        return bool(track.year) and str(int(track.year)) in answer or (not track.year and pointer)
    if asks in ("instruments", "genre"):
        wanted = INSTRUMENT_TAGS if asks == "instruments" else GENRE_TAGS
        found = [t for t in track.tags if t in wanted]
        return any(t in low for t in found) if found else pointer
    if asks == "license":  # the card shows the license and the credit: the answer must point there
        return "licen" in low and ("card" in low or (track.license or "").lower() in low)
    return ("length" in low or "long" in low) and pointer  # duration: the player shows it (not in the card span)


def _normal(text: str) -> str:
    """A message as compared with the training phrasings: lower case, letters, digits and single spaces."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def dialogue_check(rec, acts: Sequence[Act], check_reply, seed: int = 0, log=print) -> dict:
    """Send each message as the app would (after one played request where the message needs one); returns the
    rows and the accuracy of the music/words choice, with the answers to questions about the playing track.

    ``check_reply(reply, track, reply_tokens, cap)`` → a ``conversation_checks.ReplyCheck`` for an answer."""
    from transformers import DynamicCache

    from talkplay.conversation import ConversationState, Done, TrackChosen
    from talkplay.recommender import MUSIC_THRESHOLD, GenerationConfig

    config = GenerationConfig(seed=seed)
    if not rec.may_talk(config):  # a checkpoint never taught words-only turns plays a track for every message
        return {"messages": len(acts), "talk_enabled": False, "accuracy": None, "accuracy_non_requests": None,
                "accuracy_requests": None, "answered_from_card_rate": None, "rows": []}
    opener = GenerationConfig(seed=seed, talk=False)  # the context request always plays
    from train.data.talk_turns import USER

    trained = {_normal(t) for texts in USER.values() for t in texts}  # phrasings the training turns use
    rows = []
    for i, act in enumerate(acts):
        state = ConversationState()
        playing = None
        if act.kind in AFTER_A_TRACK:
            playing = rec.catalog[rec.chat(state, OPENERS[i % len(OPENERS)], generation=opener).track_id]
        header, _ = rec._header(rec._prompt(state, act.text), DynamicCache())
        p_music = rec._p_music(header)
        p_lm = math.exp(float(header[0][rec.ids.start_id]))  # the LM's own P(<start_of_music>), for comparison
        events = list(rec.respond(state, act.text, generation=config))
        chosen = next((e for e in events if isinstance(e, TrackChosen)), None)
        done = next(e for e in events if isinstance(e, Done))
        row = {"text": act.text, "kind": act.kind, "asks": act.asks, "wanted_music": act.music,
               "music": chosen is not None, "p_music": round(p_music, 4), "p_lm": round(p_lm, 4),
               "reply": done.turn.reply,
               "playing": playing.track_id if playing is not None else None}
        row["right"] = row["music"] == act.music
        row["seen_in_training"] = _normal(act.text) in trained
        if act.kind == "track_question" and chosen is None and playing is not None:
            check = check_reply(done.turn.reply, playing, done.reply_tokens, config.max_reply_tokens)
            row["answered_from_card"] = answered_from_card(done.turn.reply, playing, act.asks)
            row["violations"] = check.wrong_names + check.wrong_numbers + check.absent_attributes
        rows.append(row)
        if (i + 1) % 20 == 0:
            log(f"[{i + 1}/{len(acts)}] music/words right so far {sum(r['right'] for r in rows) / len(rows):.3f}")

    def share(sel: list[dict], key: str) -> float | None:
        return round(sum(bool(r[key]) for r in sel) / len(sel), 4) if sel else None

    unseen = [r for r in rows if not r["seen_in_training"]]
    talk = [r for r in rows if not r["wanted_music"]]
    music = [r for r in rows if r["wanted_music"]]
    answered = [r for r in rows if "answered_from_card" in r]
    return {"messages": len(rows), "non_requests": len(talk), "requests": len(music),
            "accuracy": share(rows, "right"), "accuracy_non_requests": share(talk, "right"),
            "accuracy_requests": share(music, "right"), "talk_enabled": True,
            "accuracy_lm_alone": round(sum((r["p_lm"] >= MUSIC_THRESHOLD) == r["wanted_music"] for r in rows)
                                       / max(1, len(rows)), 4),
            "unseen_messages": len(unseen), "accuracy_unseen": share(unseen, "right"),
            "accuracy_unseen_non_requests": share([r for r in unseen if not r["wanted_music"]], "right"),
            "by_kind": {k: share([r for r in rows if r["kind"] == k], "right")
                        for k in sorted({r["kind"] for r in rows})},
            "track_questions_answered": len(answered),
            "answered_from_card_rate": share(answered, "answered_from_card"),
            "answers_with_violations": sum(bool(r["violations"]) for r in answered),
            "threshold": round(rec.threshold(config), 4),
            "decided_by": "decision head" if rec.decision is not None else "P(<start_of_music>)", "rows": rows}


def markdown_section(result: dict) -> list[str]:
    """The report's "Talk without a track" section."""
    d = result.get("dialogue")
    if not d:
        return []
    if not d.get("talk_enabled", True):
        return ["", "## Talk without a track", "", "Not measured: this checkpoint was not trained with turns answered "
                "in words only, so the engine plays a track for every message."]
    pct = lambda x: "—" if x is None else f"{x:.0%}"  # noqa: E731
    lines = ["", "## Talk without a track", "",
             f"{d['messages']} messages of `{ACTS_FILE}` ({d['non_requests']} greetings, thanks, goodbyes and "
             f"questions about the app or the playing track; {d['requests']} requests), written by a separate session "
             "that saw neither the training phrasings nor any answer; common short messages (\"what can you do?\", "
             "\"thx!\") also occur among the training phrasings, so the accuracy on the rest is shown apart. Thanks, goodbyes, follow-ups and questions about the track are sent after one "
             f"played request. The engine answers in words when P(music) ({d.get('decided_by', 'P(<start_of_music>)')} "
             f"on the model's state after the assistant header) is below {d['threshold']}.", "",
             "| | right |", "|---|---|",
             f"| all messages | **{pct(d['accuracy'])}** |",
             f"| non-requests (words only wanted) | {pct(d['accuracy_non_requests'])} |",
             f"| requests (a track wanted) | {pct(d['accuracy_requests'])} |",
             f"| the {d['unseen_messages']} messages that are not also a training phrasing | {pct(d['accuracy_unseen'])} "
             f"(non-requests {pct(d['accuracy_unseen_non_requests'])}) |",
             f"| for comparison: the LM's own P(<start_of_music>) ≥ 0.5 | {pct(d.get('accuracy_lm_alone'))} |"]
    for kind, value in d["by_kind"].items():
        lines.append(f"| … {kind} | {pct(value)} |")
    lines += ["", f"Questions about the playing track answered in words: {d['track_questions_answered']}; answered "
                  f"from the card: **{pct(d['answered_from_card_rate'])}**; answers stating something the card "
                  f"contradicts or lacks: {d['answers_with_violations']}.", "", "Examples:", ""]
    rows = d["rows"]
    shown = [r for r in rows if not r["right"]][:8] + [r for r in rows if r["right"] and not r["music"]][:8]
    for r in shown:
        what = "a track" if r["music"] else "words"
        lines.append(f"- *{r['text']}* ({r['kind']}, P(music) {r['p_music']:.2f}) → {what}"
                     + ("" if r["music"] else f": “{r['reply']}”") + ("" if r["right"] else " — **wrong**"))
    return lines

"""What the chat page does, without Gradio: sessions, streamed turns, skips and feedback.

``app.py`` only lays out widgets and binds them to :class:`ChatController` methods, each of which takes
and returns plain values (chat messages as role/content dicts, Markdown, a file path, the per-browser
:class:`ChatSession`). Everything shown is escaped here (user text, replies and catalog fields are all
untrusted), and errors become one short line in the chat — never a stack trace.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from talkplay.browse import CatalogBrowser, escape
from talkplay.trie import NoAllowedTrack
from talkplay.conversation import ConversationState, Done, Talk, TextDelta, TrackChosen
from talkplay.feedback import FeedbackRecord, FeedbackStore
from talkplay.settings import ServeSettings
from talkplay.limits import RateLimiter, clean_text

log = logging.getLogger(__name__)

# Limits (turns per conversation, message length, rates) are talkplay.settings.ServeSettings fields.
STREAM_INTERVAL_S = 0.2  # reply text reaches the page at most this often (each update re-sends the chat)
TURN_WAIT_S = 300.0  # a send or skip waits this long for the same conversation's streaming turn to end
TEMPERATURE_RANGE = (0.0, 1.5)  # what the page's sliders offer; the API accepts the same
TOP_P_RANGE = (0.05, 1.0)
MODES = ("constrained", "paper")
FEEDBACK_WAIT_S = 5.0  # a click waits this long for its row to be committed before "saved" is said
SKIP_REQUEST = "Skip — another one, please."

class _Keep:
    """The card/audio value of an update that leaves the widget as it is (``app.py`` sends ``gr.skip()``): a
    message answered in words only, or an error line, must not stop or rewind the track that is playing."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()
EXAMPLES = ("something epic and orchestral for a boss fight", "upbeat chiptune for a road trip",
            "I want something calm and ambient to study to", "dark electronic music for a night drive")


class LazyRecommender:
    """Loads the recommender once, on first use or in a background thread started early."""

    def __init__(self, loader: Callable[[], Any]):
        self._loader, self._value, self._error = loader, None, None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._value is None:
                self._value = self._loader()
            return self._value

    def start_background(self) -> None:
        def work():
            try:
                rec = self.get()
                if hasattr(rec, "prior"):  # the prior correction's one ranking pass, before the first listener
                    rec.prior()
                if hasattr(rec, "text_match"):  # the cards' text index (and the sentence embedder, if any)
                    rec.text_match()
            except Exception:  # reported again (briefly) on the first request
                log.exception("loading the recommender failed")

        threading.Thread(target=work, name="load-recommender", daemon=True).start()


@dataclass
class ChatSession:
    """One browser's conversation (kept in a ``gr.State``).

    ``visitor`` keys the rate limits: the client address and the browser's Gradio session (``app.py``), kept by
    *New conversation*, so starting over does not reset them. ``on_screen`` is the track whose card is shown
    (set as soon as a turn's track is chosen): what a skip skips."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    conversation: ConversationState = field(default_factory=ConversationState)
    messages: list[dict] = field(default_factory=list)  # chat messages shown (role, content)
    turn_of_message: dict[int, int] = field(default_factory=dict)  # assistant message index → turn index (1-based)
    visitor: str = ""
    on_screen: str | None = None


def version_of(path: Path) -> str:
    """Short content hash of a file (model/catalog versions in feedback rows); 'unknown' if unreadable."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        return "unknown"


class ChatController:
    """Chat logic bound to one recommender (possibly lazy), one catalog browser and a feedback store."""

    def __init__(self, recommender: Any, browser: CatalogBrowser, feedback: FeedbackStore | None,
                 model_version: str = "unknown", catalog_version: str = "unknown",
                 turn_limit: RateLimiter | None = None, feedback_limit: RateLimiter | None = None,
                 settings: ServeSettings | None = None):
        self._rec = recommender
        self.browser, self.feedback = browser, feedback
        self.model_version, self.catalog_version = model_version, catalog_version
        self.settings = s = settings or ServeSettings.from_env()
        self.turn_limit = turn_limit or RateLimiter(s.turns_per_minute, 60.0)
        self.total_turn_limit = RateLimiter(s.turns_per_minute_total, 60.0)
        self.feedback_limit = feedback_limit or RateLimiter(s.feedback_per_minute, 60.0)
        self._turn_locks: dict[str, threading.Lock] = {}  # per conversation: its events run one at a time
        self._locks_guard = threading.Lock()

    def _turn_lock(self, session: ChatSession) -> threading.Lock:
        with self._locks_guard:
            if len(self._turn_locks) > 10_000:  # forget idle conversations rather than grow without bound
                self._turn_locks = {k: v for k, v in self._turn_locks.items() if v.locked()}
            return self._turn_locks.setdefault(session.session_id, threading.Lock())

    @staticmethod
    def _visitor(session: ChatSession) -> str:
        return session.visitor or session.session_id

    def feedback_warning(self) -> str:
        """A line for the page when the feedback database is not writable, or when (on a Space) ratings would
        be lost at the next restart; empty when all is well."""
        from talkplay.feedback import storage_note

        if self.feedback is None:
            return ""
        if self.feedback.error:
            return ("⚠️ The feedback database is not writable right now; ratings are kept in memory and saved as "
                    "soon as it is.")
        return storage_note(self.feedback.path)

    def recommender(self):
        return self._rec.get() if isinstance(self._rec, LazyRecommender) else self._rec

    # ------------------------------------------------------------------ views

    def card(self, event: TrackChosen | None) -> tuple[str, str | None]:
        """Track card Markdown (with "why this track") and the preview path (None: unavailable)."""
        if event is None:
            return "*Ask for something — the track and its card appear here.*", None
        c = self.browser.card(event.track.track_id)
        why = ", ".join(event.matched_modalities) or "—"
        how = {"constrained": "its music tokens, decoded against the catalog",
               "exact": "an exact match of freely generated tokens",
               "partial": "a partial match of freely generated tokens",
               "fallback": "constrained decoding after free generation matched nothing"}[event.match]
        return c.markdown + f"\n\n**Why this track:** chosen by {how}; shares the {escape(why)} tokens.", c.audio

    def _card_of(self, track_id: str) -> tuple[str, str | None]:
        """The card of a track already played (after a failed turn, the page goes back to it)."""
        c = self.browser.card(track_id)
        return c.markdown, c.audio

    def played_markdown(self, session: ChatSession) -> str:
        played = session.conversation.played
        if not played:
            return "*Nothing played yet.*"
        lines = []
        for i, track_id in enumerate(played, 1):
            track = self.browser.catalog[track_id]
            mark = " — *skipped*" if track_id in session.conversation.rejected else ""
            lines.append(f"{i}. {escape(track.title)} — {escape(track.artist)}{mark}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ turns

    def send(self, text: str, session: ChatSession | None, temperature: float = 1.0, top_p: float = 0.9,
             mode: str = "constrained", visitor: str | None = None
             ) -> Iterator[tuple[list[dict], str, str | None, str, ChatSession]]:
        """Stream one turn: yields (messages, card, audio path, played list, session) as it progresses.

        Turns of one conversation run one at a time: a send arriving while a reply streams waits for it (the
        page disables its buttons meanwhile; an API client may not)."""
        session = session or ChatSession()
        if visitor:
            session.visitor = visitor
        lock = self._turn_lock(session)
        if not lock.acquire(timeout=TURN_WAIT_S):
            yield self._say(session, "The previous reply is still being written — please try again in a moment.")
            return
        try:
            yield from self._send(text, session, temperature, top_p, mode)
        finally:
            lock.release()

    def _say(self, session: ChatSession, text: str, card: tuple[str, str | None] | None = None):
        """Append an assistant line; the update tuple to yield (the card and player stay as they are unless
        ``card`` is given)."""
        card, audio = card or (KEEP, KEEP)
        session.messages.append({"role": "assistant", "content": text})
        return session.messages, card, audio, self.played_markdown(session), session

    def _settings(self, temperature, top_p, mode) -> tuple[float, float, str] | None:
        """The sampling settings as numbers in the page's ranges; None (one log line) when any is not."""
        try:
            t, p = float(temperature), float(top_p)
        except (TypeError, ValueError):
            t = p = math.nan
        if math.isfinite(t) and TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1] and math.isfinite(p) and \
                TOP_P_RANGE[0] <= p <= TOP_P_RANGE[1] and mode in MODES:
            return t, p, mode
        log.warning("rejected settings: temperature=%.40r top_p=%.40r mode=%.40r", temperature, top_p, mode)
        return None

    def _send(self, text, session, temperature, top_p, mode, music_only: bool = False):
        from talkplay.recommender import GenerationConfig

        text = clean_text(text).strip()
        card, audio = KEEP, KEEP  # the track playing keeps playing until a new one is chosen
        if not text:  # empty, whitespace or control characters only: nothing to answer, nothing changes
            yield session.messages, card, audio, self.played_markdown(session), session
            return
        notice = ""
        cap = self.settings.max_message_chars
        if len(text) > cap:
            text, notice = text[:cap], f" *(cut to {cap} characters)*"
        session.messages.append({"role": "user", "content": escape(text) + notice})
        yield session.messages, card, audio, self.played_markdown(session), session
        settings = self._settings(temperature, top_p, mode)
        if settings is None:
            yield self._say(session, f"Those settings are out of range: temperature {TEMPERATURE_RANGE[0]:g}–"
                                     f"{TEMPERATURE_RANGE[1]:g}, top-p {TOP_P_RANGE[0]:g}–{TOP_P_RANGE[1]:g}, "
                                     f"decoding {' or '.join(MODES)}.")
            return
        temperature, top_p, mode = settings
        wait = self.turn_limit.allow(self._visitor(session))
        if wait:
            yield self._say(session, "You're sending requests faster than this demo can answer — please wait "
                                     f"{math.ceil(wait)} s and try again.")
            return
        wait = self.total_turn_limit.allow("all")
        if wait:
            yield self._say(session, f"This demo is busy right now — please try again in {math.ceil(wait)} s.")
            return
        if len(session.conversation.played) >= self.settings.max_turns:
            yield self._say(session, f"This conversation has reached {self.settings.max_turns} tracks — press *New conversation* "
                                     "to keep listening.")
            return
        try:
            rec = self.recommender()
        except (OSError, ValueError) as err:  # e.g. CheckpointError naming a missing/damaged file
            error_id = uuid.uuid4().hex[:8]
            log.error("recommender unavailable (error %s): %s", error_id, str(err).splitlines()[0] if str(err) else err)
            yield self._say(session, "The recommender is not available on this server right now "
                                     f"(error {error_id}; the server log says why).")
            return
        opened, turns_before = None, len(session.conversation.turns)
        try:
            config = GenerationConfig(mode=mode, temperature=temperature, top_p=top_p,
                                      max_reply_tokens=rec.generation.max_reply_tokens,
                                      talk=False if music_only else rec.generation.talk,
                                      music_threshold=rec.generation.music_threshold)
            header, raw, shown_at = "", "", 0.0
            for event in rec.respond(session.conversation, text, generation=config):
                if isinstance(event, (TrackChosen, Talk)):
                    opened = len(session.messages)  # this turn's assistant message, appended just below
                if isinstance(event, TrackChosen):
                    card, audio = self.card(event)
                    session.on_screen = event.track.track_id
                    header = f"**♪ {escape(event.track.title)}** — {escape(event.track.artist)}\n\n"
                    session.messages.append({"role": "assistant", "content": header})
                    session.turn_of_message[len(session.messages) - 1] = len(session.conversation.turns) + 1
                elif isinstance(event, Talk):  # answered in words only: no new track, the card stays
                    header = ""
                    session.messages.append({"role": "assistant", "content": ""})
                elif isinstance(event, TextDelta):
                    raw += event.text  # escaped as a whole: escaping pieces would lose their spaces
                    session.messages[-1]["content"] = header + escape(raw)
                    if time.monotonic() - shown_at < STREAM_INTERVAL_S:
                        continue  # every update re-sends the whole chat: with many listeners, a few per second is enough
                    shown_at = time.monotonic()
                elif isinstance(event, Done):
                    session.messages[-1]["content"] = header + escape(event.turn.reply)
                yield session.messages, card, audio, self.played_markdown(session), session
        except NoAllowedTrack:
            yield self._say(session, "You have heard every track of this catalog in this conversation — press "
                                     "*New conversation* to start over.", (card, audio))
        except Exception:
            error_id = uuid.uuid4().hex[:8]
            log.exception("turn failed (error %s)", error_id)
            if opened is not None and opened == len(session.messages) - 1 and \
                    len(session.conversation.turns) == turns_before:
                session.turn_of_message.pop(opened, None)
                session.messages.pop()  # a half-streamed reply of a failed turn
            if session.on_screen != session.conversation.last_track:  # its track was never recorded: show the last
                session.on_screen = session.conversation.last_track  # one that was (ratings and skips go to it)
                last = session.conversation.last_track
                card, audio = self.card(None) if last is None else self._card_of(last)
            yield self._say(session, f"Sorry — something went wrong with this request (error {error_id}). "
                                     "Please try again.", (card, audio))

    def skip(self, session: ChatSession | None, temperature: float = 1.0, top_p: float = 0.9,
             mode: str = "constrained", visitor: str | None = None
             ) -> Iterator[tuple[list[dict], str, str | None, str, ChatSession]]:
        """"Skip — another one": the track on screen when the button was pressed counts as rejected (never again
        in this conversation), then a new turn. Pressed while that track's reply still streams, the skip waits
        for the turn to end and then takes effect on that track — never on an earlier one."""
        session = session or ChatSession()
        if visitor:
            session.visitor = visitor
        target = session.on_screen  # read now: the skip is about what the listener sees at the click
        lock = self._turn_lock(session)
        if not lock.acquire(timeout=TURN_WAIT_S):
            yield self._say(session, "The previous reply is still being written — please try again in a moment.")
            return
        try:
            conversation = session.conversation
            if target is not None and target not in conversation.rejected:
                conversation.reject(target)
                turn_index = next((i for i, t in enumerate(conversation.turns, 1) if t.track_id == target), None)
                if turn_index is not None:
                    self._record(session, "skip", "", turn_index)
                log.info("session %s skipped %s", session.session_id, target)
            yield from self._send(SKIP_REQUEST, session, temperature, top_p, mode, music_only=True)  # a skip plays one
        finally:
            lock.release()

    def new_session(self, visitor: str | None = None) -> tuple[list[dict], str, str | None, str, ChatSession]:
        session = ChatSession(visitor=visitor or "")
        card, audio = self.card(None)
        return session.messages, card, audio, self.played_markdown(session), session

    # ------------------------------------------------------------------ feedback

    def _record(self, session: ChatSession | None, kind: str, value: str, turn_index: int | None = None) -> str:
        turns = session.conversation.turns if session else []
        with_track = [i for i, t in enumerate(turns, 1) if t.track_id is not None]
        if not with_track:
            return "Nothing to rate yet."
        turn_index = turn_index or with_track[-1]  # the track playing: the last one chosen
        if not 1 <= turn_index <= len(turns) or turns[turn_index - 1].track_id is None:
            return "That message has no recommendation to rate."
        turn = turns[turn_index - 1]
        if self.feedback is None:
            return "Feedback is not being stored on this server."
        wait = self.feedback_limit.allow(self._visitor(session))
        if wait:
            return f"Too many ratings at once — please wait {math.ceil(wait)} s."
        try:
            saved = self.feedback.record(FeedbackRecord(
                session_id=session.session_id, turn_index=turn_index, user_message=turn.user, track_id=turn.track_id,
                track_tokens=" ".join(turn.tokens), reply=turn.reply, kind=kind, value=clean_text(value),
                model_version=self.model_version, catalog_version=self.catalog_version), wait=FEEDBACK_WAIT_S)
        except (ValueError, RuntimeError) as err:
            return f"Feedback not saved: {escape(err)}"
        what = {"like_track": "your like of this track", "dislike_track": "your dislike of this track",
                "like_reply": f"your like of reply {turn_index}", "dislike_reply": f"your dislike of reply {turn_index}",
                "rating": f"your rating {value}/5", "comment": "your comment", "skip": "the skip"}[kind]
        if not saved:  # held in memory (database unwritable) or still queued: kept, written later
            return f"Thanks — {what} is kept. " + (self.feedback_warning() or "It will be saved in a moment.")
        return f"Thanks — {what} is saved (feedback saved)."

    def like_track(self, session: ChatSession, liked: bool) -> str:
        return self._record(session, "like_track" if liked else "dislike_track", "1" if liked else "0")

    def like_reply(self, session: ChatSession, message_index: int | None, liked: bool) -> str:
        """Like/dislike of a reply in the chat (``message_index`` as Gradio's LikeData.index)."""
        if isinstance(message_index, (list, tuple)):  # some Gradio versions give (message, part)
            message_index = message_index[0] if message_index else None
        try:
            turn = session.turn_of_message.get(int(message_index)) if session and message_index is not None else None
        except (TypeError, ValueError):
            turn = None
        if turn is None:
            return "Only the assistant's replies about a track can be rated."
        return self._record(session, "like_reply" if liked else "dislike_reply", "1" if liked else "0", turn)

    def rate(self, session: ChatSession, stars: int | str | None) -> str:
        try:
            value = int(str(stars).strip())
        except ValueError:
            value = 0
        if not 1 <= value <= 5:
            return "Pick 1–5 stars first."
        return self._record(session, "rating", str(value))

    def comment(self, session: ChatSession, text: str) -> str:
        text = clean_text(text).strip()
        if not text:
            return "Write a comment first."
        return self._record(session, "comment", text)


def feedback_store_from_env(settings: ServeSettings | None = None) -> FeedbackStore | None:
    """The feedback store the settings configure (README: TALKPLAY_FEEDBACK*, HF_TOKEN); None when off."""
    from talkplay.feedback import default_db_path, start_hub_sync

    settings = settings or ServeSettings.from_env()
    if not settings.feedback:
        return None
    # never fails: an unwritable database holds records in memory
    store = FeedbackStore(settings.feedback_db or default_db_path())
    if settings.feedback_repo and os.environ.get("HF_TOKEN"):
        start_hub_sync(store, settings.feedback_repo, os.environ["HF_TOKEN"], settings.feedback_push_minutes)
    return store

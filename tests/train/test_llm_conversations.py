"""LLM conversation generator: repair of many hand-written raw completions, the prompt's contents, the
HTTP client against a local fake endpoint on 127.0.0.1 (auth, retries, JSON-mode fallback, timeouts),
the raw-response cache and the CLI. Hermetic: no live endpoint is ever contacted."""

import hashlib
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from talkplay.catalog import Catalog, Track, save_catalog
from train.data.conversation_schema import (
    ConversationError,
    read_conversations,
    validate_conversation,
)
from train.data.llm_conversations import (
    LLMConfig,
    LLMError,
    RepairError,
    build_prompt,
    call_chat,
    choose_negatives,
    generate_with_llm,
    is_rejection,
    main,
    parse_and_repair,
)
from talkplay.bundle import Playlist, write_playlists

KEY = "sk-test-sekrit-123"


def _track(tid, title, artist, album, year, tags, caption):
    return Track(track_id=tid, title=title, artist=artist, license="CC0-1.0", attribution=f"{title} by {artist}",
                 source=f"https://example.org/{tid}.ogg", album=album, year=year, tags=tuple(tags), caption=caption)


PLAYLIST_TRACKS = [
    _track("p1", "Neon Rain", "Kitty Volt", "City Lights", 2019, ["synthwave", "night"], "A moody synthwave track."),
    _track("p2", "Midnight Drive", "Kitty Volt", "City Lights", 2019, ["synthwave", "driving"], "A driving synth tune."),
    _track("p3", "Chrome Hearts", "Laser Owl", "Reflections", 2020, ["synthwave", "retro"], "Retro synths, mid-tempo."),
    _track("p4", "Afterglow", "Laser Owl", "Reflections", 2021, ["synthwave", "dreamy"], "A dreamy, slow synth piece."),
    _track("p5", "Velvet Static", "Nova Tide", "Signals", 2018, ["electronic", "ambient"], "Ambient electronic drift."),
    _track("p6", "Pulse Line", "Nova Tide", "Signals", 2018, ["electronic", "fast"], "A fast electronic pulse."),
    _track("p7", "Glass Avenue", "Mira Sol", "Boulevard", 2022, ["synthpop"], "Bright synthpop with vocals."),
    _track("p8", "Low Orbit", "Mira Sol", "Boulevard", 2022, ["synthpop", "chill"], "A chill synthpop song."),
    _track("p9", "Static Bloom", "Echo Fern", "Garden", 2017, ["electronic", "chill"], "Chill electronic textures."),
    _track("p10", "Night Market", "Echo Fern", "Garden", 2017, ["electronic", "night"], "Busy night-time beats."),
]
NEGATIVE_TRACKS = [
    _track("n1", "Harvest Reel", "The Fiddlers", "Barn Dance", 1998, ["folk", "fiddle"], "A fast folk reel on fiddle."),
    _track("n2", "Stone Hymn", "Choir of Ash", "Psalms", 2001, ["choral", "sacred"], "A slow sacred choral piece."),
    _track("n3", "Banjo Sunrise", "The Fiddlers", "Barn Dance", 1998, ["folk", "banjo"], "Bright banjo picking."),
]
OUTSIDE = _track("x1", "Lonely Tuba", "Brass Pit", "Oompah", 2000, ["brass"], "A tuba solo.")
CATALOG = Catalog(root=Path("in-memory"), tracks=[*PLAYLIST_TRACKS, *NEGATIVE_TRACKS, OUTSIDE])
PLAYLIST = Playlist("pl-1", "Night drive", tuple(t.track_id for t in PLAYLIST_TRACKS), True, "synthetic:test", "train")
NEGATIVES = ["n1", "n2", "n3"]


def repair(raw, notes=None):
    text = raw if isinstance(raw, str) else json.dumps(raw)
    return parse_and_repair(text, CATALOG, PLAYLIST, NEGATIVES, "c1", "train", "test-model", notes)


def msgs(*triples):
    """[(user, track, reply[, rejected]) …] → a flat list of role/content dicts."""
    out = []
    for t in triples:
        music = {"role": "music", "content": t[1]}
        if len(t) > 3:
            music["rejected"] = t[3]
        out += [{"role": "user", "content": t[0]}, music, {"role": "assistant", "content": t[2]}]
    return out


CLEAN = {"messages": msgs(
    ("Something moody for a late drive?", "p1", "Try “Neon Rain” by Kitty Volt — moody synthwave."),
    ("More like that, maybe older?", "n1", "How about “Harvest Reel” by The Fiddlers, a 1998 folk reel?", True),
    ("Nah, fiddles are not my thing. Back to synths please.", "p3", "Here is “Chrome Hearts” by Laser Owl, retro synths."),
    ("Love it. Something dreamier?", "p4", "“Afterglow” by Laser Owl is a dreamy, slow synth piece."),
    ("Perfect, one more with a faster pulse.", "p6", "“Pulse Line” by Nova Tide is a fast electronic pulse."),
)}


# ---------------------------------------------------------------- parse_and_repair


def test_clean_json_needs_no_repair():
    notes = []
    conv = repair(CLEAN, notes)
    assert notes == []
    assert conv.tracks == ["p1", "n1", "p3", "p4", "p6"]
    assert [m.role for m in conv.messages] == ["user", "music", "assistant"] * 5
    assert conv.messages[4].rejected and conv.messages[6].intent == "rejection"
    assert not any(m.rejected for i, m in enumerate(conv.messages) if i != 4)
    assert all(m.intent is None for i, m in enumerate(conv.messages) if i != 6)
    assert conv.generator == "llm:test-model" and conv.synthetic and conv.split == "train"
    assert conv.playlist_id == "pl-1" and conv.negatives == ("n1", "n2", "n3") and conv.conversation_id == "c1"
    validate_conversation(conv, CATALOG)


def test_fenced_json_with_prose():
    raw = "Sure! Here is the dialogue you asked for:\n```json\n" + json.dumps(CLEAN, indent=2) + "\n```\nEnjoy!"
    notes = []
    assert repair(raw, notes).tracks == ["p1", "n1", "p3", "p4", "p6"]
    assert "json extracted from surrounding text" in notes


def test_prose_without_fence_and_trailing_commas():
    body = json.dumps(CLEAN).replace('"}', '",}').replace("}]", "},]")
    notes = []
    assert repair("Here you go: " + body + " -- end", notes).tracks == ["p1", "n1", "p3", "p4", "p6"]
    assert "trailing commas removed" in notes


def test_list_shape_and_role_variants():
    items = CLEAN["messages"]
    renamed = {"user": "Human", "music": "track", "assistant": "bot"}
    raw = [{"role": renamed[m["role"]], **{k: v for k, v in m.items() if k != "role"}} for m in items]
    raw[4]["role"] = "song"
    raw[5]["role"] = "system"
    notes = []
    conv = repair(raw, notes)
    assert conv.tracks == ["p1", "n1", "p3", "p4", "p6"] and "role renamed" in notes
    assert repair({"dialogue": {"turns": items}}).tracks == conv.tracks


def test_turn_objects_and_other_keys():
    raw = {"conversation": [
        {"user": "Moody please", "track_id": "p1", "assistant": "“Neon Rain” by Kitty Volt."},
        {"user": "Another", "song": "p2", "bot": "“Midnight Drive” by Kitty Volt."},
        {"speaker": "listener", "text": "Go on"},
        {"speaker": "assistant", "text": "“Chrome Hearts” by Laser Owl.", "track_id": "p3"},
        {"speaker": "user", "text": "And one more"},
        {"role": "music", "id": "p4"},
        {"role": "assistant", "content": [{"type": "text", "text": "“Afterglow” by Laser Owl."}]},
    ]}
    assert repair(raw).tracks == ["p1", "p2", "p3", "p4"]


def test_title_instead_of_track_id():
    raw = msgs(
        ("Moody?", "Neon Rain", "Try this: Kitty Volt."),
        ("More?", "“midnight drive”", "Kitty Volt again."),
        ("Retro?", "Chrome Hearts by Laser Owl", "Laser Owl it is."),
        ("Dreamy?", "Laser Owl - AFTERGLOW", "Laser Owl once more."),
        ("Faster?", {"title": "Pulse Line", "artist": "Nova Tide"}, "Nova Tide."),
        ("Id with decoration", "P7 (Glass Avenue)", "Mira Sol."),
    )
    notes = []
    assert repair(raw, notes).tracks == ["p1", "p2", "p3", "p4", "p6", "p7"]
    assert "music given by title" in notes


def test_unknown_and_outside_tracks_are_dropped():
    raw = msgs(
        ("Moody?", "p1", "“Neon Rain” by Kitty Volt."),
        ("Something made up?", "does-not-exist", "“Ghost Song” by Nobody."),
        ("Another?", "p2", "“Midnight Drive” by Kitty Volt."),
        ("Brass?", "x1", "“Lonely Tuba” by Brass Pit."),  # in the catalog, but never shown in the prompt
        ("Retro?", "p3", "“Chrome Hearts” by Laser Owl."),
        ("Dreamy?", "p4", "“Afterglow” by Laser Owl."),
    )
    notes = []
    conv = repair(raw, notes)
    assert conv.tracks == ["p1", "p2", "p3", "p4"]
    assert "unknown track dropped" in notes and "track outside playlist+negatives dropped" in notes
    assert conv.messages[3].content.startswith("Something made up?")  # the orphaned request joins the next one
    wrong_id = msgs(("Moody?", "p1", "“Neon Rain” by Kitty Volt."),
                    ("Retro?", "chrome-hearts-v2", "Here is “Chrome Hearts” by Laser Owl."),
                    ("Dreamy?", "", "“Afterglow” by Laser Owl, slow and dreamy."),
                    ("Faster?", "p6", "“Pulse Line” by Nova Tide."))
    notes = []
    assert repair(wrong_id, notes).tracks == ["p1", "p3", "p4", "p6"]
    assert "track found in assistant text" in notes and "music given by title" in notes


def test_wrong_role_order_repaired():
    raw = [
        {"role": "assistant", "content": "Hello! I am your music assistant."},  # preamble before the listener
        {"role": "music", "content": "p9"},  # a track before any request
        {"role": "user", "content": "Hi."},
        {"role": "user", "content": "I need music for a night drive."},
        {"role": "assistant", "content": "Moody or upbeat?"},  # clarifying question, no track
        {"role": "user", "content": "Moody."},
        {"role": "assistant", "content": "Here is “Neon Rain” by Kitty Volt."},  # reply before its track
        {"role": "music", "content": "p1"},
        {"role": "user", "content": "Nice. More?"},
        {"role": "music", "content": "p2"},  # no reply at all
        {"role": "user", "content": "Retro?"},
        {"role": "music", "content": "p3"},
        {"role": "music", "content": "p5"},  # a second track in the same turn
        {"role": "assistant", "content": "“Chrome Hearts” by Laser Owl."},
        {"role": "music", "content": "p4"},  # a track after the reply with no request in between
        {"role": "assistant", "content": "And “Afterglow” by Laser Owl."},
        {"role": "user", "content": "Thanks, last one?"},
        {"role": "assistant", "content": "Sure, “Static Bloom” by Echo Fern is chill."},  # track only named in text
    ]
    notes = []
    conv = repair(raw, notes)
    assert [m.role for m in conv.messages] == ["user", "music", "assistant"] * 5
    assert conv.tracks == ["p1", "p2", "p3", "p4", "p9"]
    assert conv.messages[0].content == "Hi. I need music for a night drive. Moody."
    assert conv.messages[5].content == "Here's “Midnight Drive” by Kitty Volt, from City Lights (2019). A driving synth tune."
    assert conv.messages[9].content == "What's next?"
    for note in ("assistant message before any user message dropped", "track before any user message dropped",
                 "clarifying exchange merged", "missing reply inserted", "extra track in one turn dropped",
                 "bridging user message inserted", "track found in assistant text"):
        assert note in notes


def test_missing_grounding_is_prefixed():
    raw = json.loads(json.dumps(CLEAN))
    raw["messages"][2]["content"] = "Great choice, enjoy the ride!"
    notes = []
    conv = repair(raw, notes)
    assert conv.messages[2].content == "“Neon Rain” by Kitty Volt — Great choice, enjoy the ride!"
    assert "grounding mention added" in notes


def test_repeated_track_removed_and_cap_at_ten():
    triples = [(f"Request {i}", f"p{i}", f"“{t.title}” by {t.artist}.") for i, t in enumerate(PLAYLIST_TRACKS, 1)]
    raw = msgs(*triples[:3], ("Again the first?", "p1", "“Neon Rain” by Kitty Volt again."), *triples[3:5])
    notes = []
    assert repair(raw, notes).tracks == ["p1", "p2", "p3", "p4", "p5"] and "repeated track dropped" in notes
    long = msgs(*triples[:5], ("Folk?", "n1", "“Harvest Reel” by The Fiddlers."),
                ("No way, too folky.", "n2", "“Stone Hymn” by Choir of Ash."), *triples[5:])
    notes = []
    conv = repair(long, notes)
    assert len(conv.messages) == 30 and "capped at 10 turns" in notes
    assert conv.tracks == ["p1", "p2", "p3", "p4", "p5", "n1", "n2", "p6", "p7", "p8"]
    assert conv.messages[16].rejected and conv.messages[18].intent == "rejection"
    assert not conv.messages[19].rejected  # "Stone Hymn" was followed by "Request 6": no rejection cue


def test_negative_accepted_and_trailing_negative():
    raw = msgs(("Moody?", "p1", "“Neon Rain” by Kitty Volt."),
               ("Surprise me", "n3", "“Banjo Sunrise” by The Fiddlers.", True),
               ("Oh I love this!", "p2", "“Midnight Drive” by Kitty Volt."),
               ("Retro?", "p3", "“Chrome Hearts” by Laser Owl."),
               ("Dreamy?", "p4", "“Afterglow” by Laser Owl."),
               ("Anything?", "n2", "“Stone Hymn” by Choir of Ash."))
    notes = []
    conv = repair(raw, notes)
    assert conv.tracks == ["p1", "n3", "p2", "p3", "p4"] and not any(m.rejected for m in conv.messages)
    assert "trailing negative-set turn dropped" in notes
    assert any(n.startswith("rejected flag ignored") for n in notes)


def test_truncated_output_is_salvaged():
    text = json.dumps(CLEAN)
    cut = text[: text.index("Perfect, one more")]
    notes = []
    assert repair(cut, notes).tracks == ["p1", "n1", "p3", "p4"] and "truncated output salvaged" in notes


@pytest.mark.parametrize("raw, reason", [
    (msgs(("Moody?", "p1", "“Neon Rain” by Kitty Volt."), ("More?", "p2", "“Midnight Drive” by Kitty Volt."),
          ("Retro?", "p3", "“Chrome Hearts” by Laser Owl.")), "too few turns"),
    (msgs(*[(f"q{i}", f"zz{i}", "reply") for i in range(6)]), "too few turns"),
    ("I'm sorry, I can't help with that request.", "no JSON"),
    ("{'messages': [oops", "no JSON"),
    ('{"error": "model overloaded"}', "no JSON"),
    ("", "no JSON"),
])
def test_unrepairable_outputs_raise(raw, reason):
    with pytest.raises(RepairError) as info:
        repair(raw)
    assert info.value.reason == reason
    assert isinstance(info.value, ConversationError) and "pl-1" in str(info.value) and "'c1'" in str(info.value)


def test_long_text_is_shortened():
    raw = json.loads(json.dumps(CLEAN))
    raw["messages"][0]["content"] = "la " * 1000
    assert len(repair(raw).messages[0].content) == 2000


def test_rejection_cues():
    for text in ("Nah.", "That's too slow", "I don’t like fiddles", "Something else please", "skip"):
        assert is_rejection(text), text
    for text in ("Love it!", "Perfect, more like this.", "Yes! What's next?"):
        assert not is_rejection(text), text


# ---------------------------------------------------------------- the prompt


def test_prompt_contains_tracks_metadata_and_negatives():
    messages = build_prompt(PLAYLIST_TRACKS[:6], NEGATIVE_TRACKS, 6, random.Random(0), "Night drive")
    assert [m["role"] for m in messages] == ["system", "user"]
    text = messages[1]["content"]
    playlist_part, negative_part = text.split("## Negative set")
    for t in PLAYLIST_TRACKS[:6]:
        line = next(ln for ln in playlist_part.splitlines() if f'"track_id": "{t.track_id}"' in ln)
        data = json.loads(line)
        assert (data["title"], data["artist"], data["album"], data["year"], data["caption"]) == \
            (t.title, t.artist, t.album, t.year, t.caption)
        assert data["tags"] == list(t.tags)
    for t in NEGATIVE_TRACKS:
        assert f'"track_id": "{t.track_id}"' in negative_part.split("## The dialogue")[0] and t.title in negative_part
    assert OUTSIDE.track_id not in text
    assert "exactly 6 turns" in text and "exactly 18 messages" in text and '"role": "music"' in text
    assert "Night drive" in text and "JSON" in messages[0]["content"]
    assert messages == build_prompt(PLAYLIST_TRACKS[:6], NEGATIVE_TRACKS, 6, random.Random(0), "Night drive")


def test_prompt_rejects_impossible_requests():
    with pytest.raises(ValueError, match="n_turns 3"):
        build_prompt(PLAYLIST_TRACKS, NEGATIVE_TRACKS, 3, random.Random(0))
    with pytest.raises(ValueError, match="cannot fill 8 turns"):
        build_prompt(PLAYLIST_TRACKS[:3], NEGATIVE_TRACKS[:1], 8, random.Random(0))
    no_neg = build_prompt(PLAYLIST_TRACKS[:4], [], 4, random.Random(0))[1]["content"]
    assert "(none)" in no_neg and "Every turn plays a track from the playlist" in no_neg


def test_negatives_avoid_the_playlist():
    rng = random.Random(1)
    negs = choose_negatives(CATALOG, PLAYLIST_TRACKS[:4], 3, rng)
    assert len(negs) == 3 and not {t.track_id for t in negs} & {"p1", "p2", "p3", "p4"}
    assert not {t.artist for t in negs} & {"Kitty Volt", "Laser Owl"}


# ---------------------------------------------------------------- HTTP client against a local fake server


class FakeEndpoint:
    """A threaded HTTP server on 127.0.0.1:<free port>; ``respond(request)`` → (status, body, headers)."""

    def __init__(self, respond):
        self.respond, self.requests = respond, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                req = {"path": self.path, "auth": self.headers.get("Authorization"), "body": body}
                outer.requests.append(req)
                status, payload, headers = outer.respond(req, len(outer.requests))
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (timeout test)
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.guard = threading.Timer(60, self.server.shutdown)  # stops by itself even if a test forgets
        self.guard.daemon = True

    def __enter__(self):
        self.thread.start()
        self.guard.start()
        return self

    def __exit__(self, *exc):
        self.guard.cancel()
        self.server.shutdown()
        self.server.server_close()


def completion(text):
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": text}, "finish_reason": "stop"}]}


def config_for(server, **kw):
    return LLMConfig(base_url=server.url, model="fake-model", backoff_s=0.01, timeout_s=5, **kw)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TALKPLAY_TEST_KEY", KEY)


def authorized(respond):
    def check(req, n):
        if req["auth"] != f"Bearer {KEY}":
            return 401, {"error": {"message": f"bad key {req['auth']}"}}, None
        return respond(req, n)
    return check


def test_call_chat_sends_auth_and_body():
    with FakeEndpoint(authorized(lambda req, n: (200, completion('{"ok": 1}'), None))) as srv:
        cfg = config_for(srv, api_key_env="TALKPLAY_TEST_KEY", temperature=0.3, max_tokens=99, seed=7)
        assert call_chat(cfg, [{"role": "user", "content": "hi"}]) == '{"ok": 1}'
        (req,) = srv.requests
        assert req["path"] == "/v1/chat/completions"
        body = req["body"]
        assert body["model"] == "fake-model" and body["temperature"] == 0.3 and body["max_tokens"] == 99
        assert body["messages"] == [{"role": "user", "content": "hi"}] and body["seed"] == 7
        assert body["response_format"] == {"type": "json_object"}


def test_call_chat_auth_failure_names_url_and_status_but_not_key(monkeypatch):
    monkeypatch.setenv("TALKPLAY_TEST_KEY", "sk-wrong-key-456")
    with FakeEndpoint(authorized(lambda req, n: (200, completion("x"), None))) as srv:
        with pytest.raises(LLMError) as info:
            call_chat(config_for(srv, api_key_env="TALKPLAY_TEST_KEY"), [])
        msg = str(info.value)
        assert info.value.status == 401 and "HTTP 401" in msg and srv.url + "/chat/completions" in msg
        assert "sk-wrong-key-456" not in msg and "***" in msg  # the server echoed the key; it is redacted
        assert len(srv.requests) == 1  # a 401 is not retried


def test_call_chat_without_key_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("TALKPLAY_TEST_KEY")
    with FakeEndpoint(lambda req, n: (200, completion("fine"), None)) as srv:
        assert call_chat(config_for(srv, api_key_env="TALKPLAY_TEST_KEY"), []) == "fine"
        assert srv.requests[0]["auth"] is None


def test_call_chat_retries_429_then_succeeds():
    def respond(req, n):
        return (429, {"error": "slow down"}, {"Retry-After": "0"}) if n == 1 else (200, completion("second"), None)

    with FakeEndpoint(authorized(respond)) as srv:
        assert call_chat(config_for(srv, api_key_env="TALKPLAY_TEST_KEY"), []) == "second"
        assert len(srv.requests) == 2


def test_call_chat_falls_back_without_response_format():
    def respond(req, n):
        if "response_format" in req["body"]:
            return 400, {"error": {"message": "response_format is not supported"}}, None
        return 200, completion("plain"), None

    with FakeEndpoint(respond) as srv:
        cfg = config_for(srv)
        assert call_chat(cfg, []) == "plain"
        assert ["response_format" in r["body"] for r in srv.requests] == [True, False]
        assert call_chat(cfg, []) == "plain"  # remembered: no second 400
        assert len(srv.requests) == 3
        with FakeEndpoint(lambda req, n: (400, {"error": "bad messages"}, None)) as bad:
            with pytest.raises(LLMError, match="HTTP 400"):
                call_chat(config_for(bad, json_mode=False), [])
            assert len(bad.requests) == 1


def test_call_chat_gives_up_after_retries_and_on_bad_bodies():
    with FakeEndpoint(lambda req, n: (503, b"upstream down", None)) as srv:
        with pytest.raises(LLMError) as info:
            call_chat(config_for(srv, max_retries=2), [])
        assert info.value.status == 503 and "gave up after 3 attempts" in str(info.value)
        assert len(srv.requests) == 3
    for payload, error in ((b"<html>not json</html>", "not a chat completion response"),
                           (completion(None), "no text content")):
        with FakeEndpoint(lambda req, n, payload=payload: (200, payload, None)) as srv, \
                pytest.raises(LLMError, match=error):
            call_chat(config_for(srv), [])


def test_call_chat_retries_after_timeout():
    def respond(req, n):
        if n == 1:
            time.sleep(1.0)
        return 200, completion("late but fine"), None

    with FakeEndpoint(respond) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", timeout_s=0.3, backoff_s=0.01)
        assert call_chat(cfg, []) == "late but fine" and len(srv.requests) == 2


def test_call_chat_connection_refused_is_an_llm_error():
    with FakeEndpoint(lambda req, n: (200, completion("x"), None)) as srv:
        url = srv.url
    with pytest.raises(LLMError, match="cannot connect|connection dropped"):
        call_chat(LLMConfig(base_url=url, model="m", max_retries=1, backoff_s=0.01, timeout_s=2), [])


def test_rate_limit_spaces_requests():
    with FakeEndpoint(lambda req, n: (200, completion("x"), None)) as srv:
        cfg = config_for(srv, requests_per_minute=600)  # one request per 0.1 s
        start = time.monotonic()
        for _ in range(3):
            call_chat(cfg, [])
        assert time.monotonic() - start >= 0.2


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="base_url"):
        LLMConfig(base_url="localhost:8000")


# ---------------------------------------------------------------- generation loop, cache and CLI


def dialogue_from_prompt(req, n):
    """A fake model: reads the track lines of the prompt and writes a grounded 4-turn dialogue."""
    prompt = req["body"]["messages"][1]["content"]
    playlist_part = prompt.split("## Negative set")[0]
    tracks = [json.loads(ln) for ln in playlist_part.splitlines() if ln.startswith('{"track_id"')]
    turns = msgs(*[(f"Something like number {i}?", t["track_id"], f"Here is {t['title']} by {t['artist']}.")
                   for i, t in enumerate(tracks[:4])])
    return 200, completion("```json\n" + json.dumps({"messages": turns}) + "\n```"), None


def test_generate_uses_cache_on_rerun(tmp_path):
    cache = tmp_path / "raw.jsonl"
    with FakeEndpoint(dialogue_from_prompt) as srv:
        cfg = config_for(srv)
        convs, stats = generate_with_llm(CATALOG, [PLAYLIST], cfg, negatives_per_playlist=1, progress=False,
                                         cache_path=cache)
        assert len(srv.requests) == 1 and stats["api_calls"] == 1 and stats["valid"] == 1
        assert stats["repaired"] == 1 and stats["repairs"] == {"json extracted from surrounding text": 1}
        again, stats2 = generate_with_llm(CATALOG, [PLAYLIST], cfg, negatives_per_playlist=1, progress=False,
                                          cache_path=cache)
        assert len(srv.requests) == 1 and stats2["api_calls"] == 0 and stats2["from_cache"] == 1
        assert again == convs
        record = json.loads(cache.read_text().splitlines()[0])
        assert record["model"] == "fake-model" and record["playlist_id"] == "pl-1"
        prompt = srv.requests[0]["body"]["messages"]
        expect = hashlib.sha256(json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        assert record["prompt_sha256"] == expect and KEY not in cache.read_text()
        other = LLMConfig(base_url=srv.url, model="other-model", backoff_s=0.01)  # another model pays again
        generate_with_llm(CATALOG, [PLAYLIST], other, negatives_per_playlist=1, progress=False, cache_path=cache)
        assert len(srv.requests) == 2


def test_generate_counts_failures_and_stops_when_endpoint_is_down():
    short = Playlist("pl-short", "", ("p1", "p2"), True, "synthetic:test", "valid")
    with FakeEndpoint(lambda req, n: (200, completion("no json here"), None)) as srv:
        convs, stats = generate_with_llm(CATALOG, [PLAYLIST, short], config_for(srv), negatives_per_playlist=0,
                                         progress=False)
        assert convs == [] and stats["requested"] == 2 and stats["failed"] == 2
        assert stats["failure_reasons"] == {"no JSON": 1, "playlist too short": 1}
        assert stats["failure_examples"][0]["playlist_id"] == "pl-1"
    with FakeEndpoint(lambda req, n: (500, b"down", None)) as srv:
        many = [Playlist(f"pl-{i}", "", PLAYLIST.track_ids, True, "s") for i in range(5)]
        with pytest.raises(LLMError, match="HTTP 500"):
            generate_with_llm(CATALOG, many, config_for(srv, max_retries=0), progress=False,
                              max_consecutive_errors=2)
        assert len(srv.requests) == 2


def test_cli_writes_valid_conversations(tmp_path, capsys):
    bundle = tmp_path / "bundle"
    catalog = save_catalog(bundle, CATALOG.tracks, name="fixture")
    write_playlists(bundle, [PLAYLIST, Playlist("pl-2", "Synth two", ("p5", "p6", "p7", "p8", "p9", "p10"),
                                                True, "synthetic:test", "test")])
    out = tmp_path / "llm.jsonl"
    with FakeEndpoint(authorized(dialogue_from_prompt)) as srv:
        args = ["--catalog", str(bundle), "--base-url", srv.url, "--model", "fake-model", "--api-key-env",
                "TALKPLAY_TEST_KEY", "--out", str(out), "--quiet"]
        assert main(args) == 0
        stats = json.loads(capsys.readouterr().out)
        assert stats["valid"] == 2 and stats["cache"] == str(tmp_path / "llm.raw.jsonl")
        assert main([*args, "--limit", "1", "--splits", "test"]) == 0
        assert len(srv.requests) == 2  # the rerun came from the cache
    convs = read_conversations(out, catalog)
    assert [c.playlist_id for c in convs] == ["pl-2"] and convs[0].split == "test"
    assert convs[0].generator == "llm:fake-model" and convs[0].synthetic
    assert KEY not in capsys.readouterr().err
    assert main(["--catalog", str(bundle), "--model", "m", "--show-prompt"]) == 0
    assert '"track_id": "p1"' in capsys.readouterr().out


def test_cli_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--catalog", "--base-url", "--model", "--api-key-env", "--limit", "--out", "--cache", "--rpm",
                 "--no-json-mode", "--show-prompt"):
        assert flag in text

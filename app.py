"""TalkPlay web app (thin UI layer): chat with the recommender, play previews, rate; browse the catalog.

Run ``python app.py`` (or ``gradio app.py`` for reload mode). Configuration comes from the environment
(README, "Configuration"): every TALKPLAY_* serving setting is a field of talkplay.settings.ServeSettings, read
once from the environment when the page is built. All logic lives in
``talkplay`` (chat: :mod:`talkplay.chat_session`, catalog page: :mod:`talkplay.browse`); this file only lays
out widgets and binds them. The model loads once, in the background, on first need.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

if os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true"):
    import spaces  # noqa: F401  (ZeroGPU: must be imported before torch, which it patches; talkplay.space.zero_gpu)

# Gradio serves files from its temp folder; the default (/tmp/gradio) is shared by every Gradio app of the machine,
# so this app gets its own (read by gradio at import, hence before it), cleaned of files older than an hour.
os.environ.setdefault("GRADIO_TEMP_DIR", os.path.join(tempfile.gettempdir(), f"talkplay-gradio-{os.getuid()}"))

import gradio as gr  # noqa: E402

from talkplay.browse import ALL_SOURCES, TABLE_COLUMNS, CatalogBrowser
from talkplay.checkpoint import ALLOW_OTHER_BASE_ENV
from talkplay.previews import PreviewProgress
from talkplay.space import on_space
from talkplay.preflight import StartupError, check_bundle
from talkplay.settings import ServeSettings
from talkplay.chat_session import (
    EXAMPLES,
    KEEP,
    ChatController,
    LazyRecommender,
    feedback_store_from_env,
    version_of,
)

ROOT = Path(__file__).resolve().parent
MAX_UPLOAD = "64kb"
SYNTHETIC_NOTE = ("The model was trained on **synthetic** conversations and playlists generated from the catalog "
                  "(no real listening data). Recordings are real, freely licensed, credited on each card.")


# Runs in the browser after the player gets a new track: waits (≤ 10 s) for the waveform player's <audio> (in a
# shadow root) to load the new file, rewinds it, and plays it when the autoplay box is ticked.
PLAYER_JS = """(autoplay) => {
  const host = document.querySelector('#now-playing');
  const audios = () => { const found = []; const walk = (root) => root.querySelectorAll('*').forEach(el => {
    if (el.tagName === 'AUDIO') found.push(el); if (el.shadowRoot) walk(el.shadowRoot); }); if (host) walk(host);
    return found; };
  const before = new Set(audios().map(el => el.currentSrc));
  let tries = 0;
  const start = () => {
    const ready = audios().filter(el => el.readyState >= 1 && el.currentSrc && !before.has(el.currentSrc));
    const fallback = tries > 20 ? audios().filter(el => el.readyState >= 1) : [];
    const els = ready.length ? ready : fallback;
    if (!els.length) { if (tries++ < 100) setTimeout(start, 100); return; }
    els.forEach(el => { el.currentTime = 0; if (autoplay) { el.play().catch(() => {}); } else { el.pause(); } });
  };
  setTimeout(start, 50);
  return [];
}"""


def _chat_tab(ctrl: ChatController) -> None:
    session = gr.State(None)
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(label="TalkPlay", height=500, elem_id="chat", buttons=["copy", "copy_all"],
                                 placeholder="Describe what you want to hear — a mood, a scene, a style.")
            request = gr.Textbox(label="Your request", placeholder="e.g. upbeat chiptune for a road trip",
                                 elem_id="request", max_lines=4)
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send")
                new = gr.Button("New conversation", elem_id="new-conversation")
            gr.Examples(list(EXAMPLES), inputs=request, label="Try")
        with gr.Column(scale=2):
            audio = gr.Audio(label="Now playing (30-s preview)", type="filepath", interactive=False, autoplay=False,
                             elem_id="now-playing")
            autoplay = gr.Checkbox(False, label="Autoplay previews (off by default)", elem_id="autoplay")
            card = gr.Markdown(ctrl.card(None)[0], elem_id="track-card")
            with gr.Row():
                like = gr.Button("👍 Like track", elem_id="like-track", size="sm")
                dislike = gr.Button("👎 Dislike track", elem_id="dislike-track", size="sm")
                skip = gr.Button("⏭ Skip — another one", elem_id="skip", size="sm")
            stars = gr.Radio(["1", "2", "3", "4", "5"], label="Rate this recommendation (1–5)", elem_id="stars")
            comment = gr.Textbox(label="Comment (optional)", max_lines=3, elem_id="comment")
            comment_send = gr.Button("Send comment", size="sm")
            status = gr.Markdown("", elem_id="feedback-status")
            gr.Markdown("**Played in this conversation**")
            played = gr.Markdown("*Nothing played yet.*", elem_id="played")
            with gr.Accordion("Sampling settings", open=False):
                temperature = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Reply temperature (0 = greedy, track too)")
                top_p = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
                mode = gr.Radio(["constrained", "paper"], value="constrained", label="Decoding",
                                info="constrained: only real catalog tracks; paper: free tokens + partial matching")
    turn_out = [chatbot, card, audio, played, session]
    knobs = [temperature, top_p, mode]
    # Named API endpoints (gradio_client, the load test); every other event stays out of the API.
    hidden = dict(api_visibility="private")
    # One cap on turns generating at once, whatever started them (send, Enter, skip share one queue slot pool);
    # the model's batching scheduler decodes that many together (load_from_env).
    turns = dict(concurrency_id="model-turns", concurrency_limit=ctrl.settings.concurrency)

    # Rate limits follow the visitor (address + browser session), not the conversation: see ChatSession.visitor.
    def shown(updates):  # KEEP: the card and the player stay as they are (a words-only answer, an error line)
        for chat, card_md, path, played_md, s in updates:
            yield chat, gr.skip() if card_md is KEEP else card_md, gr.skip() if path is KEEP else path, played_md, s

    def on_send(text, s, t, p, m, req: gr.Request):
        yield from shown(ctrl.send(text, s, t, p, m, visitor=visitor_key(req)))

    def on_skip(s, t, p, m, req: gr.Request):
        yield from shown(ctrl.skip(s, t, p, m, visitor=visitor_key(req)))

    def on_new(req: gr.Request):
        return ctrl.new_session(visitor_key(req))

    # While a turn streams, the buttons that would start another one in this conversation are off (the
    # controller also runs a conversation's turns one at a time, for API clients).
    buttons = [send, skip]
    busy = (lambda: [gr.Button(interactive=False)] * len(buttons), None, buttons)
    idle = (lambda: [gr.Button(interactive=True)] * len(buttons), None, buttons)
    for trigger, fn, inputs, api in ((send.click, on_send, [request, session, *knobs], dict(api_name="send")),
                                     (request.submit, on_send, [request, session, *knobs], hidden),
                                     (skip.click, on_skip, [session, *knobs], dict(api_name="skip"))):
        trigger(*busy, queue=False, **hidden)
        done = trigger(fn, inputs, turn_out, **api, **turns).then(*idle, queue=False, **hidden)
        if fn is on_send:
            done.then(lambda: "", None, request, **hidden)
    new.click(on_new, None, turn_out, api_name="new_conversation")
    chatbot.clear(on_new, None, turn_out, **hidden)  # the chat's own trash button starts over too
    like.click(lambda s: ctrl.like_track(s, True), session, status, api_name="like_track")
    dislike.click(lambda s: ctrl.like_track(s, False), session, status, api_name="dislike_track")
    stars.input(ctrl.rate, [session, stars], status, api_name="rate")  # .input: a reset below is not a rating
    comment_send.click(ctrl.comment, [session, comment], status, api_name="comment").then(
        lambda: "", None, comment, **hidden)

    def on_like(s, data: gr.LikeData):
        return ctrl.like_reply(s, data.index, bool(data.liked))

    chatbot.like(on_like, session, status, api_visibility="private")
    # A new track (its card changes) or a new conversation clears the previous track's rating, comment and status;
    # a message answered in words only leaves them, as it leaves the track playing.
    for event in (card.change, new.click, chatbot.clear):
        event(lambda: (gr.Radio(value=None), "", ""), None, [stars, comment, status], queue=False, **hidden)
    # Each new preview starts at 0:00 and plays when autoplay is on. Updating gr.Audio(autoplay=…) does not start
    # playback, and the player keeps the previous position, so this runs in the page (the checkbox is read there).
    audio.change(None, [autoplay], None, js=PLAYER_JS, **hidden)


def _browse_tab(browser: CatalogBrowser) -> None:
    gr.Markdown(browser.summary())
    with gr.Row():
        query = gr.Textbox(label="Search", placeholder="title, artist, tag… e.g. 'orchestral battle'", scale=3)
        source = gr.Dropdown(browser.sources(), value=ALL_SOURCES, label="Source", scale=1)
    with gr.Row():
        with gr.Column(scale=3):
            table = gr.Dataframe(value=browser.rows(), headers=TABLE_COLUMNS, interactive=False,
                                 wrap=True, max_height=560, label="Tracks (click a row)")
        with gr.Column(scale=2):
            card = gr.Markdown(browser.card(None).markdown)
            audio = gr.Audio(label="Preview", type="filepath", interactive=False, autoplay=False)

    def on_select(evt: gr.SelectData):
        row = evt.row_value or []
        c = browser.card(row[TABLE_COLUMNS.index("track_id")] if row else None)
        return c.markdown, c.audio

    query.change(browser.rows, [query, source], table)
    source.change(browser.rows, [query, source], table)
    table.select(on_select, None, [card, audio])


def build_demo(recommender, feedback_store, browser: CatalogBrowser, model_version: str = "unknown",
               catalog_version: str = "unknown", previews: PreviewProgress | None = None,
               settings: ServeSettings | None = None) -> gr.Blocks:
    """The page: a chat bound to ``recommender`` (or a LazyRecommender), feedback into ``feedback_store``
    (None: not stored), the catalog browser and its credits; ``previews``: a background preview preparation
    whose progress the page shows until it ends; ``settings``: limits (default: from the environment)."""
    settings = settings or ServeSettings.from_env(root=ROOT)
    ctrl = ChatController(recommender, browser, feedback_store, model_version, catalog_version, settings=settings)
    with gr.Blocks(title="TalkPlay — conversational music recommendation", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("# 🎧 TalkPlay\nTell it what you want to hear; it answers with a real track from the catalog "
                    "and a few words about it.\n\n" + SYNTHETIC_NOTE)
        if ctrl.feedback_warning():  # not writable at start (each click says so too), or lost at a Space restart
            gr.Markdown(ctrl.feedback_warning(), elem_id="feedback-warning")
        if os.environ.get(ALLOW_OTHER_BASE_ENV) == "1":
            gr.Markdown(f"⚠️ {ALLOW_OTHER_BASE_ENV}=1: this server may run the model on a base it was not trained "
                        "on; recommendations and replies can be poor.", elem_id="other-base-warning")
        if previews is not None:
            line = gr.Markdown(previews.line(), elem_id="previews-status")
            timer = gr.Timer(2.0)
            timer.tick(lambda: (previews.line(), gr.Timer(active=not previews.finished)), None, [line, timer],
                       api_visibility="private", show_progress="hidden")
        with gr.Tab("Chat"):
            _chat_tab(ctrl)
        with gr.Tab("Browse catalog"):
            _browse_tab(browser)
        with gr.Tab("Credits"):
            gr.Markdown(browser.credits_markdown())
    demo.controller = ctrl  # for tests and scripts
    return demo


def catalog_dir(settings: ServeSettings | None = None) -> Path:
    return (settings or ServeSettings.from_env(root=ROOT)).catalog


def launch_kwargs(catalog: Path, settings: ServeSettings | None = None) -> dict:
    """Arguments for ``demo.launch``: address, and the only folders whose files may be served."""
    # A Space sets GRADIO_SERVER_NAME=0.0.0.0 (its proxy must reach the app); an explicit value here would
    # override it, so TALKPLAY_HOST/PORT win, then Gradio's own variables, then loopback for a laptop.
    settings, env = settings or ServeSettings.from_env(root=ROOT), os.environ
    return dict(
        server_name=settings.host or env.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space() else "127.0.0.1"),
        server_port=settings.port or int(env.get("GRADIO_SERVER_PORT") or "7860"),
        allowed_paths=[str(catalog / "previews"), str(ROOT / "assets")],
        max_file_size=MAX_UPLOAD,  # nothing on the page takes a file: uploads are refused above this
    )


def _prepare_previews_in_background(catalog: Path, status: PreviewProgress) -> None:
    """On a Space (which runs only requirements.txt + app.py, never setup.sh), cut missing previews
    after the page is up; cards show "preview unavailable" until each one is ready, and the page shows
    ``status``. With persistent storage the downloads are kept there, so a restart re-cuts the previews
    (the app folder is wiped) without downloading the recordings again."""
    from talkplay.previews import prepare_previews
    from talkplay.space import persistent_dir

    def work() -> None:
        try:
            report = prepare_previews(catalog, progress=status, keep_downloads=persistent_dir() is not None)
            print(f"previews: {report.ready} ready, {report.cut} cut, {len(report.failed)} failed")
            for track_id, reason in list(report.failed.items())[:5]:
                print(f"  {track_id}: {reason}")
            status.finish()
        except Exception as err:  # the page must stay up whatever happens to the audio
            print(f"previews could not be prepared: {err}")
            status.finish(type(err).__name__)  # the reason is in the log, not on the page (it may hold paths)

    threading.Thread(target=work, name="prepare-previews", daemon=True).start()


def load_from_env(bundle: Path, settings: ServeSettings | None = None):
    """The recommender the settings configure (device/precision/base model), loaded on first use."""
    from talkplay.recommender import load_recommender

    s = settings or ServeSettings.from_env(root=ROOT)
    return LazyRecommender(lambda: load_recommender(bundle, s.device, s.precision, base_model=s.base_model,
                                                    max_batch=s.concurrency))


def create_demo(previews: PreviewProgress | None = None, settings: ServeSettings | None = None) -> gr.Blocks:
    """The app for the configured bundle (``TALKPLAY_CATALOG``); raises StartupError naming a bad setting or a
    missing or damaged file before anything is served (the model itself loads lazily, so it is checked here)."""
    settings = settings or ServeSettings.from_env(root=ROOT)
    bundle = settings.catalog
    catalog = check_bundle(bundle)
    return build_demo(load_from_env(bundle, settings), feedback_store_from_env(settings), CatalogBrowser(catalog),
                      version_of(bundle / "model" / "checkpoint.json"), version_of(bundle / "tracks.parquet"),
                      previews, settings)


def concurrency(settings: ServeSettings | None = None) -> int:
    """Turns generating at once (``TALKPLAY_CONCURRENCY``, default 16): the queue's cap on send/Enter/skip and the
    number of rows the batching scheduler decodes together."""
    return (settings or ServeSettings.from_env(root=ROOT)).concurrency


def visitor_key(request: gr.Request | None) -> str:
    """Who is asking, for rate limits: client address and the browser's Gradio session."""
    if request is None:
        return ""
    host = getattr(getattr(request, "client", None), "host", None) or "?"
    return f"{host}|{getattr(request, 'session_hash', None) or '?'}"


def queue_kwargs(settings: ServeSettings | None = None) -> dict:
    """Queue limits: requests run at once (model turns share the CPU/GPU) and requests waiting."""
    settings = settings or ServeSettings.from_env(root=ROOT)
    return dict(default_concurrency_limit=settings.concurrency, max_size=settings.queue_max)


def _create_or_exit() -> gr.Blocks:
    try:
        return create_demo(PREVIEWS)
    except StartupError as err:
        if __name__ != "__main__":
            raise
        print(f"TalkPlay cannot start: {err}", file=sys.stderr)
        sys.exit(2)


# A Space cuts its previews in the background after the page is up (setup.sh cuts them before a local launch).
PREVIEWS = PreviewProgress() if on_space() else None
# Module-level `demo` lets `gradio app.py` reload the page; the model itself loads lazily.
demo = _create_or_exit() if os.environ.get("TALKPLAY_NO_AUTOLOAD") != "1" else None

if __name__ == "__main__":
    import signal

    # SIGTERM (a Space restarting, `kill`) exits through atexit, so the feedback writer finishes its queue and
    # ratings held while the database was unwritable are saved to the pending file, not lost.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    demo = demo or _create_or_exit()
    demo.controller._rec.start_background()  # load the model while the page comes up
    settings = demo.controller.settings  # read once from the environment, when the page was built
    if PREVIEWS is not None:
        _prepare_previews_in_background(settings.catalog, PREVIEWS)
    demo.queue(**queue_kwargs(settings)).launch(**launch_kwargs(settings.catalog, settings))

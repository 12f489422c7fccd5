"""TalkPlay web app (thin UI layer): browse the catalog and play previews.

Run ``python app.py`` (or ``gradio app.py`` for reload mode). The catalog comes from
$TALKPLAY_CATALOG (default: catalog/demo). All logic lives in ``talkplay``; this file only lays out widgets.
The chat interface arrives with the inference engine; until then the page is the catalog browser.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import gradio as gr

from talkplay.browse import ALL_SOURCES, TABLE_COLUMNS, CatalogBrowser
from talkplay.catalog import load_catalog

ROOT = Path(__file__).resolve().parent


def build_demo(browser: CatalogBrowser) -> gr.Blocks:
    """Build the Gradio page around one ``CatalogBrowser``."""
    with gr.Blocks(title="TalkPlay — music catalog") as demo:
        gr.Markdown("# 🎧 TalkPlay\nConversational music recommendation — catalog of real, freely licensed recordings.")
        with gr.Tab("Browse catalog"):
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
        with gr.Tab("Credits"):
            gr.Markdown(browser.credits_markdown())

        def on_select(evt: gr.SelectData):
            row = evt.row_value or []
            c = browser.card(row[TABLE_COLUMNS.index("track_id")] if row else None)
            return c.markdown, c.audio

        query.change(browser.rows, [query, source], table)
        source.change(browser.rows, [query, source], table)
        table.select(on_select, None, [card, audio])
    return demo


def catalog_dir() -> Path:
    return Path(os.environ.get("TALKPLAY_CATALOG", ROOT / "catalog" / "demo"))


def launch_kwargs(catalog: Path) -> dict:
    """Arguments for ``demo.launch``: address, and the only folders whose files may be served."""
    return dict(
        server_name=os.environ.get("TALKPLAY_HOST", "127.0.0.1"),
        server_port=int(os.environ.get("TALKPLAY_PORT", "7860")),
        allowed_paths=[str(catalog / "previews"), str(ROOT / "assets")],
    )


def _prepare_previews_in_background(catalog: Path) -> None:
    """On a Space (which runs only requirements.txt + app.py, never setup.sh), cut missing previews
    after the page is up; cards show "preview unavailable" until each one is ready."""
    from talkplay.previews import prepare_previews

    def work() -> None:
        try:
            report = prepare_previews(catalog, progress=False)
            print(f"previews: {report.ready} ready, {report.cut} cut, {len(report.failed)} failed")
        except Exception as err:  # the page must stay up whatever happens to the audio
            print(f"previews could not be prepared: {err}")

    threading.Thread(target=work, name="prepare-previews", daemon=True).start()


def create_demo() -> gr.Blocks:
    return build_demo(CatalogBrowser(load_catalog(catalog_dir())))


# Module-level `demo` lets `gradio app.py` reload the page; loading a catalog is fast (no model here).
demo = create_demo() if os.environ.get("TALKPLAY_NO_AUTOLOAD") != "1" else None

if __name__ == "__main__":
    demo = demo or create_demo()
    if os.environ.get("SPACE_ID"):
        _prepare_previews_in_background(catalog_dir())
    demo.queue(default_concurrency_limit=8).launch(**launch_kwargs(catalog_dir()))

"""TalkPlay web app (thin UI layer): browse the catalog and play previews.

Run ``python app.py`` (or ``gradio app.py`` for reload mode). The catalog comes from
$TALKPLAY_CATALOG (default: catalog/demo). All logic lives in ``talkplay``; this file only lays out widgets.
The chat interface arrives with the inference engine; until then the page is the catalog browser.
"""

from __future__ import annotations

import os
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
            c = browser.card(row[0] if row else None)
            return c.markdown, c.audio

        query.submit(browser.rows, [query, source], table)
        query.change(browser.rows, [query, source], table)
        source.change(browser.rows, [query, source], table)
        table.select(on_select, None, [card, audio])
    return demo


def _catalog_dir() -> Path:
    return Path(os.environ.get("TALKPLAY_CATALOG", ROOT / "catalog" / "demo"))


def _load() -> CatalogBrowser:
    catalog_dir = _catalog_dir()
    if os.environ.get("SPACE_ID"):
        # A Space runs only requirements.txt + app.py, never setup.sh: cut missing previews on first start
        # (installed Debian packages from packages.txt are used when present, else they are downloaded).
        from talkplay.previews import prepare_previews

        prepare_previews(catalog_dir, progress=False)
    return CatalogBrowser(load_catalog(catalog_dir))


# Module-level `demo` lets `gradio app.py` reload the page; loading a catalog is fast (no model here).
demo = build_demo(_load()) if os.environ.get("TALKPLAY_NO_AUTOLOAD") != "1" else None

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=8).launch(
        server_name=os.environ.get("TALKPLAY_HOST", "127.0.0.1"),
        server_port=int(os.environ.get("TALKPLAY_PORT", "7860")),
        # Only the catalog's previews and the UI assets may be served as files.
        allowed_paths=[str(_catalog_dir() / "previews"), str(ROOT / "assets")],
    )

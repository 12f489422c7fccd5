"""TalkPlay runtime library: catalog, previews, (later) music tokens, model loading, decoding and chat.

Nothing here imports ``train/``; the app needs only this package.
"""

__version__ = "0.1.0"

"""Stage 1 — catalog bundles: recordings and their cards in, a bundle out (``catalog/<name>/``).

Where the demo's recordings come from (``demo_sources``: Debian packages of freely licensed game music) and how
a bundle is built from them (``demo_catalog``) or from a listener's own CSV and audio folder (``import_catalog``,
``byo``); what each recording sounds like (``analyze``: ``descriptors`` measured from the audio, ``musicnn`` /
``tf_checkpoint`` auto-tags, ``tagging`` turning both into tags and captions); credits and licenses
(``credits``, ``dep5``); adding tracks to a trained bundle without refitting (``cold_start``); and packaging a
trained checkpoint into a bundle with its model card (``package``). Next stage: :mod:`train.tokens`.
"""

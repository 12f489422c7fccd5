"""Stage 2 — music tokens: each track's short code sequence per modality, and the model's vocabulary for them.

Per modality an embedding of every track (``embeddings``: playlist co-occurrence, tags, metadata, lyrics,
audio), a quantizer fitted on them (``quantize``, the kinds in ``kmeans`` — K-means as in TalkPlay, residual
K-means — and ``rqvae`` as in 3MToken, sharing ``quantizer``), and the codes written as a token store of the bundle (``build``: ``python -m train.tokens.build``);
``tokenizer_report`` compares the stores and picks the default; ``token_init`` gives the new music-token rows
of the language model their text-grounded starting values. Next stage: :mod:`train.data`.
"""

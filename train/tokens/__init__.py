"""Stage 2 — music tokens: each track's short code sequence per modality, and the model's vocabulary for them.

Per modality an embedding of every track (``embeddings``: playlist co-occurrence, tags, metadata, lyrics,
audio); a quantizer fitted on them (``quantize`` makes one of a kind: flat or residual K-means in ``kmeans`` as
in TalkPlay, the RQ-VAE in ``rqvae`` as in 3MToken, sharing the interface in ``quantizer``); and the codes
written as a token store of the bundle (``build``: ``python -m train.tokens.build``). ``tokenizer_report``
compares the stores and picks the default; ``token_init`` gives the new music-token rows of the language model
their text-grounded starting values. Next stage: :mod:`train.data`.
"""

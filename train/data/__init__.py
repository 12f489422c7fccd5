"""Stage 3 — training data: playlists, splits and synthetic conversations rendered as training examples.

Playlists (``playlists``: imported, or simulated and labelled synthetic) and the train/valid/test and cold-start
split (``splits``); conversations written offline from the words of ``lexicon`` (``conversations``, schema in
``conversation_schema``, typing noise in ``noise``) or by an LLM where one is reachable (``llm_client``,
``llm_conversations``, ``llm_repair``); short text → music requests (``text_requests``) and playlist
continuation sequences (``sequences``). ``python -m train.data.build`` makes all of it for a bundle.
Next stage: :mod:`train.training`.
"""

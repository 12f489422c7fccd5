"""The runtime tests' world, built without the training package: a tokenizer trained on a few sentences and
expanded with a small music vocabulary, a tiny tied Llama, a 6-track catalog and its token store.

``tests/conftest.py`` serves it as the ``world`` fixture; ``tests/train/test_sft.py`` adds rendered training datasets.
"""

import numpy as np

from talkplay.catalog import Track, save_catalog
from talkplay.expansion import expand_model, expand_tokenizer, music_token_ids
from talkplay.token_store import TokenStore, load_store, save_store
from talkplay.tokens import ModalitySpec, MusicVocab
from tests import tiny_lm

SENTENCES = ["play me some calm jazz please", "I like piano music at night", "recommend a song with loud drums",
             "something upbeat for running", "here is Song by Band", "Continue this playlist:"]
# audio reserves code 0 ("no data"): its centroids cover codes 1..5 only
VOCAB = MusicVocab([ModalitySpec("playlist", 1, 4), ModalitySpec("audio", 2, 6, reserved=1)])
N_TRACKS = 6


def make_tokenizer():
    return tiny_lm.make_tokenizer(SENTENCES)


def make_model(tokenizer, n_old):
    """A tiny tied Llama expanded to the tokenizer's music tokens (deterministic)."""
    model = tiny_lm.make_llama(n_old, hidden=32, tied=True, max_positions=512)
    expand_model(model, n_old, music_token_ids(tokenizer, VOCAB), seed=0)
    return model


def build_runtime_world(root):
    """Tokenizer, 6-track catalog + token store under ``root`` (deterministic)."""
    tokenizer = make_tokenizer()
    n_old = len(tokenizer)
    expand_tokenizer(tokenizer, VOCAB.special_tokens())
    tracks = [Track(f"t{i}", f"Song {i}", f"Band {i}", "CC0-1.0", "credit", f"https://example.org/{i}.ogg")
              for i in range(N_TRACKS)]
    catalog = save_catalog(root / "cat", tracks)
    codes = np.array([[i % 4, i % 6, (i + 2) % 6] for i in range(N_TRACKS)])
    rng = np.random.default_rng(0)
    centroids = {"playlist": rng.normal(size=(4, 5)).astype(np.float32),
                 "audio1": rng.normal(size=(5, 3)).astype(np.float32),
                 "audio2": rng.normal(size=(5, 3)).astype(np.float32)}
    save_store(TokenStore(VOCAB, [t.track_id for t in tracks], codes), root / "store", centroids=centroids)
    return {"tokenizer": tokenizer, "n_old": n_old, "store": load_store(root / "store"), "catalog": catalog,
            "centroids": centroids}

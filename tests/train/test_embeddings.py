"""Modality embeddings: text inputs, item2vec co-occurrence, cold-start fallback, cache."""

import hashlib

import numpy as np
import pytest

from talkplay.catalog import Track
from train.tokens.embeddings import EmbeddingCache, RidgeMap, embed_texts, item2vec, text_for


def fake_text_embedder():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        out = []
        for t in texts:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little"))
            v = rng.normal(size=16)
            out.append(v / np.linalg.norm(v))
        return np.array(out, np.float32)

    embed.id = "fake-16"
    return embed, calls


def test_text_inputs():
    t = Track(track_id="x", title="Storm", artist="Ann", license="MIT", attribution="c", source="user",
              album="Skies", year=2001, tags=("rock", "fast"), caption="A fast rock piece.")
    assert text_for(t, "metadata") == "Storm by Ann from Skies (2001)"
    assert text_for(t, "semantic") == "rock, fast. A fast rock piece"
    assert text_for(t, "lyrics") is None
    with pytest.raises(ValueError):
        text_for(t, "audio")


def test_item2vec_learns_co_occurrence_and_is_deterministic():
    group_a, group_b = [f"a{i}" for i in range(6)], [f"b{i}" for i in range(6)]
    rng = np.random.default_rng(0)
    playlists = [list(rng.permutation(g)) for _ in range(60) for g in (group_a, group_b)]
    v1 = item2vec(playlists, dim=16, epochs=30, seed=3)
    v2 = item2vec(playlists, dim=16, epochs=30, seed=3)
    assert all(np.array_equal(v1[k], v2[k]) for k in v1)
    within = np.mean([v1[x] @ v1[y] for x in group_a for y in group_a if x != y])
    across = np.mean([v1[x] @ v1[y] for x in group_a for y in group_b])
    assert within > across + 0.3


def test_fallback_map_places_unseen_tracks_by_content():
    rng = np.random.default_rng(1)
    content = rng.normal(size=(80, 10)).astype(np.float32)
    target = content @ rng.normal(size=(10, 8)).astype(np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    m = RidgeMap.fit(content[:60], target[:60], ridge=0.01)
    pred = m(content[60:])
    cos = (pred * target[60:]).sum(axis=1)
    assert cos.mean() > 0.9
    again = RidgeMap.from_state(m.state())
    assert np.allclose(again(content[60:]), pred)


def test_text_cache_avoids_recomputation(tmp_path):
    embed, calls = fake_text_embedder()
    cache = EmbeddingCache(tmp_path)
    a = embed_texts(["x", "y", "x"], embed, embed.id, cache)
    b = embed_texts(["y", "x", "z"], embed, embed.id, EmbeddingCache(tmp_path))  # a fresh cache object reads disk
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[0], a[2])
    assert len(calls) == 2 and sorted(calls[0]) == ["x", "y"] and calls[1] == ["z"]  # only new texts embedded

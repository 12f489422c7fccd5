"""Retrieval baselines for conversational recommendation (the TalkPlay paper's Table 2 comparators).

Every ranker scores the whole catalog for one conversation turn:

    ranker.scores(history, catalog) -> np.ndarray  # (len(catalog),), catalog.tracks order, higher = better

``history`` is the conversation so far — the messages before the turn's music message, i.e. ending with
the user's request; music messages in it are the tracks already played (rejected ones included). A
ranker never sees the target. Already-played tracks get ``-inf`` (``exclude_played``), so they rank
last; the evaluator additionally drops them from the candidates (see ``train.evaluation.evaluate``).

Systems:

* ``RandomRanker(seed)`` — uniform scores, seeded by (seed, history) so results do not depend on order.
* ``PopularityRanker`` — track frequency in the TRAIN playlists plus accepted tracks of TRAIN
  conversations; tracks never seen score 0 (they tie at the bottom).
* ``BM25Ranker`` — Okapi BM25 (k1=1.5, b=0.75, Lucene idf ``log(1 + (N−df+0.5)/(df+0.5))``), a sparse index
  (``talkplay.textmatch.BM25Index``, which the engine's own text match uses too; it says why not bm25s —
  same rankings, measured), over "{title} by {artist} from {album} {tags} {year}", the query being all user and
  assistant text so far (the paper's setup). Lower-cased ``[a-z0-9]+`` tokens minus a small English
  stop-word list.
* ``DenseRanker`` — cosine between a text embedding (default MiniLM, ``train.tokens.embeddings.TextEmbedder``)
  of each track's "{title} by {artist} from {album}. {tags}. {caption}" and of the conversation text so
  far (its last ``max_query_chars`` characters, whole messages, since MiniLM truncates at 256 tokens).
  Embeddings are batched and cached by content; ``prepare`` embeds all queries of a run in one batch.
* ``Item2VecRanker`` — cosine between each track's item2vec vector (trained on TRAIN playlists) and the
  mean vector of the accepted (not rejected) tracks played so far; tracks without a vector (cold start)
  score below every warm track. With no accepted track yet, it falls back to popularity.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.evaluation.baselines is a module of the train package: import it, or use python -m")

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from talkplay.catalog import Catalog
from talkplay.textmatch import STOPWORDS, BM25Index, bm25_document, dense_document, tokenize  # noqa: F401 (one definition, shared with the engine)
from train.data.conversation_schema import Conversation, Message

TextEmbedderFn = Callable[[Sequence[str]], np.ndarray]


class Ranker(Protocol):
    """Scores every catalog track for a conversation turn."""

    name: str

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray: ...


# ---------------------------------------------------------------- helpers


def played_ids(history: Sequence[Message]) -> list[str]:
    """Track ids played so far (rejected ones included), in order."""
    return [m.content for m in history if m.role == "music"]


def accepted_ids(history: Sequence[Message]) -> list[str]:
    """Track ids played so far that the listener did not reject."""
    return [m.content for m in history if m.role == "music" and not m.rejected]


def conversation_text(history: Sequence[Message], max_chars: int | None = None) -> str:
    """User and assistant text so far, oldest first; with ``max_chars``, only the most recent whole
    messages that fit (always at least the last one, cut to ``max_chars``)."""
    texts = [m.content.strip() for m in history if m.role in ("user", "assistant")]
    if max_chars is None:
        return "\n".join(texts)
    kept: list[str] = []
    size = 0
    for t in reversed(texts):
        if kept and size + len(t) + 1 > max_chars:
            break
        kept.append(t if kept else t[-max_chars:])
        size += len(t) + 1
    return "\n".join(reversed(kept))


def exclude_played(scores: np.ndarray, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
    """``scores`` with already-played tracks set to −inf."""
    index = _index(catalog)
    out = np.asarray(scores, dtype=np.float64).copy()
    for tid in played_ids(history):
        if tid in index:
            out[index[tid]] = -np.inf
    return out


_INDEX_CACHE: dict[int, tuple[tuple[str, ...], dict[str, int]]] = {}


def _index(catalog: Catalog) -> dict[str, int]:
    ids = tuple(t.track_id for t in catalog.tracks)
    hit = _INDEX_CACHE.get(id(catalog))
    if hit is None or hit[0] != ids:
        hit = (ids, {t: i for i, t in enumerate(ids)})
        _INDEX_CACHE[id(catalog)] = hit
    return hit[1]


# ---------------------------------------------------------------- random / popularity


@dataclass(frozen=True)
class RandomRanker:
    """Uniform random scores, reproducible per (seed, history)."""

    seed: int = 0
    name: str = "random"

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        key = hashlib.sha256(json.dumps([[m.role, m.content] for m in history]).encode()).digest()
        rng = np.random.default_rng([self.seed, int.from_bytes(key[:8], "little")])
        return exclude_played(rng.random(len(catalog)), history, catalog)


@dataclass(frozen=True)
class PopularityRanker:
    """Scores = training frequency of each track (0 for unseen tracks)."""

    counts: Mapping[str, int]
    name: str = "popularity"

    @classmethod
    def from_training(cls, playlists: Iterable[Sequence[str]] = (),
                      conversations: Iterable[Conversation] = ()) -> PopularityRanker:
        """Count occurrences in training playlists (track-id sequences) and accepted conversation tracks."""
        counts: Counter[str] = Counter()
        for p in playlists:
            counts.update(p)
        for c in conversations:
            counts.update(m.content for m in c.messages if m.role == "music" and not m.rejected)
        return cls(dict(counts))

    def base_scores(self, catalog: Catalog) -> np.ndarray:
        return np.array([float(self.counts.get(t.track_id, 0)) for t in catalog.tracks])

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        return exclude_played(self.base_scores(catalog), history, catalog)


# ---------------------------------------------------------------- BM25


class BM25Ranker:
    """BM25 over track metadata with the conversation text so far as the query."""

    def __init__(self, k1: float = 1.5, b: float = 0.75, name: str = "bm25"):
        self.k1, self.b, self.name = k1, b, name
        self._fitted: tuple[tuple[str, ...], BM25Index] | None = None

    def index(self, catalog: Catalog) -> BM25Index:
        ids = tuple(t.track_id for t in catalog.tracks)
        if self._fitted is None or self._fitted[0] != ids:
            docs = [tokenize(bm25_document(t)) for t in catalog.tracks]
            self._fitted = (ids, BM25Index.build(docs, self.k1, self.b))
        return self._fitted[1]

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        s = self.index(catalog).score(tokenize(conversation_text(history)))
        return exclude_played(s, history, catalog)


# ---------------------------------------------------------------- dense


class DenseRanker:
    """Cosine similarity of text embeddings (tracks vs conversation so far).

    Args:
        embedder: callable texts → unit vectors, with an ``id`` attribute (default: MiniLM TextEmbedder,
            loaded on first use).
        cache_dir: on-disk embedding cache (``train.tokens.embeddings.EmbeddingCache``); None = memory only.
        max_query_chars: keep only the most recent whole messages that fit (MiniLM reads 256 tokens).
    """

    def __init__(self, embedder: TextEmbedderFn | None = None, cache_dir: str | os.PathLike | None = None,
                 max_query_chars: int = 1000, name: str = "dense"):
        self._embedder = embedder
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.max_query_chars = max_query_chars
        self.name = name
        self._tracks: tuple[tuple[str, ...], np.ndarray] | None = None
        self._queries: dict[str, np.ndarray] = {}
        self._cache = None

    @property
    def embedder(self) -> TextEmbedderFn:
        if self._embedder is None:
            from train.tokens.embeddings import TextEmbedder

            self._embedder = TextEmbedder()
        return self._embedder

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        from train.tokens.embeddings import EmbeddingCache, embed_texts

        if self._cache is None and self.cache_dir is not None:
            self._cache = EmbeddingCache(self.cache_dir)
        return embed_texts(list(texts), self.embedder, getattr(self.embedder, "id", "text"), self._cache)

    def track_vectors(self, catalog: Catalog) -> np.ndarray:
        ids = tuple(t.track_id for t in catalog.tracks)
        if self._tracks is None or self._tracks[0] != ids:
            self._tracks = (ids, self._embed([dense_document(t, names=True) for t in catalog.tracks]))
        return self._tracks[1]

    def query_text(self, history: Sequence[Message]) -> str:
        return conversation_text(history, self.max_query_chars) or " "

    def prepare(self, histories: Iterable[Sequence[Message]], catalog: Catalog) -> None:
        """Embed the catalog and every query of ``histories`` in batches (a speed-up; optional)."""
        self.track_vectors(catalog)
        texts = sorted({self.query_text(h) for h in histories} - set(self._queries))
        if texts:
            self._queries.update(zip(texts, self._embed(texts)))

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        text = self.query_text(history)
        q = self._queries.get(text)
        if q is None:
            q = self._queries[text] = self._embed([text])[0]
        s = self.track_vectors(catalog) @ q
        return exclude_played(s, history, catalog)


# ---------------------------------------------------------------- item2vec


class Item2VecRanker:
    """Next track from the accepted tracks played so far, in item2vec space; popularity when none yet."""

    COLD_SCORE = -2.0  # below any cosine: tracks without a vector rank after every warm track

    def __init__(self, vectors: Mapping[str, np.ndarray], fallback: PopularityRanker, name: str = "item2vec"):
        if not vectors:
            raise ValueError("Item2VecRanker needs item2vec vectors for at least one track")
        self.vectors = {k: np.asarray(v, np.float32) for k, v in vectors.items()}
        self.fallback = fallback
        self.name = name
        self._matrix: tuple[tuple[str, ...], np.ndarray, np.ndarray] | None = None

    @classmethod
    def train(cls, playlists: Sequence[Sequence[str]], fallback: PopularityRanker,
              cache_dir: str | os.PathLike | None = None, **item2vec_args) -> Item2VecRanker:
        """Train item2vec (``train.tokens.embeddings.item2vec``, its defaults) on training playlists, cached by
        content under ``cache_dir/item2vec``."""
        from train.tokens.embeddings import cached_item2vec, content_key

        key = content_key(json.dumps([list(p) for p in playlists]) + json.dumps(item2vec_args, sort_keys=True))
        path = Path(cache_dir) / "item2vec" / f"eval-{key[:32]}.npz" if cache_dir else None
        vectors = cached_item2vec(playlists, path, **item2vec_args)
        return cls(vectors, fallback)

    def _table(self, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
        ids = tuple(t.track_id for t in catalog.tracks)
        if self._matrix is None or self._matrix[0] != ids:
            dim = len(next(iter(self.vectors.values())))
            warm = np.array([i in self.vectors for i in ids])
            m = np.zeros((len(ids), dim), np.float32)
            for j, i in enumerate(ids):
                if warm[j]:
                    v = self.vectors[i]
                    m[j] = v / (np.linalg.norm(v) + 1e-8)
            self._matrix = (ids, m, warm)
        return self._matrix[1], self._matrix[2]

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        seeds = [t for t in accepted_ids(history) if t in self.vectors]
        if not seeds:
            return self.fallback.scores(history, catalog)
        m, warm = self._table(catalog)
        q = np.mean([self.vectors[t] / (np.linalg.norm(self.vectors[t]) + 1e-8) for t in seeds], axis=0)
        q /= np.linalg.norm(q) + 1e-8
        s = np.where(warm, m @ q, self.COLD_SCORE).astype(np.float64)
        return exclude_played(s, history, catalog)


# ---------------------------------------------------------------- construction

BASELINES = ("random", "popularity", "bm25", "dense", "item2vec")


def build_baselines(names: Sequence[str], train_playlists: Sequence[Sequence[str]],
                    train_conversations: Sequence[Conversation] = (), seed: int = 0,
                    cache_dir: str | os.PathLike | None = None,
                    text_embedder: TextEmbedderFn | None = None) -> dict[str, Ranker]:
    """Rankers by name, trained on TRAIN data only."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {', '.join(unknown)}: expected some of {', '.join(BASELINES)}")
    pop = PopularityRanker.from_training(train_playlists, train_conversations)
    out: dict[str, Ranker] = {}
    for n in names:
        if n == "random":
            out[n] = RandomRanker(seed)
        elif n == "popularity":
            out[n] = pop
        elif n == "bm25":
            out[n] = BM25Ranker()
        elif n == "dense":
            out[n] = DenseRanker(text_embedder, cache_dir)
        elif n == "item2vec":
            out[n] = Item2VecRanker.train(train_playlists, pop, cache_dir, seed=seed)
    return out

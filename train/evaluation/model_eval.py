"""The bundle's own model as evaluated systems (used by ``python -m train.evaluation.evaluate --systems … talkplay talkplay-paper``).

* ``talkplay`` — constrained mode: ranks every allowed track by the engine's ranking objective — the model's
  log-likelihood of its music tokens after the rendered conversation, plus the first stage's words, context and
  history terms (:meth:`talkplay.recommender.Recommender.rank`, ``method="shortlist"``: the model scores the tracks
  the first stage ranks highest — the same 8 as playing a track; the rest follow in first-stage order), so
  MRR/Hit/nDCG are comparable with the baselines (same turns, same tie policy).
* ``talkplay-paper`` — the paper's decoding: one span sampled freely per turn (T=1.0, top-p 0.9), every track
  scored by TalkPlay's weighted partial match against it (hierarchical for residual codes), with the
  exact / partial / none counts of those spans.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:  # run as a file: the imports below need the package
    raise SystemExit("train.evaluation.model_eval is a module of the train package: import it, or use python -m")

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from talkplay.catalog import Catalog
from talkplay.conversation import ConversationState, Turn
from talkplay.recommender import NAMED_HISTORY_SHARE, SHORTLIST, GenerationConfig, Recommender
from train.data.conversation_schema import Message


def state_from_history(history: Sequence[Message]) -> tuple[ConversationState, str]:
    """Conversation state for the complete turns of ``history`` and its final user message."""
    msgs = list(history)
    if not msgs or msgs[-1].role != "user":
        raise ValueError("history must end with a user message")
    state = ConversationState()
    for i in range(0, len(msgs) - 1, 3):
        user, music, assistant = msgs[i:i + 3]
        state.turns.append(Turn(user.content, music.content, assistant.content, "constrained", 0.0, ()))
        if music.rejected:
            state.rejected.add(music.content)
    return state, msgs[-1].content


class ModelRanker:
    """Adapter from :class:`Recommender` to the evaluation's ranker protocol (scores over the catalog)."""

    name = "talkplay"
    # as many as playing a track scores (talkplay.recommender.SHORTLIST): validation MRR was the same with the model
    # scoring 8, 16, 32 or 64 first-stage tracks, and 8 keeps 200 test conversations within an hour on two cores
    SHORTLIST = SHORTLIST

    def __init__(self, rec: Recommender):
        self.rec = rec

    def key(self) -> dict:
        """What the scores depend on besides the checkpoint and catalog (the evaluation's score-cache key)."""
        from dataclasses import asdict

        from talkplay.chat_session import version_of
        from talkplay.checkpoint import checkpoint_dir
        from talkplay import facts, intent, textmatch
        from talkplay.listening import LISTENING_FILE

        g = asdict(self.rec.generation)
        weights = self.rec.generation.first_weights()
        first = {"first_request": dict(weights)} if weights else {}  # absent when none (the keys made before it)
        return {"weights": {k: g[k] for k in ("model_weight", "prior_weight", "text_weight", "context_weight",
                                              "history_weight", "popularity_weight")}, **first,
                "shortlist": self.SHORTLIST,
                "named_history_share": NAMED_HISTORY_SHARE,
                "listening": version_of(checkpoint_dir(self.rec.catalog.root) / LISTENING_FILE),
                # the text match's reading (concepts, facts, scores) and whether its sentence embedder loaded
                "text_match": [version_of(Path(m.__file__)) for m in (textmatch, intent, facts)],
                "dense": self.rec.text_match().vectors is not None}

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        state, text = state_from_history(history)
        index = {t.track_id: i for i, t in enumerate(catalog.tracks)}
        out = np.full(len(catalog), -np.inf)
        for r in self.rec.rank(state, text, k=len(catalog), method="shortlist", shortlist=self.SHORTLIST):
            out[index[r.track_id]] = r.logprob
        return out


class PaperModeRanker:
    """The paper's decoding as a ranker: one freely sampled span per turn, every track scored by TalkPlay's
    weighted partial match against it (hierarchical for residual codes); counts exact/partial/none."""

    name = "talkplay-paper"

    def __init__(self, rec: Recommender, seed: int = 0, weights=None):
        self.rec, self.seed, self.weights = rec, seed, weights
        self.kinds: Counter = Counter()
        self.modalities: Counter = Counter()
        self._n = 0
        self._last: dict | None = None

    def turn_info(self) -> dict | None:
        """What the last ``scores`` call added to the counters (kept in the evaluation's score cache)."""
        return self._last

    def restore(self, info: dict | None) -> None:
        """Count a turn whose scores came from the cache as if it had just been sampled (same seeds after it)."""
        self._n += 1
        if info:
            self.kinds[info["kind"]] += 1
            self.modalities.update(info.get("modalities", []))

    def scores(self, history: Sequence[Message], catalog: Catalog) -> np.ndarray:
        from talkplay.matching import PAPER_WEIGHTS, match_scores

        state, text = state_from_history(history)
        self._n += 1
        chosen = self.rec.choose(state, text, generation=GenerationConfig(mode="paper", seed=self.seed + self._n,
                                                                          modality_weights=self.weights,
                                                                          music_temperature=None))  # the paper's T=1
        kind = {"fallback": "none"}.get(chosen.match, chosen.match)
        mods = list(chosen.matched_modalities) if chosen.match == "partial" else []
        self.kinds[kind] += 1
        self.modalities.update(mods)
        self._last = {"kind": kind, "modalities": mods}
        if chosen.match == "fallback":  # the free span matched nothing: no ranking evidence but the fallback
            out = np.zeros(len(catalog))
            out[[t.track_id for t in catalog.tracks].index(chosen.track.track_id)] = 1.0
            return out
        free_codes = self.rec.store.vocab.codes_for(chosen.tokens)
        by_row = match_scores(self.rec.store, free_codes, self.weights or PAPER_WEIGHTS)
        return np.asarray([by_row[self.rec.store.row(t.track_id)] if t.track_id in self.rec.store else 0.0
                           for t in catalog.tracks])

    def stats(self) -> dict:
        n = max(self._n, 1)
        return {"turns": self._n, "exact": self.kinds["exact"], "partial": self.kinds["partial"],
                "none": self.kinds["none"], "exact_rate": self.kinds["exact"] / n,
                "partial_modalities": dict(self.modalities)}


def paper_markdown(stats: dict) -> str:
    n = stats["turns"]
    return "\n".join([
        "## Paper-mode decoding: what freely sampled spans match", "",
        f"One span per evaluated turn ({n}), sampled without the catalog constraint (T=1.0, top-p 0.9), then matched; "
        "the `talkplay-paper` row ranks the catalog by each track's partial-match score against that span.", "",
        "| exact | partial | none (→ constrained fallback) | exact rate |",
        "|---|---|---|---|",
        f"| {stats['exact']} | {stats['partial']} | {stats['none']} | {stats['exact_rate']:.3f} |", "",
        "Modalities shared by partial matches: " + (", ".join(f"{k} {v}" for k, v in
                                                           sorted(stats["partial_modalities"].items())) or "–") + ".",
        "(The TalkPlay paper reports 49.7 % of its generations matching an item exactly.)", ""])

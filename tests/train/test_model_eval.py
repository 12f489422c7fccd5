"""The model as an evaluated system on the tiny fixture engine: history → state, full-catalog scores equal
to Recommender.rank, paper-mode statistics that add up."""

import numpy as np

from talkplay.conversation import ConversationState
from tests.talkplay.test_recommender import rec  # noqa: F401  (fixture)
from tests.train.test_sft import world  # noqa: F401  (fixture)
from train.data.conversation_schema import Message
from train.evaluation.evaluate import EvalTurn
from train.evaluation.model_eval import ModelRanker, PaperModeRanker, state_from_history

HISTORY = (Message("user", "play me some calm jazz please"), Message("music", "t1", rejected=True),
           Message("assistant", "here is Song 1 by Band 1"), Message("user", "not that, something upbeat"))


def test_state_from_history():
    state, text = state_from_history(HISTORY)
    assert text == "not that, something upbeat" and state.played == ["t1"] and state.rejected == {"t1"}
    assert [m.role for m in state.messages(text)] == ["user", "music", "assistant", "user"]


def test_model_ranker_scores_match_rank(rec, world):  # noqa: F811
    scores = ModelRanker(rec).scores(HISTORY, world["catalog"])
    ids = [t.track_id for t in world["catalog"].tracks]
    assert scores[ids.index("t1")] == -np.inf and np.isfinite(np.delete(scores, ids.index("t1"))).all()
    state, text = state_from_history(HISTORY)
    top = rec.rank(state, text, k=1)[0]
    assert ids[int(np.argmax(scores))] == top.track_id


def test_paper_mode_ranker_scores_and_counts(rec, world):  # noqa: F811
    from talkplay.matching import PAPER_WEIGHTS

    ranker = PaperModeRanker(rec, seed=3)
    for turn in [EvalTurn("c", 2, HISTORY, "t2", False), EvalTurn("c", 1, HISTORY[:1], "t1", False)] * 3:
        scores = ranker.scores(turn.history, world["catalog"])
        assert scores.shape == (len(world["catalog"]),) and scores.max() > 0
        assert scores.max() <= sum(PAPER_WEIGHTS[m.name] for m in rec.store.vocab.modalities
                                   if m.name in PAPER_WEIGHTS) + 1e-9
    stats = ranker.stats()
    assert stats["exact"] + stats["partial"] + stats["none"] == stats["turns"] == 6
    assert ConversationState().played == []

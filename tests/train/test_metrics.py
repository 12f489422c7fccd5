"""Rank metrics with one relevant item: hand-computed values, pessimistic ties, exclusion, aggregation."""

import math

import numpy as np
import pytest

from train.evaluation.metrics import (
    MetricSpec,
    hit_at_k,
    macro_over_conversations,
    macro_over_turns,
    mean_metrics,
    metrics_for_rank,
    ndcg_at_k,
    rank_of,
    reciprocal_rank,
)


def test_reciprocal_rank_and_hits():
    assert reciprocal_rank(1) == 1.0
    assert reciprocal_rank(4) == 0.25
    assert hit_at_k(1, 1) == 1.0
    assert hit_at_k(2, 1) == 0.0
    assert hit_at_k(10, 10) == 1.0
    assert hit_at_k(11, 10) == 0.0


def test_ndcg_single_relevant():
    assert ndcg_at_k(1, 1) == 1.0
    assert ndcg_at_k(2, 1) == 0.0
    assert ndcg_at_k(3, 10) == pytest.approx(0.5)  # 1/log2(4)
    assert ndcg_at_k(7, 10) == pytest.approx(1 / 3)  # 1/log2(8)
    assert ndcg_at_k(21, 20) == 0.0


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_bad_rank_is_named(bad):
    with pytest.raises(ValueError, match="rank"):
        reciprocal_rank(bad)


def test_rank_of_plain_and_pessimistic_ties():
    s = np.array([0.1, 0.9, 0.5, 0.5, 0.3])
    assert rank_of(s, 1) == 1
    assert rank_of(s, 4) == 4
    # targets 2 and 3 are tied: each ranks after the other
    assert rank_of(s, 2) == 3
    assert rank_of(s, 3) == 3
    assert rank_of(np.zeros(5), 0) == 5  # a constant scorer gets the worst rank
    assert rank_of(np.array([-np.inf, 1.0, -np.inf]), 0) == 3


def test_rank_of_exclusion():
    s = np.array([0.9, 0.8, 0.7, 0.1])
    mask = np.array([True, False, False, False])
    assert rank_of(s, 2, mask) == 2
    assert rank_of(s, 1, mask) == 1
    tie = np.array([0.5, 0.5, 0.5])
    assert rank_of(tie, 2, np.array([True, False, False])) == 2


def test_rank_of_errors_name_the_problem():
    with pytest.raises(ValueError, match="excluded"):
        rank_of(np.array([1.0, 2.0]), 0, np.array([True, False]))
    with pytest.raises(ValueError, match="target_index"):
        rank_of(np.array([1.0, 2.0]), 2)
    with pytest.raises(ValueError, match="NaN"):
        rank_of(np.array([1.0, np.nan]), 0)
    with pytest.raises(ValueError, match="exclude_mask"):
        rank_of(np.array([1.0, 2.0]), 0, np.array([False]))


def test_mean_metrics_hand_computed():
    # ranks 1, 2, 50, 200
    m = mean_metrics([1, 2, 50, 200])
    assert m["n"] == 4
    assert m["mrr"] == pytest.approx((1 + 0.5 + 0.02 + 0.005) / 4)
    assert m["hit@1"] == 0.25
    assert m["hit@10"] == 0.5
    assert m["hit@100"] == 0.75
    assert m["ndcg@1"] == 0.25
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["ndcg@20"] == m["ndcg@10"]
    assert set(MetricSpec().names) <= set(m)


def test_macro_over_turns_vs_conversations():
    ranks = {"a": [1, 1, 1], "b": [2]}
    turns = macro_over_turns(ranks)
    convs = macro_over_conversations(ranks)
    assert turns["mrr"] == pytest.approx((3 + 0.5) / 4)
    assert convs["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert (turns["n"], convs["n"]) == (4, 2)
    assert math.isnan(mean_metrics([])["mrr"])
    assert metrics_for_rank(3, MetricSpec(hits=(5,), ndcg=(2,))) == {"mrr": pytest.approx(1 / 3), "hit@5": 1.0,
                                                                     "ndcg@2": 0.0}

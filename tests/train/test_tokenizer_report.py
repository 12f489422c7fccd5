"""Report metrics on hand-computed cases: expected Hit@k under ties, hierarchical matching."""

import numpy as np
import pytest

from talkplay.token_store import TokenStore
from talkplay.tokens import ModalitySpec, MusicVocab
from train.tokens.tokenizer_report import expected_hit, hit_table, modality_scores, seeds_from


def test_expected_hit_without_ties():
    scores = np.array([5.0, 4.0, 3.0, 2.0])
    rel = np.array([False, False, True, False])
    assert expected_hit(scores, rel, 2) == 0.0 and expected_hit(scores, rel, 3) == 1.0


def test_expected_hit_with_ties():
    # one item above, then a tie of 4 with 1 relevant, k=2 → one slot among 4 → 1/4
    scores = np.array([9.0, 1.0, 1.0, 1.0, 1.0])
    rel = np.array([False, False, True, False, False])
    assert expected_hit(scores, rel, 2) == pytest.approx(0.25)
    # two slots, 2 relevant among 4 → 1 - C(2,2)/C(4,2) = 5/6
    rel2 = np.array([False, True, True, False, False])
    assert expected_hit(scores, rel2, 3) == pytest.approx(5 / 6)
    assert expected_hit(scores, np.zeros(5, bool), 3) == 0.0


def test_random_baseline_is_k_over_n():
    n, seeds = 11, [(0, np.array([3]))]
    table = hit_table(lambda s: np.zeros(n), n, seeds)
    assert table[5] == pytest.approx(5 / 10) and table[10] == pytest.approx(1.0)


def test_hierarchical_matching_counts_prefix_levels():
    vocab = MusicVocab([ModalitySpec("audio", 3, 4), ModalitySpec("playlist", 1, 4)])
    codes = np.array([[1, 2, 3, 0], [1, 2, 0, 0], [1, 0, 3, 1], [2, 2, 3, 0]])
    store = TokenStore(vocab, ["a", "b", "c", "d"], codes)
    assert modality_scores(store, "audio", 0).tolist() == [3, 2, 1, 0]  # c matches level 3 but not 2: counts 1
    assert modality_scores(store, "playlist", 0).tolist() == [1, 1, 0, 1]
    # a reserved "no data" code shared by two tracks is no evidence (the engine's rule, talkplay.matching)
    vocab = MusicVocab([ModalitySpec("lyrics", 2, 4, reserved=1)])
    store = TokenStore(vocab, ["a", "b", "c"], np.array([[0, 0], [0, 0], [2, 3]]))
    assert modality_scores(store, "lyrics", 0).tolist() == [0, 0, 0]
    assert modality_scores(store, "lyrics", 2).tolist() == [0, 0, 2]


def test_seeds_from_playlists():
    seeds = seeds_from([("a", "b", "x"), ("c",)], {"a": 0, "b": 1, "c": 2})
    assert [(s, r.tolist()) for s, r in seeds] == [(0, [1]), (1, [0])]


def test_expected_reciprocal_rank():
    from train.tokens.tokenizer_report import expected_reciprocal_rank

    scores = np.array([3.0, 2.0, 1.0])
    assert expected_reciprocal_rank(scores, np.array([False, True, False])) == pytest.approx(0.5)
    # one above, then a tie of 2 with 1 relevant: rank 2 or 3 with equal chance
    tie = np.array([5.0, 1.0, 1.0])
    assert expected_reciprocal_rank(tie, np.array([False, True, False])) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert expected_reciprocal_rank(np.zeros(4), np.array([True, True, False, False])) == pytest.approx(
        0.5 * 1 + (2 / 4) * (2 / 3) * 0.5 + (2 / 4) * (1 / 3) * 1 / 3)


def test_neighbour_relevance_window():
    seeds = seeds_from([("a", "b", "c", "d")], {t: i for i, t in enumerate("abcd")}, window=1)
    assert [(s, r.tolist()) for s, r in seeds] == [(0, [1]), (1, [0, 2]), (2, [1, 3]), (3, [2])]

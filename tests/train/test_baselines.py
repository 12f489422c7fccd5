"""Retrieval baselines and the turn-by-turn evaluator on a tiny hand-made catalog (hermetic, no model)."""

import json
import math
import re
import zlib

import numpy as np
import pytest

from talkplay.catalog import Track, save_catalog
from train.evaluation.baselines import (
    BM25Index,
    BM25Ranker,
    DenseRanker,
    Item2VecRanker,
    PopularityRanker,
    RandomRanker,
    build_baselines,
    conversation_text,
    tokenize,
)
from train.data.conversation_schema import Conversation, Message, write_conversations
from train.data.build import conversations_path
from train.evaluation.evaluate import eval_turns, evaluate_systems, markdown_report, write_report

SPECS = [("Midnight Harbor", "Blue Owls", ("jazz", "calm", "piano")),
         ("Iron Storm", "Steelheads", ("metal", "fast", "guitar")),
         ("Morning Dew", "Green Fields", ("folk", "calm", "acoustic")),
         ("Neon Pulse", "Circuit", ("electronic", "dance", "synth")),
         ("Old Accordion", "Village Band", ("folk", "accordion", "waltz")),
         ("Deep Space", "Orbit", ("ambient", "space", "synth"))]


@pytest.fixture
def catalog(tmp_path):
    tracks = [Track(track_id=f"t{i}", title=t, artist=a, license="MIT", attribution="c", source="user",
                    album=f"Album {i}", year=2000 + i, tags=tags, caption=f"A {tags[0]} piece.")
              for i, (t, a, tags) in enumerate(SPECS)]
    return save_catalog(tmp_path, tracks)


def turn(user, track, rejected=False, intent="open_genre"):
    title = SPECS[int(track[1:])][0]
    return [Message("user", user, intent=intent), Message("music", track, rejected=rejected),
            Message("assistant", f"Here is {title}.")]


def conv(cid, *turns, split="test"):
    return Conversation(cid, tuple(m for t in turns for m in t), split)


def user(text):
    return [Message("user", text)]


def test_bm25_ranks_the_typed_title_first(catalog):
    r = BM25Ranker()
    s = r.scores(user("please play midnight harbor"), catalog)
    assert int(np.argmax(s)) == 0
    s = r.scores(user("something with an accordion, a waltz"), catalog)
    assert int(np.argmax(s)) == 4
    assert r.scores(user("xyzzy"), catalog).tolist() == [0.0] * 6  # nothing matches: all tied


def test_bm25_formula_hand_checked():
    idx = BM25Index.build([["a", "b"], ["b", "b", "c", "d"]], k1=1.5, b=0.75)
    avg = 3.0
    idf_a = math.log(1 + (2 - 1 + 0.5) / (1 + 0.5))
    w = idf_a * 1 * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 2 / avg))
    assert idx.score(["a"]) == pytest.approx([w, 0.0])
    idf_b = math.log(1 + 0.5 / 2.5)
    wb = idf_b * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 4 / avg))
    assert idx.score(["b"])[1] == pytest.approx(wb)


def test_history_text_and_played_tracks_are_excluded(catalog):
    history = [*turn("calm jazz", "t0"), *user("more like that")]
    s = BM25Ranker().scores(history, catalog)
    assert s[0] == -np.inf  # played
    assert int(np.argmax(s)) == 2  # "calm" from the history still counts
    assert "calm jazz" in conversation_text(history)
    assert conversation_text(history, max_chars=20) == "more like that"
    assert tokenize("I'm playing THE Blues!") == ["playing", "blues"]


def test_popularity_ranks_by_train_frequency(catalog):
    pop = PopularityRanker.from_training([["t1", "t2"], ["t1", "t3"], ["t1", "t2"]],
                                         [conv("c", turn("x", "t3", rejected=True), turn("no", "t5"), split="train")])
    s = pop.scores(user("anything"), catalog)
    assert s.tolist() == [0, 3, 2, 1, 0, 1]  # the rejected t3 in the conversation does not count
    assert list(np.argsort(-s, kind="stable")[:3]) == [1, 2, 3]


def test_random_is_reproducible_and_seeded(catalog):
    h = user("hi")
    assert np.array_equal(RandomRanker(1).scores(h, catalog), RandomRanker(1).scores(h, catalog))
    assert not np.array_equal(RandomRanker(1).scores(h, catalog), RandomRanker(2).scores(h, catalog))


def test_item2vec_prefers_co_occurring_tracks(catalog):
    from itertools import permutations

    playlists = [list(p) for g in (("t0", "t1", "t2"), ("t3", "t4", "t5")) for p in permutations(g)] * 10
    pop = PopularityRanker.from_training([["t5", "t5", "t3"]])
    r = Item2VecRanker.train(playlists, pop, dim=8, window=2, negatives=2, epochs=30, lr=0.05, seed=0)
    s = r.scores([*turn("x", "t0"), *user("more")], catalog)
    assert s[0] == -np.inf and min(s[1], s[2]) > max(s[3:])
    s = r.scores([*turn("x", "t4"), *user("more")], catalog)
    assert min(s[3], s[5]) > max(s[:3])
    # only a rejected track so far: falls back to popularity
    s = r.scores([*turn("x", "t0", rejected=True), *user("no")], catalog)
    assert int(np.argmax(s)) == 5 and s[0] == -np.inf


def test_item2vec_cold_tracks_rank_after_warm_ones(catalog):
    vecs = {"t0": np.array([1.0, 0.0]), "t1": np.array([-1.0, 0.0]), "t2": np.array([0.0, 1.0])}
    r = Item2VecRanker(vecs, PopularityRanker({}))
    s = r.scores([*turn("x", "t2"), *user("more")], catalog)
    assert s[1] > s[3] and s[3] == s[4] == s[5]
    with pytest.raises(ValueError, match="item2vec vectors"):
        Item2VecRanker({}, PopularityRanker({}))


class FakeEmbedder:
    """Hashed bag of words: texts sharing words get similar unit vectors."""

    id = "fake-bow-64"

    def __init__(self):
        self.calls = []

    def __call__(self, texts):
        self.calls.append(len(texts))
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z]+", t.lower()):
                out[i, zlib.crc32(w.encode()) % 64] += 1
        return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-8)


def test_dense_ranker_with_injected_embedder_and_batching(catalog, tmp_path):
    emb = FakeEmbedder()
    r = DenseRanker(emb, cache_dir=tmp_path / "cache")
    histories = [user("an accordion waltz"), user("electronic dance synth")]
    r.prepare(histories, catalog)
    assert emb.calls == [6, 2]  # catalog in one batch, queries in one batch
    assert int(np.argmax(r.scores(histories[0], catalog))) == 4
    assert int(np.argmax(r.scores(histories[1], catalog))) == 3
    assert emb.calls == [6, 2]  # served from the prepared queries
    again = FakeEmbedder()
    DenseRanker(again, cache_dir=tmp_path / "cache").prepare(histories, catalog)
    assert again.calls == []  # on-disk cache


def test_build_baselines_names_unknown():
    with pytest.raises(ValueError, match="unknown baseline.*clap"):
        build_baselines(["bm25", "clap"], [])


class Fixed:
    """Prefers later catalog tracks: scores 0..5 in catalog order."""

    name = "fixed"

    def scores(self, history, catalog):
        return np.arange(len(catalog), dtype=float)


def test_evaluate_systems_hand_checked(catalog, tmp_path):
    c1 = conv("c1", turn("a", "t0"), turn("b", "t1", rejected=True), turn("no", "t2", intent="rejection"),
              turn("d", "t3"))
    c2 = conv("c2", turn("a", "t5"), turn("b", "t4"), turn("c", "t3"), turn("d", "t2"))
    write_conversations(conversations_path(tmp_path, "test"), [c1, c2])
    (tmp_path / "splits.json").write_text(json.dumps({"cold_start_track_ids": ["t3"]}))
    turns, skipped = eval_turns([c1, c2], {"t3"})
    assert skipped == 1 and [t.turn for t in turns] == [1, 3, 4, 1, 2, 3, 4]
    assert turns[1].history[-1].content == "no" and turns[1].history[-2].role == "assistant"

    result = evaluate_systems(tmp_path, {"fixed": Fixed()})
    # c1: t0 ranks 6; t2 with t0,t1 played → 4 candidates, rank 4; t3 → rank 3. c2: always rank 1.
    r = result["systems"]["fixed"]
    assert (result["turns"], result["conversations"], result["skipped_rejected_turns"]) == (7, 2, 1)
    assert r["macro_over_turns"]["mrr"] == pytest.approx((1 / 6 + 1 / 4 + 1 / 3 + 4) / 7)
    assert r["macro_over_conversations"]["mrr"] == pytest.approx(((1 / 6 + 1 / 4 + 1 / 3) / 3 + 1) / 2)
    assert r["macro_over_turns"]["hit@1"] == pytest.approx(4 / 7)
    assert r["macro_over_turns"]["ndcg@10"] == pytest.approx(
        (1 / math.log2(7) + 1 / math.log2(5) + 1 / math.log2(4) + 4) / 7)
    assert r["cold"]["n"] == 2 and r["cold"]["mrr"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["warm"]["n"] == 5
    assert [(b["turn"], b["n"]) for b in r["by_turn"]] == [(1, 2), (2, 1), (3, 2), (4, 2)]
    assert r["by_turn"][0]["mrr"] == pytest.approx((1 / 6 + 1) / 2)
    assert r["coverage"]["top1_distinct"] == 4  # t5 (×4), t4, t3, t2
    assert r["coverage"]["top1_most_common"] == "t5"
    assert "not available" in result["not_available"]["audio-text"]

    js, md = write_report(result, tmp_path / "reports")
    assert json.loads(js.read_text())["systems"]["fixed"]["warm"]["n"] == 5
    text = md.read_text()
    assert "| fixed |" in text and "audio-text baseline: not available" in text
    assert markdown_report(result) == text
    assert evaluate_systems(tmp_path, {"fixed": Fixed()}, max_conversations=1)["turns"] == 3


def test_evaluate_names_a_bad_ranker(catalog, tmp_path):
    c = conv("c1", turn("a", "t0"), turn("b", "t1"), turn("c", "t2"), turn("d", "t3"))
    write_conversations(conversations_path(tmp_path, "test"), [c])

    class Short:
        name = "short"

        def scores(self, history, catalog):
            return np.zeros(2)

    with pytest.raises(ValueError, match="'short' returned shape"):
        evaluate_systems(tmp_path, {"short": Short()})


def test_score_cache_resumes_a_killed_run(catalog, tmp_path):
    """A model system's per-turn scores are appended as they are computed; a rerun reads them back
    (a torn last line from a kill is recomputed) and gives the same metrics without calling the ranker."""
    from train.evaluation.evaluate import ScoreCache

    c = conv("c1", turn("a", "t0"), turn("b", "t1"), turn("c", "t2"), turn("d", "t3"))
    write_conversations(conversations_path(tmp_path, "test"), [c])

    class Counting(Fixed):
        calls = 0

        def scores(self, history, catalog):
            Counting.calls += 1
            return super().scores(history, catalog)

    path = tmp_path / "scores.jsonl"
    first = evaluate_systems(tmp_path, {"m": Counting()}, score_cache=lambda name: ScoreCache(path))
    assert Counting.calls == 4 and len(path.read_text().splitlines()) == 4
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])  # killed mid-write
    again = evaluate_systems(tmp_path, {"m": Counting()}, score_cache=lambda name: ScoreCache(path))
    assert Counting.calls == 6 and again["systems"]["m"]["turns_from_cache"] == 2
    assert again["systems"]["m"]["macro_over_turns"] == first["systems"]["m"]["macro_over_turns"]


def test_readme_results_are_generated_from_the_reports(tmp_path):
    from train.evaluation.results import BEGIN, END, update

    result = {"catalog": "x", "split": "test", "conversations": 1, "turns": 1, "cold_turns": 0, "tracks": 6,
              "command": "python -m train.evaluation.evaluate --catalog catalog/x",
              "systems": {"bm25": {"macro_over_turns": {"mrr": 0.5, "hit@1": 0.0, "hit@10": 1.0, "hit@100": 1.0,
                                                        "ndcg@10": 0.63}, "cold": {"n": 0},
                                   "coverage": {"top1_coverage": 0.17}}}}
    (tmp_path / "eval_demo.json").write_text(json.dumps(result))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nstale numbers\n{END}\nrest\n")
    assert update(readme, tmp_path) is True
    text = readme.read_text()
    assert "| BM25 | 0.500 | 0.000 | 1.000 | 1.000 | 0.630 | — | 0.17 |" in text
    assert "bench.json missing" in text and text.endswith(f"{END}\nrest\n") and "stale" not in text
    assert update(readme, tmp_path) is False


def test_paired_bootstrap_hand_checked_and_pairs_turns():
    from train.evaluation.evaluate import paired_bootstrap

    a = [["c1", 1, 1], ["c1", 2, 2], ["c2", 1, 4]]  # reciprocal ranks 1, .5, .25: MRR 0.5833
    b = [["c1", 1, 2], ["c1", 2, 2], ["c2", 1, 4]]  # .5, .5, .25: MRR 0.4167
    r = paired_bootstrap(a, b, resamples=500)
    assert r["n_turns"] == 3 and r["n_conversations"] == 2
    assert r["mrr_a"] == pytest.approx(1.75 / 3) and r["mrr_b"] == pytest.approx(1.25 / 3)
    assert r["difference"] == pytest.approx(0.5 / 3)
    lo, hi = r["ci95"]
    # resampling conversations: c2 alone differs by 0, c1 alone by .25; every resample lies between
    assert 0.0 <= lo <= r["difference"] <= hi <= 0.25 + 1e-12
    assert paired_bootstrap(a, b, ratio=2.0)["difference"] == pytest.approx((1.75 - 2.5) / 3)
    first = paired_bootstrap(a, b, first_only=True)
    assert first["n_turns"] == 2 and first["mrr_a"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="different turns"):
        paired_bootstrap(a, b[:2])


def test_evaluate_compares_the_model_with_its_best_baseline(catalog, tmp_path):
    c2 = conv("c2", turn("a", "t5"), turn("b", "t4"), turn("c", "t3"), turn("d", "t2"))
    write_conversations(conversations_path(tmp_path, "test"), [c2])
    result = evaluate_systems(tmp_path, {"talkplay": Fixed(), "same": Fixed()})
    c = result["comparison"]["talkplay"]
    assert c["all"]["best_baseline"] == "same" and c["all"]["vs_best"]["difference"] == 0.0
    assert c["first"]["vs_best"]["n_turns"] == 1 and c["first"]["goal_ratio"] == 1.5
    assert "ranks" not in result["systems"]["talkplay"]
    assert "paired bootstrap" in markdown_report(result)

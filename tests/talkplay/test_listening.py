"""What the conversation so far says (talkplay.listening): closeness to the kept tracks, the conversation's words,
and the engine's ranking objective built from them (first stage → the model scores the best of it)."""

from dataclasses import replace

import numpy as np
import pytest

from talkplay.conversation import ConversationState, Turn
from talkplay.listening import LISTENING_FILE, Listening, context_scores
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from talkplay.textmatch import BM25Index
from tests.worlds import make_model


def test_history_is_closeness_to_the_kept_tracks_and_unknown_tracks_are_neutral(tmp_path):
    ids = ["a", "b", "c", "d"]
    vectors = {"a": np.array([1.0, 0.0]), "b": np.array([0.9, 0.1]), "c": np.array([0.0, 1.0])}  # d: none
    lis = Listening.from_vectors(ids, vectors)
    assert lis.known.tolist() == [True, True, True, False]
    h = lis.history([0])
    assert h[1] > h[2] and h[3] == 0.0  # b sits next to a, c far; d has no vector: neutral
    assert abs(h[:3].mean()) < 1e-9  # z-scored over the tracks with a vector
    assert not lis.history([]).any() and not lis.history([3]).any()  # nothing kept with a vector: no evidence
    path = tmp_path / LISTENING_FILE
    np.savez(path, ids=np.array(["c", "a", "b"]), vectors=np.stack([vectors[k] for k in "cab"]))
    np.testing.assert_allclose(Listening.load(path, ids).history([0]), h)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz"):
        Listening.load(tmp_path / "bad.npz", ids)
    with pytest.raises(ValueError, match="'b'"):
        Listening.from_vectors(ids, {"a": np.ones(2), "b": np.ones(3)})


def test_context_is_bm25_of_the_whole_conversation():
    index = BM25Index.build([["folk", "flute"], ["metal", "guitar"], ["folk", "guitar"]])
    s = context_scores(index, ["folk", "flute", "another"])
    assert s.argmax() == 0 and s[1] == s.min()
    assert not context_scores(index, []).any()


def _engine(world, **weights):
    catalog, store = world["catalog"], world["store"]
    ids = store.track_ids
    rng = np.random.default_rng(0)
    vecs = {t: rng.normal(size=8) for t in ids}
    vecs[ids[1]] = vecs[ids[0]] + 0.01 * rng.normal(size=8)  # track 1 is track 0's neighbour
    config = GenerationConfig(max_reply_tokens=2, temperature=0.0, **weights)
    return Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], catalog, store,
                       config, RenderConfig(max_tokens=512), listening=Listening.from_vectors(ids, vecs)), ids


def test_the_kept_tracks_pull_their_neighbour_to_the_top(world):  # noqa: F811
    rec, ids = _engine(world, history_weight=1000.0)
    state = ConversationState([Turn("something", ids[0], "ok", "constrained", 0.0, ())])
    for method in ("exhaustive", "shortlist"):
        assert rec.rank(state, "another one", k=1, method=method)[0].track_id == ids[1]
    assert rec.choose(state, "another one").track.track_id == ids[1]  # playing maximizes the same objective
    state.rejected.add(ids[0])  # a rejected track is not a kept one: nothing pulls
    assert rec.first_stage(state, "another one", rec.generation) is None
    off = GenerationConfig(history_weight=0.0)
    assert rec.first_stage(ConversationState(state.turns), "another one", off) is None


def test_the_shortlist_ranking_scores_the_first_stage_best_with_the_model(world):  # noqa: F811
    rec, ids = _engine(world)
    state = ConversationState([Turn("calm piano", ids[0], "ok", "constrained", 0.0, ())])
    full = rec.rank(state, "more calm piano", k=len(ids), method="exhaustive")
    short = rec.rank(state, "more calm piano", k=len(ids), method="shortlist", shortlist=len(ids))
    assert [r.track_id for r in full] == [r.track_id for r in short]  # a shortlist of every track: the same
    two = rec.rank(state, "more calm piano", k=len(ids), method="shortlist", shortlist=2)
    stage = rec.first_stage(state, "more calm piano", rec.generation)
    allowed = [i for i in range(len(ids)) if ids[i] != ids[0]]
    best2 = {ids[i] for i in sorted(allowed, key=lambda i: -stage[i])[:2]}
    assert {r.track_id for r in two[:2]} == best2  # the model reorders the shortlist only
    with pytest.raises(ValueError, match="model_weight"):
        GenerationConfig(model_weight=0.0)


def test_popularity_is_neutral_for_unseen_tracks_and_codes_place_tracks_without_a_vector(tmp_path):
    ids = ["a", "b", "c"]
    lis = Listening.from_vectors(ids, {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 1.0])},
                                 counts={"a": 50, "b": 2}, fallback=np.array([[0, 0], [0, 0], [0.9, 0.2]]))
    assert lis.popularity[0] > 0 > lis.popularity[1] and lis.popularity[2] == 0.0  # c: never seen, not unpopular
    assert lis.known.all() and lis.from_codes.tolist() == [False, False, True]
    h = lis.history([0])
    assert h[2] > h[1]  # c's codes place it next to a
    path = tmp_path / LISTENING_FILE
    np.savez(path, ids=np.array(ids[:2]), vectors=np.eye(2), counts=np.array([50.0, 2.0]))
    np.testing.assert_allclose(Listening.load(path, ids).popularity, lis.popularity)
    np.savez(path, ids=np.array(ids[:2]), vectors=np.eye(2), counts=np.array([1.0]))
    with pytest.raises(ValueError, match="counts"):
        Listening.load(path, ids)


def test_code_vectors_sum_the_playlist_centroids_and_undo_the_preprocessing(tmp_path):
    from types import SimpleNamespace

    from safetensors.numpy import save_file

    from talkplay.listening import code_vectors
    from talkplay.token_store import QUANTIZERS_FILE
    from talkplay.tokens import Position

    positions = (Position("semantic", 1), Position("playlist", 1), Position("playlist", 2))
    cen = {"playlist1": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
           "playlist2": np.array([[0.1, 0.0], [0.0, 0.1]], np.float32)}
    codes = np.array([[5, 0, 1], [5, 1, 0]])
    store = SimpleNamespace(centroids=lambda: cen, vocab=SimpleNamespace(positions=positions), codes=codes,
                            root=tmp_path)
    assert code_vectors(store) is None  # no preprocessing state to undo: nothing rebuilt
    save_file({"playlist.prep.mean": np.array([0.5, -0.5], np.float32),
               "playlist.prep.scale": np.array([2.0], np.float32)}, str(tmp_path / QUANTIZERS_FILE))
    np.testing.assert_allclose(code_vectors(store), [[2.5, -0.3], [0.7, 1.5]], rtol=1e-6)  # (sum) · 2 + mean
    assert code_vectors(SimpleNamespace(centroids=dict, vocab=store.vocab, codes=codes, root=tmp_path)) is None


def test_playing_maximizes_the_ranking_objective_at_the_default_weights(world):  # noqa: F811
    rec, ids = _engine(world)
    for kept in ([], [ids[0]], [ids[2], ids[3]]):
        state = ConversationState([Turn("calm piano", t, "ok", "constrained", 0.0, ()) for t in kept])
        for text in ("more calm piano", "another one", "upbeat song with drums"):
            top = rec.rank(state, text, k=1, method="shortlist")[0].track_id
            assert rec.choose(state, text).track.track_id == top, (kept, text)


def test_a_named_search_halves_the_kept_tracks_pull(world, monkeypatch):  # noqa: F811
    from talkplay.recommender import NAMED_HISTORY_SHARE

    rec, ids = _engine(world)
    tag = "piano"
    match = rec.text_match()  # the reading itself is test_textmatch's; here: what the engine does with it
    monkeypatch.setattr(match, "names_a_search", lambda text: text == f"now some {tag}")
    monkeypatch.setattr(match, "has_evidence", lambda text, first_turn, concepts=True: True)
    state = ConversationState([Turn("something", ids[0], "ok", "constrained", 0.0, ())])
    full = rec.listening.history([rec.store.row(ids[0])])
    named = rec.first_stage_terms(state, f"now some {tag}")["history"]
    np.testing.assert_allclose(named, NAMED_HISTORY_SHARE * full)
    np.testing.assert_allclose(rec.first_stage_terms(state, "another one")["history"], full)


def test_a_first_request_is_ranked_with_its_own_weights(world, monkeypatch):  # noqa: F811
    catalog, store = world["catalog"], world["store"]
    ids = store.track_ids
    rng = np.random.default_rng(0)
    counts = {t: 1.0 for t in ids}
    counts[ids[3]] = 1000.0  # by far the most played in the training playlists
    lis = Listening.from_vectors(ids, {t: rng.normal(size=8) for t in ids}, counts=counts)
    config = GenerationConfig(max_reply_tokens=2, temperature=0.0, popularity_weight=0.0, history_weight=0.0,
                              context_weight=0.0, first_request={"popularity_weight": 1000.0})
    rec = Recommender(make_model(world["tokenizer"], world["n_old"]).eval(), world["tokenizer"], catalog, store,
                      config, RenderConfig(max_tokens=512), listening=lis)
    first, later = ConversationState(), ConversationState([Turn("calm piano", ids[0], "ok", "constrained", 0.0, ())])
    assert config.for_state(first).popularity_weight == 1000.0 and config.for_state(later) is config
    assert rec.rank(first, "calm piano", k=1, method="exhaustive")[0].track_id == ids[3]
    assert rec.choose(first, "calm piano").track.track_id == ids[3]  # playing weighs it the same way
    assert rec.chat(ConversationState(), "calm piano").track_id == ids[3]  # and so does a whole turn
    turned_down = ConversationState([Turn("calm piano", ids[3], "ok", "constrained", 0.0, ())])
    turned_down.rejected.add(ids[3])
    assert config.for_state(turned_down) is config  # a turned-down track was played: no longer a first request
    plain = replace(config, first_request=None)  # without: a first request is weighed like any other
    assert plain.for_state(first) is plain
    once = config.for_state(first)
    assert once.first_request is None and once.for_state(first) is once  # applying it twice is applying it once
    boosted = {r.track_id: r.logprob for r in rec.rank(first, "calm piano", k=len(ids), method="exhaustive")}
    weighed = {r.track_id: r.logprob for r in rec.rank(first, "calm piano", k=len(ids), method="exhaustive",
                                                          generation=plain)}
    np.testing.assert_allclose([boosted[t] - weighed[t] for t in ids], 1000.0 * lis.popularity, rtol=1e-4, atol=1e-3)
    assert hash(config) == hash(GenerationConfig(max_reply_tokens=2, temperature=0.0, popularity_weight=0.0,
                                                 history_weight=0.0, context_weight=0.0,
                                                 first_request=(("popularity_weight", 1000.0),)))
    import talkplay.recommender as engine

    monkeypatch.setattr(engine, "FIRST_REQUEST", (("popularity_weight", 2.0),))  # a catalog's chosen weights
    auto = GenerationConfig()
    assert auto.first_request == "auto" and auto.first_weights() == (("popularity_weight", 2.0),)  # its own
    assert GenerationConfig(seed=1).first_weights() == (("popularity_weight", 2.0),)  # weights untouched: still
    assert GenerationConfig(text_weight=0.0).first_weights() is None  # weights set by hand weigh every turn
    assert replace(auto, text_weight=0.0).first_weights() is None  # however they were set
    monkeypatch.setattr(engine, "FIRST_REQUEST", None)
    assert auto.first_weights() is None and auto.for_state(first).popularity_weight == auto.popularity_weight
    with pytest.raises(ValueError, match="first_request.*unknown weight.*history_weight"):
        GenerationConfig(first_request={"history_weight": 1.0})  # a first request has no kept tracks to weigh
    with pytest.raises(ValueError, match="first_request.*popularity_weight -1"):
        GenerationConfig(first_request={"popularity_weight": -1.0})


def test_something_like_a_title_plays_its_neighbour_not_the_title(world):  # noqa: F811
    rec, ids = _engine(world, history_weight=1000.0)
    title = rec.catalog[ids[0]].title
    text = f"something like {title}"
    assert rec.referenced_ids(text) == (ids[0],) and rec.referenced_ids(f"play {title}") == ()
    ranked = [r.track_id for r in rec.rank(ConversationState(), text, k=len(ids), method="exhaustive")]
    assert ids[0] not in ranked and ranked[0] == ids[1]  # the measure is not played; its playlist neighbour leads
    assert rec.choose(ConversationState(), text).track.track_id == ids[1]
    later = ConversationState([Turn("calm piano", ids[2], "ok", "constrained", 0.0, ())])
    assert rec.choose(later, text).track.track_id == ids[1]  # the named measure, not the track kept before

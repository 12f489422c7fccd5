"""Constrained decoding (talkplay.trie, talkplay.constraints) and fallback matching (talkplay.matching).

Hermetic: hand-made token stores and a tiny random Llama whose tokenizer is expanded with music tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from talkplay.constraints import MusicSpanConstraint
from talkplay.trie import CatalogTrie, ExcludeTracks, NoAllowedTrack, TokenIdMap, resolve
from talkplay.expansion import expand_model, expand_tokenizer, music_token_ids
from talkplay.matching import PAPER_WEIGHTS, match
from talkplay.token_store import TokenStore
from talkplay.tokens import ModalitySpec, MusicVocab
from tests import tiny_lm

SENTENCES = ["play me some calm jazz please", "I like piano music at night", "recommend a song with loud drums"]

# semantic1 semantic2 audio1 audio2 dis
RESIDUAL = MusicVocab([ModalitySpec("semantic", 2, 4), ModalitySpec("audio", 2, 4), ModalitySpec("dis", 1, 4)])
CODES = np.array([
    [0, 0, 0, 0, 0],  # t0
    [0, 0, 0, 0, 1],  # t1  same tuple as t0 but for dis
    [0, 0, 1, 2, 0],  # t2
    [0, 1, 3, 3, 0],  # t3
    [1, 0, 0, 0, 0],  # t4
    [1, 0, 0, 1, 0],  # t5
    [1, 2, 2, 2, 0],  # t6
    [2, 3, 1, 1, 0],  # t7
    [2, 3, 1, 1, 1],  # t8
    [2, 3, 1, 1, 2],  # t9
    [3, 3, 3, 3, 0],  # t10
    [0, 1, 3, 0, 0],  # t11
])
TRACKS = [f"t{i}" for i in range(len(CODES))]
TUPLES = {tuple(int(c) for c in row): t for row, t in zip(CODES, TRACKS)}


@pytest.fixture(scope="module")
def store():
    return TokenStore(RESIDUAL, TRACKS, CODES)


@pytest.fixture(scope="module")
def trie(store):
    return CatalogTrie(store)


# ---------------------------------------------------------------------------------------------- trie


def allowed(trie, prefix, exclude=None):
    return trie.allowed(prefix, exclude).tolist()


def test_trie_allowed_sets_are_exact(trie):
    assert allowed(trie, []) == [0, 1, 2, 3]
    assert allowed(trie, [0]) == [0, 1]
    assert allowed(trie, [0, 0]) == [0, 1]
    assert allowed(trie, [0, 0, 0]) == [0]
    assert allowed(trie, [0, 0, 0, 0]) == [0, 1]
    assert allowed(trie, [0, 1]) == [3]
    assert allowed(trie, [0, 1, 3]) == [0, 3]
    assert allowed(trie, [1]) == [0, 2]
    assert allowed(trie, [1, 0, 0]) == [0, 1]
    assert allowed(trie, [2, 3, 1, 1]) == [0, 1, 2]
    assert allowed(trie, [3]) == [3]
    assert allowed(trie, [3, 0]) == [] and allowed(trie, [9]) == []
    with pytest.raises(ValueError, match="complete"):
        trie.allowed([0, 0, 0, 0, 0])


def test_trie_matches_brute_force_on_random_store():
    rng = np.random.default_rng(1)
    vocab = MusicVocab([ModalitySpec("audio", 3, 5), ModalitySpec("dis", 1, 3)])
    codes = rng.integers(0, 3, size=(300, 4))
    s = TokenStore(vocab, [f"r{i}" for i in range(300)], codes)
    exclude = ExcludeTracks(played=frozenset(f"r{i}" for i in range(0, 300, 3)))
    t = CatalogTrie(s)
    alive = np.array([f"r{i}" not in exclude for i in range(300)])
    for row in codes[:40]:
        for k in range(4):
            under = (codes[:, :k] == row[:k]).all(axis=1)
            assert t.allowed(row[:k]).tolist() == sorted(set(codes[under, k].tolist()))
            assert t.allowed(row[:k], exclude).tolist() == sorted(set(codes[under & alive, k].tolist()))
            assert t.rows(row[:k], exclude).tolist() == np.flatnonzero(under & alive).tolist()


def test_excluded_tracks_prune_branches(trie):
    assert allowed(trie, [], ExcludeTracks(played=frozenset({"t10"}))) == [0, 1, 2]
    only_t0 = ExcludeTracks(rejected=frozenset({"t0"}))
    assert allowed(trie, [0, 0, 0, 0], only_t0) == [1] and allowed(trie, [0, 0, 0], only_t0) == [0]
    both = only_t0.with_played("t1")
    assert allowed(trie, [0, 0], both) == [1] and allowed(trie, [0, 0, 0], both) == []
    assert allowed(trie, [], ExcludeTracks(played=frozenset({"not-in-store"}))) == [0, 1, 2, 3]
    assert allowed(trie, [], ExcludeTracks(played=frozenset(TRACKS))) == []


def test_resolve(store):
    assert resolve(store, [2, 3, 1, 1, 1]) == "t8"
    with pytest.raises(KeyError, match=r"\(3, 3, 3, 3, 1\)"):
        resolve(store, [3, 3, 3, 3, 1])
    with pytest.raises(KeyError, match="non-excluded"):
        resolve(store, [3, 3, 3, 3, 0], ExcludeTracks(played=frozenset({"t10"})))
    dup = TokenStore(RESIDUAL, ["a", "b"], np.zeros((2, 5), dtype=np.int64))
    assert resolve(dup, [0] * 5) == "a" and resolve(dup, [0] * 5, ExcludeTracks(rejected=frozenset({"a"}))) == "b"


# ---------------------------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def lm():
    tokenizer = tiny_lm.make_tokenizer(SENTENCES)
    n_old = len(tokenizer)
    expand_tokenizer(tokenizer, RESIDUAL.special_tokens())
    model = tiny_lm.make_llama(n_old, hidden=32, tied=True, max_positions=128).eval()
    expand_model(model, n_old, music_token_ids(tokenizer, RESIDUAL), seed=0)
    return tokenizer, model, TokenIdMap.build(tokenizer, RESIDUAL)


def prompt_ids(tokenizer, ids, text="play me some calm jazz please"):
    return tokenizer.encode(text, add_special_tokens=False) + [ids.start_id]


def generated_span(ids, new):
    """Codes of the span at the start of ``new`` (asserting it is complete)."""
    n = ids.n_positions
    assert new[n] == ids.end_id, new
    return tuple(c for _, c in ids.decode(new[:n]))


def generate(model, tokenizer, prompt, processors, max_new_tokens=6, **kw):
    x = torch.tensor([prompt])
    with torch.no_grad():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
                             logits_processor=LogitsProcessorList(processors),
                             pad_token_id=tokenizer.pad_token_id, **kw)
    return out[:, len(prompt):].tolist()


def test_token_id_map(lm):
    tokenizer, _, ids = lm
    vocab = tokenizer.get_vocab()
    assert ids.start_id == vocab["<start_of_music>"] and ids.end_id == vocab["<end_of_music>"]
    assert ids.position_ids[2][3] == vocab["<|audio1-3|>"]
    assert ids.decode([vocab["<|dis-2|>"]]) == [(4, 2)]
    with pytest.raises(ValueError, match=f"token id {ids.start_id} is not a music-code token"):
        ids.decode([ids.start_id])
    with pytest.raises(ValueError, match="expected"):
        TokenIdMap.from_ids([1, 2, 3], RESIDUAL)


class Boost(LogitsProcessor):
    """Pushes ``token_ids[i]`` far above everything else at new step i (a model that wants them)."""

    def __init__(self, prompt_length, token_ids):
        self.prompt_length, self.token_ids = prompt_length, [int(i) for i in token_ids]

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        scores = scores.clone()
        if step < len(self.token_ids):
            scores[:, self.token_ids[step]] += 1000.0
        return scores


def test_greedy_follows_catalog_even_against_the_model(lm, trie):
    tokenizer, model, ids = lm
    prompt = prompt_ids(tokenizer, ids)
    # Unconstrained the model would say semantic (3, 0): not in the catalog (only t10 starts with 3).
    wanted = [int(ids.position_ids[0][3]), int(ids.position_ids[1][0])]
    free = generate(model, tokenizer, prompt, [Boost(len(prompt), wanted)], max_new_tokens=2)[0]
    assert free == wanted
    new = generate(model, tokenizer, prompt, [Boost(len(prompt), wanted), MusicSpanConstraint(ids, trie)])[0]
    assert generated_span(ids, new) == (3, 3, 3, 3, 0) and TUPLES[generated_span(ids, new)] == "t10"


def test_sampled_spans_are_catalog_tuples_over_many_seeds(lm, trie, store):
    tokenizer, model, ids = lm
    prompt = prompt_ids(tokenizer, ids)
    exclude = ExcludeTracks(played=frozenset({"t0", "t7"}), rejected=frozenset({"t10", "t3"}))
    processors = [MusicSpanConstraint(ids, trie, exclude)]
    seen = set()
    for seed in range(100):  # 100 seeds × 2 sequences = 200 sampled spans
        torch.manual_seed(seed)
        for new in generate(model, tokenizer, prompt, processors, do_sample=True, temperature=3.0, top_k=0,
                            num_return_sequences=2):
            codes = generated_span(ids, new)
            track = resolve(store, codes, exclude)
            assert codes in TUPLES and track not in exclude
            seen.add(track)
    assert len(seen) >= 5, seen  # sampling really explores the catalog
    torch.manual_seed(0)
    greedy = generate(model, tokenizer, prompt, processors)[0]
    assert resolve(store, generated_span(ids, greedy)) not in exclude


def check_later_spans(ids, store, exclude, tokens):
    """Every span opened later in the generation is an allowed catalog track (music ids outside a span are the
    reply rule's business, tested on the engine: tests/talkplay/test_recommender.py)."""
    span = None
    for t in tokens:
        if span is None:
            span = [] if t == ids.start_id else None
        elif t == ids.end_id:
            assert resolve(store, [c for _, c in ids.decode(span)], exclude) not in exclude
            span = None
        else:
            span.append(t)


def test_prompt_with_earlier_spans_and_batched_rows(lm, trie, store):
    tokenizer, model, ids = lm
    history = tokenizer.encode("I like piano music at night " + RESIDUAL.span(CODES[3]) + " and "
                               + RESIDUAL.span(CODES[8]) + " recommend a song", add_special_tokens=False)
    rows = [history + [ids.start_id], prompt_ids(tokenizer, ids)]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    x = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    exclude = ExcludeTracks(played=frozenset({"t3", "t8"}))
    procs = LogitsProcessorList([MusicSpanConstraint(ids, trie, exclude)])
    for seed in range(10):
        torch.manual_seed(seed)
        out = model.generate(x, attention_mask=mask, max_new_tokens=10, logits_processor=procs, do_sample=True,
                             temperature=3.0, top_k=0, pad_token_id=pad)[:, width:].tolist()
        for new in out:
            assert resolve(store, generated_span(ids, new), exclude) not in exclude
            check_later_spans(ids, store, exclude, new[ids.n_positions + 1:])
    # Outside any span the constraint is a no-op.
    plain = torch.tensor([tokenizer.encode("play me", add_special_tokens=False)])
    scores = torch.zeros(1, len(tokenizer))
    assert torch.equal(MusicSpanConstraint(ids, trie)(plain, scores), scores)


def test_inside_a_span_only_allowed_ids_survive(lm, trie):
    tokenizer, _, ids = lm
    base = prompt_ids(tokenizer, ids)
    proc = MusicSpanConstraint(ids, trie)
    scores = torch.randn(1, len(tokenizer))
    for prefix, expect in [([], [ids.position_ids[0][c] for c in range(4)]),
                           ([0, 1], [ids.position_ids[2][3]]),
                           ([2, 3, 1, 1], [ids.position_ids[4][c] for c in (0, 1, 2)]),
                           ([2, 3, 1, 1, 2], [ids.end_id])]:
        x = torch.tensor([base + [int(ids.position_ids[k][c]) for k, c in enumerate(prefix)]])
        out = proc(x, scores)
        kept = torch.nonzero(out[0] > float("-inf")).flatten().tolist()
        assert kept == sorted(int(i) for i in expect)
        assert torch.equal(out[0, kept], scores[0, kept])
    # A malformed open span in the prompt is named, not silently continued.
    bad = torch.tensor([base + [int(ids.position_ids[2][0])]])
    with pytest.raises(ValueError, match="position 2 at index 0"):
        proc(bad, scores)


def test_all_tracks_excluded_is_a_clear_error(lm, trie):
    tokenizer, model, ids = lm
    everything = ExcludeTracks(played=frozenset(TRACKS[:6]), rejected=frozenset(TRACKS[6:]))
    with pytest.raises(NoAllowedTrack, match="12 tracks excluded"):
        generate(model, tokenizer, prompt_ids(tokenizer, ids), [MusicSpanConstraint(ids, trie, everything)])


# ---------------------------------------------------------------------------------------------- matching

FLAT = MusicVocab([ModalitySpec(m, 1, 8) for m in PAPER_WEIGHTS] + [ModalitySpec("dis", 1, 4)])
# playlist semantic metadata lyrics audio dis; the query is (1, 1, 1, 1, 1, 0)
FLAT_CODES = np.array([
    [2, 2, 2, 2, 2, 0],  # f0 shares only dis → never evidence
    [1, 2, 2, 2, 1, 1],  # f1 playlist + audio = 26
    [2, 1, 1, 1, 2, 1],  # f2 semantic + metadata + lyrics = 29
    [1, 3, 3, 3, 1, 2],  # f3 playlist + audio = 26 (ties f1, later row)
    [3, 3, 3, 3, 3, 3],  # f4 nothing
])
QUERY = [1, 1, 1, 1, 1, 0]


@pytest.fixture(scope="module")
def flat():
    return TokenStore(FLAT, [f"f{i}" for i in range(len(FLAT_CODES))], FLAT_CODES)


def test_partial_match_uses_paper_weights(flat):
    assert dict(PAPER_WEIGHTS) == {"playlist": 25, "semantic": 16, "metadata": 9, "lyrics": 4, "audio": 1}
    r = match(flat, QUERY)
    assert (r.track_id, r.kind, r.score, r.matched_modalities) == ("f2", "partial", 29, ("semantic", "metadata", "lyrics"))
    r = match(flat, QUERY, exclude=["f2"])
    assert (r.track_id, r.score, r.matched_modalities) == ("f1", 26, ("playlist", "audio"))  # lowest row of the tie
    r = match(flat, QUERY, exclude=ExcludeTracks(played=frozenset({"f2"}), rejected=frozenset({"f1"})))
    assert (r.track_id, r.score) == ("f3", 26)
    r = match(flat, QUERY, weights={"audio": 100, "semantic": 16})
    assert (r.track_id, r.score, r.matched_modalities) == ("f1", 100, ("audio",))


def test_exact_match_and_none(flat):
    r = match(flat, FLAT_CODES[4])
    assert (r.track_id, r.kind, r.score) == ("f4", "exact", 55)
    assert r.matched_modalities == ("playlist", "semantic", "metadata", "lyrics", "audio")
    r = match(flat, FLAT_CODES[4], exclude=["f4"])  # excluded exact → best partial
    assert r.kind == "partial" and r.track_id != "f4"
    none = match(flat, QUERY, exclude=["f1", "f2", "f3"])  # f0 shares only the dis code
    assert (none.track_id, none.kind, none.score, none.matched_modalities) == (None, "none", 0.0, ())
    assert match(flat, [7, 7, 7, 7, 7, 3]).kind == "none"
    assert match(flat, QUERY, weights={"dis": 50}).kind == "none"  # dis never counts
    with pytest.raises(ValueError, match="expected 6 codes"):
        match(flat, [1, 1])
    with pytest.raises(ValueError, match="'audio' is negative"):
        match(flat, QUERY, weights={"audio": -1})


def test_hierarchical_matching_on_residual_codes():
    vocab = MusicVocab([ModalitySpec("semantic", 2, 4), ModalitySpec("audio", 2, 4), ModalitySpec("dis", 1, 4)])
    codes = np.array([
        [0, 2, 3, 0, 1],  # r0 semantic level 2 only (no level 1) + audio full
        [1, 0, 0, 1, 0],  # r1 semantic level 1
        [3, 2, 3, 0, 0],  # r2 like r0
        [2, 1, 1, 1, 0],  # r3 nothing
    ])
    s = TokenStore(vocab, ["r0", "r1", "r2", "r3"], codes)
    query, weights = [1, 2, 3, 0, 0], {"semantic": 16, "audio": 1}
    r = match(s, query, weights)
    assert (r.track_id, r.kind, r.score, r.matched_modalities) == ("r1", "partial", 8, ("semantic",))
    flat_levels = match(s, query, weights, hierarchical=False)  # semantic2 now counts: 8 + 1 beats 8
    assert (flat_levels.track_id, flat_levels.score, flat_levels.matched_modalities) == ("r0", 9, ("semantic", "audio"))
    r = match(s, query, weights, exclude=["r1"])
    assert (r.track_id, r.score, r.matched_modalities) == ("r0", 1, ("audio",))
    r = match(s, [3, 3, 3, 3, 3], weights)  # r2 shares semantic1 and audio1 → half of each weight
    assert (r.track_id, r.score) == ("r2", 8.5)
    assert match(s, [0, 1, 3, 0, 0], weights).score == 8 + 1  # r0: semantic1 + full audio


def test_match_scores_rank_like_match(flat):
    from talkplay.matching import match, match_scores

    rng = np.random.default_rng(1)
    for _ in range(20):
        codes = [int(rng.integers(0, flat.vocab.size(p))) for p in range(len(flat.vocab))]
        scores = match_scores(flat, codes)
        best = match(flat, codes)
        if best.track_id is None:
            assert scores.max() == 0
        else:
            assert scores[flat.row(best.track_id)] == pytest.approx(scores.max())
            assert scores.max() == pytest.approx(best.score)


def test_no_data_codes_are_not_evidence():
    from talkplay.matching import match, match_scores

    vocab = MusicVocab([ModalitySpec("playlist", 1, 4), ModalitySpec("lyrics", 1, 3, reserved=1)])
    codes = np.array([[1, 0], [2, 0], [3, 2]])  # t0, t1 without lyrics; t2 with
    store = TokenStore(vocab, ["t0", "t1", "t2"], codes)
    r = match(store, [3, 0])  # no lyrics in the query: only playlist can match
    assert (r.track_id, r.kind, r.matched_modalities, r.score) == ("t2", "partial", ("playlist",), 25)
    assert match(store, [0, 0]).kind == "none"  # sharing "no lyrics" is not a match
    assert match_scores(store, [1, 0]).tolist() == [25, 0, 0]
    assert match_scores(store, [0, 2]).tolist() == [0, 0, 4]  # real lyrics codes still count

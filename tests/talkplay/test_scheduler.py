"""Batched decoding of concurrent turns (talkplay.scheduler) on the tiny random Llama and the 6-track catalog:
every conversation gets exactly what it gets alone, exclusions hold per conversation, a cancelled or failing turn
neither stalls nor corrupts the others; the slot cache and the prefix cache match plain decoding."""

import threading
import time

import pytest
import torch
from transformers import DynamicCache

from talkplay.conversation import ConversationState, Done, TrackChosen
from talkplay.kvcache import PrefixCache, SlotCache
from talkplay.recommender import GenerationConfig, Recommender
from talkplay.render import RenderConfig
from tests.worlds import make_model

SCRIPTS = [  # (request, reject the track afterwards?)
    [("calm piano for a rainy night", False), ("something faster", True), ("more like the first one", False)],
    [("loud drums and guitars", True), ("anything but that", False), ("and another", False)],
    [("play me some jazz", False), ("upbeat please", False), ("slower now", False)],
    [("music for running", False), ("darker", True), ("with vocals", False)],
    [("hello, something new", False), ("keep going", False)],
]


@pytest.fixture(scope="module")
def model(world):  # noqa: F811
    return make_model(world["tokenizer"], world["n_old"]).eval()


def engine(world, model, **kw):  # noqa: F811
    return Recommender(model, world["tokenizer"], world["catalog"], world["store"],
                       GenerationConfig(max_reply_tokens=32), RenderConfig(max_tokens=512), **kw)


def run_script(rec, script, config, out, index):
    """One listener: each request, then maybe a rejection (a skip) of what played."""
    state = ConversationState()
    turns = []
    try:
        for text, reject in script:
            turns.append(rec.chat(state, text, generation=config))
            if reject:
                state.reject()
        out[index] = (turns, set(state.rejected))
    except Exception as err:  # noqa: BLE001 — recorded and asserted by the test
        out[index] = err


def run_all(rec, configs, concurrent: bool):
    out = [None] * len(SCRIPTS)
    threads = [threading.Thread(target=run_script, args=(rec, s, c, out, i))
               for i, (s, c) in enumerate(zip(SCRIPTS, configs))]
    for t in threads:
        t.start()
        if not concurrent:
            t.join()
    for t in threads:
        t.join(120)
    return out


@pytest.mark.parametrize("start_thread", [True, False], ids=["start-thread", "one-thread"])
@pytest.mark.parametrize("sampled", [False, True], ids=["greedy", "seeded-sampling"])
def test_concurrent_conversations_get_what_they_get_alone(world, model, sampled, start_thread):  # noqa: F811
    configs = [GenerationConfig(max_reply_tokens=32, temperature=1.0 if sampled else 0.0, seed=i * 7 if sampled else 0,
                                music_temperature=1.0 if sampled else None)
               for i in range(len(SCRIPTS))]
    alone = run_all(engine(world, model), configs, concurrent=False)
    rec = engine(world, model)
    scheduler = rec.serve(max_batch=4, start_thread=start_thread)  # fewer rows than listeners: turns wait for one
    assert scheduler.start_thread == start_thread
    try:
        together = run_all(rec, configs, concurrent=True)
    finally:
        scheduler.close()
    assert scheduler.stats.finished == sum(len(s) for s in SCRIPTS)
    assert 1 < scheduler.stats.max_rows <= 4, "no two replies were ever decoded in one batch, or more than the cap"
    for a, b in zip(alone, together):
        assert not isinstance(a, Exception) and not isinstance(b, Exception), (a, b)
        assert [(t.track_id, t.reply) for t in a[0]] == [(t.track_id, t.reply) for t in b[0]]
        played = [t.track_id for t in b[0]]
        assert len(set(played)) == len(played)  # never a repeat
        for k, t in enumerate(b[0]):  # never a track rejected earlier in the same conversation
            assert all(t.track_id != b[0][j].track_id for j in range(k))


def test_a_cancelled_and_a_failing_turn_leave_the_others_intact(world, model):  # noqa: F811
    config = GenerationConfig(max_reply_tokens=32, temperature=0.0)
    alone = run_all(engine(world, model), [config] * len(SCRIPTS), concurrent=False)
    rec = engine(world, model)
    scheduler = rec.serve(max_batch=8)
    try:
        # a listener who leaves right after the track appears (the app's generator is closed). The batched steps
        # wait until the listener has left, so the turn is still decoding when it is cancelled (without the gate a
        # fast machine may finish the whole reply first and there is nothing left to cancel).
        gate, batched_forward = threading.Event(), rec.forward

        def gated_forward(tokens, cache, **kw):
            if isinstance(cache, SlotCache):
                gate.wait(30)
            return batched_forward(tokens, cache, **kw)

        rec.forward = gated_forward
        gone = rec.respond(ConversationState(), "something to leave early", generation=config)
        assert isinstance(next(gone), TrackChosen)
        gone.close()
        gate.set()
        # a conversation with every track heard: its turn fails with NoAllowedTrack, only for its caller
        full = ConversationState(rejected=set(world["store"].track_ids))
        failed = []

        def doomed():
            try:
                rec.chat(full, "one more", generation=config)
            except Exception as err:  # noqa: BLE001
                failed.append(err)

        t = threading.Thread(target=doomed)
        t.start()
        together = run_all(rec, [config] * len(SCRIPTS), concurrent=True)
        t.join(60)
    finally:
        scheduler.close()
    assert failed and type(failed[0]).__name__ == "NoAllowedTrack"
    assert scheduler.stats.cancelled == 1
    for a, b in zip(alone, together):
        assert [(t.track_id, t.reply) for t in a[0]] == [(t.track_id, t.reply) for t in b[0]]


def test_closing_during_a_start_ends_that_turn_too(world, model):  # noqa: F811
    """A start still running when the scheduler closes: its listener gets the stop error, not a wait forever."""
    rec = engine(world, model)
    started, real = threading.Event(), rec._start_turn

    def slow_start(*args):
        started.set()
        time.sleep(0.5)
        return real(*args)

    rec._start_turn = slow_start
    scheduler = rec.serve(start_thread=True)
    ticket = scheduler.submit(ConversationState(), "calm piano", GenerationConfig(max_reply_tokens=32), ())
    assert started.wait(10)
    scheduler.close()
    done = threading.Event()
    outcome = []

    def drain():
        try:
            outcome.extend(ticket)
        except RuntimeError as err:
            outcome.append(err)
        done.set()

    threading.Thread(target=drain, daemon=True).start()
    assert done.wait(10), "the listener is still waiting after close()"
    assert isinstance(outcome[-1], RuntimeError) and "stopped" in str(outcome[-1])


def test_events_stream_track_first_through_the_scheduler(world, model):  # noqa: F811
    rec = engine(world, model)
    scheduler = rec.serve()
    try:
        state = ConversationState()
        events = list(rec.respond(state, "I like piano music at night"))
    finally:
        scheduler.close()
    assert isinstance(events[0], TrackChosen) and isinstance(events[-1], Done)
    assert state.turns == [events[-1].turn]


def test_slot_cache_steps_equal_separate_decoding(world, model):  # noqa: F811
    """Rows of different lengths joining and leaving: each row's logits equal its own batch-1 decoding."""
    torch.manual_seed(0)
    prompts = [torch.randint(0, 200, (n,)).tolist() for n in (5, 17, 9, 30)]
    singles, slots = [], SlotCache(model.config.num_hidden_layers)
    with torch.no_grad():
        for p in prompts[:3]:
            c = DynamicCache()
            model(input_ids=torch.tensor([p]), cache=c, use_cache=True)
            singles.append(c)
            slots.add(_copy(c))
        steps = [torch.randint(0, 200, (4,)).tolist() for _ in range(3)] + [[1, 2, 3, 4]]
        rows = [0, 1, 2]
        for s in range(4):
            if s == 2:  # a longer row joins (everyone shifts right), then the first row leaves
                c = DynamicCache()
                model(input_ids=torch.tensor([prompts[3]]), cache=c, use_cache=True)
                singles.append(c)
                slots.add(_copy(c))
                rows.append(3)
                slots.remove(0)
                rows[0] = rows.pop()
            tokens = [steps[r][s] for r in rows]
            mask, pos = slots.step_inputs("cpu")
            batched = model(input_ids=torch.tensor(tokens)[:, None], cache=slots, use_cache=True,
                            attention_mask=mask, position_ids=pos).logits[:, -1]
            slots.advance()
            for i, r in enumerate(rows):
                alone = model(input_ids=torch.tensor([[tokens[i]]]), cache=singles[r], use_cache=True).logits[0, -1]
                torch.testing.assert_close(batched[i], alone, rtol=1e-4, atol=1e-4)
        for i, r in enumerate(rows):  # extract gives back exactly the row's cache
            torch.testing.assert_close(slots.extract(i).layers[0].keys, singles[r].layers[0].keys)


def _copy(cache):
    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys.clone(), layer.values.clone(), i)
    return out


def test_prefix_cache_reuses_the_last_turn_and_changes_nothing(world, model):  # noqa: F811
    config = GenerationConfig(max_reply_tokens=32, temperature=0.0)
    cached, plain = engine(world, model), engine(world, model, prefix_cache_mb=0)
    for rec in (cached, plain):
        run_script(rec, SCRIPTS[0], config, out := [None], 0)
        rec.result = out[0]
    assert [(t.track_id, t.reply) for t in cached.result[0]] == [(t.track_id, t.reply) for t in plain.result[0]]
    assert cached.prefix.hits == len(SCRIPTS[0]) - 1 and cached.prefix.reused_tokens > 0
    assert plain.prefix.hits == 0 and len(plain.prefix) == 0
    small = PrefixCache(max_bytes=1)  # over budget: nothing kept
    c = DynamicCache()
    model(input_ids=torch.tensor([[1, 2, 3]]), cache=c, use_cache=True)
    small.put("k", [1, 2, 3], c)
    assert len(small) == 0

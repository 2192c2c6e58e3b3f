"""Continuous batching (model/decoding.py): requests decoded together produce, each, what
it produces alone, in batched steps; a request that leaves does not disturb the others."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from rnnlm.model import ModelConfig, TrainConfig, train
from rnnlm.model.decoding import Decoder, beam_search, sample_events
from rnnlm.model.generation import GenerationConfig, beam_events, choose_tokens
from rnnlm.model.stopping import Stopped
from tests.conftest import ALL_CELLS, SMALL_MODEL, needs_torch

# The small models of every cell, and a GRU with a class-factored output layer, whose plain
# sampling draws the class, then the word (engines/torch_sampling.py).
DECODING_MODELS = [*ALL_CELLS, "gru-classes"]


@pytest.fixture(scope="module")
def class_lm(pydoc_corpus):
    needs_torch("gru")
    return train(
        pydoc_corpus,
        ModelConfig(cell="gru", output_classes=12, **SMALL_MODEL),
        TrainConfig(epochs=1, batch_size=32, seed=3, device="cpu"),
    )


@pytest.fixture(params=DECODING_MODELS)
def decoding_lm(request, small_models):
    if request.param == "gru-classes":
        return request.getfixturevalue("class_lm")
    needs_torch(request.param)
    return small_models[request.param]


# Sixteen requests of every kind: plain, tempered, top-k, top-p and combined sampling,
# several sentences each, greedy, and beams of several widths.
REQUESTS = [
    ({"seed": 1}, "the"),
    ({"seed": 2, "temperature": 0.7}, None),
    ({"seed": 3, "top_k": 20}, "a"),
    ({"seed": 4, "top_p": 0.8}, None),
    ({"seed": 5, "top_k": 50, "top_p": 0.9, "temperature": 1.3}, "the"),
    ({"seed": 6, "num_sentences": 3, "max_length": 8}, None),
    ({"method": "greedy", "max_length": 12}, "the"),
    ({"method": "greedy", "min_length": 5}, None),
    ({"method": "beam", "beam_width": 3}, "the"),
    ({"method": "beam", "num_sentences": 2, "max_length": 10}, None),
    ({"method": "beam", "beam_width": 1}, "a"),
    ({"seed": 7, "min_length": 4, "max_length": 6}, None),
    ({"seed": 8, "num_sentences": 2, "top_k": 5}, "the"),
    ({"seed": 9}, None),
    ({"method": "beam", "beam_width": 5, "num_sentences": 5, "max_length": 7}, "the"),
    ({"seed": 10, "temperature": 2.0, "max_length": 20}, None),
]


def alone(lm, options: dict, prompt: str | None) -> list:
    config = GenerationConfig(**options)
    ids = lm.vocab.encode([] if prompt is None else [prompt])
    if config.method == "beam":
        events = beam_events(beam_search(lm.engine, lm.vocab, ids, config), lm.vocab)
    else:
        events = sample_events(lm.engine, lm.vocab, ids, config)
    return [(e.sentence, e.token, e.finish_reason, round(e.logprob, 9)) for e in events]


class CountingEngine:
    """The engine, counting the rows of every decoding step."""

    def __init__(self, engine) -> None:
        self.engine, self.rows = engine, []

    def decoding_step(self, tokens, state):
        self.rows.append(len(tokens))
        return self.engine.decoding_step(tokens, state)

    def __getattr__(self, name):
        return getattr(self.engine, name)


def test_requests_decoded_together_produce_what_each_produces_alone(decoding_lm):
    small_lm = decoding_lm
    expected = [alone(small_lm, options, prompt) for options, prompt in REQUESTS]
    counting = CountingEngine(small_lm.engine)
    decoder = Decoder(counting, small_lm.vocab)
    results: list = [None] * len(REQUESTS)
    start = threading.Barrier(len(REQUESTS))

    def run(i: int) -> None:
        options, prompt = REQUESTS[i]
        ids = small_lm.vocab.encode([] if prompt is None else [prompt])
        start.wait()
        events = decoder.submit(ids, GenerationConfig(**options))
        results[i] = [(e.sentence, e.token, e.finish_reason, round(e.logprob, 9)) for e in events]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(REQUESTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for i, (got, want) in enumerate(zip(results, expected, strict=True)):
        assert [t[:3] for t in got] == [t[:3] for t in want], f"request {i}: {REQUESTS[i]}"
        np.testing.assert_allclose([t[3] for t in got], [t[3] for t in want], atol=1e-5)
    assert max(counting.rows) >= 8  # steps carried many requests' rows at once


def test_a_request_that_leaves_does_not_disturb_the_others(decoding_lm):
    small_lm = decoding_lm
    decoder = Decoder(small_lm.engine, small_lm.vocab)
    config = GenerationConfig(seed=3, min_length=20, max_length=20, num_sentences=2)
    ids = small_lm.vocab.encode(["the"])
    kept = decoder.submit(ids, config)
    left = decoder.submit(ids, config)
    first = [next(kept) for _ in range(5)]
    twin = [next(left) for _ in range(5)]
    assert [e.token for e in twin] == [e.token for e in first]  # one seed: the same words
    assert [e.logprob for e in twin] == pytest.approx([e.logprob for e in first], abs=1e-5)
    left.close()  # the caller went away
    rest = list(kept)
    assert [e.token for e in first + rest] == [
        e.token for e in sample_events(small_lm.engine, small_lm.vocab, ids, config)
    ]
    # The loop runs ahead of a slow reader, so a stop is seen at the step after it is asked.
    with pytest.raises(Stopped):
        list(decoder.submit(ids, config, lambda: True))


def numpy_choice(logp, produced, configs, uniforms):
    return choose_tokens(logp, produced, configs, uniforms)


def torch_choice(logp, produced, configs, uniforms):
    torch = pytest.importorskip("torch")
    from rnnlm.model.engines.torch_sampling import _choose_from_log_probs

    short = produced < np.array([c.min_length for c in configs])
    return _choose_from_log_probs(torch.from_numpy(logp).float(), short, configs, uniforms)


@pytest.mark.parametrize("choose", [numpy_choice, torch_choice], ids=["numpy", "torch"])
def test_vectorised_choice_follows_each_rows_options(choose):
    """Rows with different options in one call: greedy takes the best allowed token, top-k
    keeps k, top-p the nucleus, min_length holds SENTENCE_END back; each token comes with
    its own log-prob. The NumPy engine's choice and the torch engines' alike."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 40)) * 3
    logp = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)
    configs = [
        GenerationConfig(method="greedy"),
        GenerationConfig(top_k=3),
        GenerationConfig(top_p=0.5),
        GenerationConfig(min_length=2),
        GenerationConfig(temperature=0.01),
    ]
    for draw in range(50):
        uniforms = np.random.default_rng(draw).random(5)
        chosen, chosen_logp = choose(logp, np.zeros(5, dtype=np.int64), configs, uniforms)
        np.testing.assert_allclose(chosen_logp, logp[np.arange(5), chosen], atol=1e-6)
        allowed = logp.copy()
        allowed[:, [0, 1, 2]] = -np.inf  # UNK, START; END before min_length (1 here)
        assert chosen[0] == np.argmax(allowed[0])
        assert chosen[1] in np.argsort(-allowed[1])[:3]
        probs = np.exp(allowed[2]) / np.exp(allowed[2]).sum()
        order = np.argsort(-probs)
        nucleus = order[: np.searchsorted(np.cumsum(probs[order]), 0.5) + 1]
        assert chosen[2] in nucleus
        assert chosen[3] not in (0, 1, 2)
        assert chosen[4] == np.argmax(allowed[4])  # near-zero temperature: the best


def test_sampling_class_then_word_is_the_whole_distributions_inversion(class_lm):
    """Plain sampling from a class-factored model draws the class, then the word: for the
    same uniform, the token that inverting the whole distribution gives (ids run class by
    class), but where rounding puts a uniform on the other side of a boundary; its
    log-prob the model's own; never UNKNOWN or SENTENCE_START, nor SENTENCE_END while the
    sentence is short."""
    torch = pytest.importorskip("torch")
    from rnnlm.model.engines.torch_sampling import _choose_from_log_probs, _sample_by_class

    engine = class_lm.engine
    ids = class_lm.vocab.encode(["the", "value", "of", "the"])
    outputs, state = engine.decoding_step(np.array([1, 1, 1, 1]), None)
    for token in ids[:2]:
        outputs, state = engine.decoding_step(np.full(4, token), state)
    # Four rows of different contexts: rows 0 and 2 still short (no SENTENCE_END).
    outputs, _ = engine.decoding_step(np.array(ids[:4]), state)
    logp = outputs.log_probs()  # (4, V)
    short = np.array([True, False, True, False])
    plain = [GenerationConfig(min_length=1 if s else 0) for s in short]
    uniforms = np.linspace(0.0, 1.0, 2001, endpoint=False)
    mismatches = 0
    for u in uniforms:
        draws = np.full(4, u)
        by_class, by_class_logp = _sample_by_class(engine._serving, outputs.states, short, draws)
        whole, _ = _choose_from_log_probs(logp, short, plain, draws)
        mismatches += int((by_class != whole).sum())
        assert not np.isin(by_class, [0, 1]).any()
        assert not (by_class[short] == 2).any()
        np.testing.assert_allclose(by_class_logp, logp[np.arange(4), by_class].numpy(), atol=1e-5)
    assert mismatches <= 4  # of 8,004 draws: only at a boundary, from rounding
    assert torch.isfinite(logp).all()


def test_an_engine_failure_reaches_every_request_and_the_loop_goes_on(small_models):
    """A step that raises ends every request in the batch (and those joining) with the
    error; the next request decodes normally."""
    lm = small_models["rnn"]

    class Failing(CountingEngine):
        fail = True

        def decoding_step(self, tokens, state):
            if self.fail:
                raise RuntimeError("engine broke")
            return self.engine.decoding_step(tokens, state)

    engine = Failing(lm.engine)
    decoder = Decoder(engine, lm.vocab)
    ids = lm.vocab.encode(["the"])
    streams = [decoder.submit(ids, GenerationConfig(seed=i)) for i in range(3)]
    for stream in streams:
        with pytest.raises(RuntimeError, match="engine broke"):
            list(stream)
    engine.fail = False
    assert list(decoder.submit(ids, GenerationConfig(seed=1, max_length=3)))


def test_a_closed_loop_ends_its_thread_at_its_next_step(small_lm):
    """What the interpreter's exit does (``atexit``): the loop's thread ends at its next
    step and is joined, so that no daemon thread is inside a torch operation while the
    interpreter finalises (that aborted ``python -m rnnlm.model demo`` in ~40% of runs)."""
    from rnnlm.model import decoding

    decoder = Decoder(small_lm.engine, small_lm.vocab)
    config = GenerationConfig(seed=1, num_sentences=50, max_length=30)
    events = decoder.submit(small_lm.vocab.encode(["the"]), config)
    next(events)  # the loop runs, and has more to do
    thread = decoder._thread
    assert thread is not None and thread.is_alive() and decoder in decoding._RUNNING
    decoder.close()
    assert not thread.is_alive() and decoder._thread is None


def test_a_reader_waits_for_events_until_it_has_enough_the_end_or_the_timeout(small_models):
    """``EventStream.wait_ready`` (a Generate message waiting to fill): it returns once the
    count is ready, at once when the request has ended whatever the count, and after the
    timeout when nothing comes."""
    from rnnlm.model.decoding import EventStream

    lm = small_models["rnn"]
    decoder = Decoder(lm.engine, lm.vocab)
    ids = lm.vocab.encode(["the"])
    events = decoder.submit(ids, GenerationConfig(seed=1, min_length=6, max_length=6))
    started = time.monotonic()
    events.wait_ready(3, 30.0)
    assert events.ready() >= 3 and time.monotonic() - started < 20
    events.wait_ready(100, 30.0)  # more than it will make: the end wakes the reader
    assert time.monotonic() - started < 20 and len(list(events)) == 6
    idle = decoder._request(ids, GenerationConfig(seed=2), None)  # never submitted
    started = time.monotonic()
    EventStream(idle, iter(())).wait_ready(1, 0.2)
    assert 0.15 < time.monotonic() - started < 20


@pytest.mark.parametrize("first_bounds", [[3], [1, 2, 3], [2, 5]], ids=["one", "each", "split"])
def test_a_class_of_words_never_produced_is_never_drawn(class_lm, first_bounds):
    """Classes holding UNKNOWN, SENTENCE_START and SENTENCE_END (ids 0-2: in one class, one
    each, or two classes with other words) count only with the words a row may produce:
    nothing for a class of those alone while a sentence is short, whatever the uniform (0
    and next to 1 included); the class-then-word draw still inverts the whole
    distribution over the words allowed."""
    import copy

    pytest.importorskip("torch")
    from rnnlm.model.engines.torch_sampling import _choose_from_log_probs, _sample_by_class

    engine = copy.deepcopy(class_lm.engine)
    classes = engine.model.classes
    size = engine.vocab_size
    rest = np.linspace(first_bounds[-1], size, len(classes.bounds) - len(first_bounds))[1:]
    classes.set_bounds(np.concatenate([[0, *first_bounds], rest]).round().astype(np.int64))
    outputs, _ = engine.decoding_step(np.array([1, 1]), None)
    logp = outputs.log_probs()
    short = np.array([True, False])
    plain = [GenerationConfig(min_length=1), GenerationConfig()]
    mismatches = 0
    for u in [0.0, 1e-12, 1e-6, *np.linspace(0, 1, 200, endpoint=False), 1 - 1e-12]:
        tokens, logps = _sample_by_class(engine._serving, outputs.states, short, np.full(2, u))
        assert tokens[0] > 2 and tokens[1] > 1  # row 1 may end: SENTENCE_END allowed
        np.testing.assert_allclose(logps, logp[[0, 1], tokens].numpy(), atol=1e-5)
        whole, _ = _choose_from_log_probs(logp, short, plain, np.full(2, u))
        mismatches += int((tokens != whole).sum())
    assert mismatches <= 2


def test_words_allowed_far_below_a_banned_one_are_still_drawn_by_class(class_lm):
    """Where UNKNOWN holds all but e^-800 of a row (below float64's range), the class
    draw still picks among the words allowed, as inverting the whole distribution does,
    instead of dividing 0 by 0 (an index error that ended every stream of the model); a
    network gone to NaN still gives a word of the vocabulary."""
    import copy

    torch = pytest.importorskip("torch")
    from rnnlm.model.engines.torch_sampling import _choose_from_log_probs, _sample_by_class

    engine = copy.deepcopy(class_lm.engine)
    with torch.no_grad():
        engine.model.classes.layer.bias[0] += 800.0  # class 0, which holds UNKNOWN
        engine.model.decoder.bias[0] += 800.0  # UNKNOWN within it
    outputs, _ = engine.decoding_step(np.array([5, 5]), None)
    short = np.array([True, False])
    plain = [GenerationConfig(min_length=1), GenerationConfig()]
    for u in (0.0, 0.3, 0.5, 1 - 1e-12):
        draws = np.full(2, u)
        tokens, logps = _sample_by_class(engine._serving, outputs.states, short, draws)
        whole, _ = _choose_from_log_probs(outputs.log_probs(), short, plain, draws)
        np.testing.assert_array_equal(tokens, whole)
        assert tokens[0] > 2 and tokens[1] > 1 and np.isfinite(logps).all()
    broken = torch.full_like(outputs.states, float("nan"))
    tokens, _ = _sample_by_class(engine._serving, broken, short, np.full(2, 0.5))
    assert ((tokens >= 0) & (tokens < engine.vocab_size)).all()


@pytest.mark.parametrize("choose", [numpy_choice, torch_choice], ids=["numpy", "torch"])
def test_a_uniform_next_to_one_stays_among_the_tokens_kept(choose):
    """A draw just below 1 must not round past the last token kept by top-k, top-p or
    min_length (the inverse CDF would otherwise land on the vocabulary's last id)."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 100)) * 2
    logp = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)
    configs = [
        GenerationConfig(top_k=1),
        GenerationConfig(top_p=0.5),
        GenerationConfig(temperature=0.5, top_k=5),
    ]
    for u in (1 - 1e-8, 1 - 1e-12, np.nextafter(1.0, 0.0)):
        chosen, _ = choose(logp, np.ones(3, dtype=np.int64), configs, np.full(3, u))
        allowed = logp.copy()
        allowed[:, [0, 1]] = -np.inf
        assert chosen[0] == np.argmax(allowed[0])
        assert chosen[2] in np.argsort(-allowed[2])[:5]
        probs = np.exp(allowed[1]) / np.exp(allowed[1]).sum()
        order = np.argsort(-probs)
        assert chosen[1] in order[: np.searchsorted(np.cumsum(probs[order]), 0.5) + 1]


@pytest.mark.parametrize("gather_limit", [1 << 20, 1], ids=["gathered", "a product a row"])
def test_class_words_by_a_product_a_row_or_gathered_are_the_same(
    class_lm, gather_limit, monkeypatch
):
    """The two ways of computing each row's class words' logits (one row, or rows whose
    classes are too large to gather: a product a row with the class's slice of the
    decoder; several: the rows gathered) agree, and pad with -inf to the largest class."""
    torch = pytest.importorskip("torch")
    from rnnlm.model.engines import torch_sampling
    from rnnlm.model.engines.torch_sampling import _class_word_logits

    monkeypatch.setattr(torch_sampling, "GATHER_LIMIT", gather_limit)

    engine = class_lm.engine
    outputs, _ = engine.decoding_step(np.array([1, 1, 1]), None)
    edges = engine.model.classes.bounds.tolist()
    chosen = [0, 5, len(edges) - 2]
    sizes = [edges[k + 1] - edges[k] for k in chosen]
    decoder = engine._serving.decoder
    with torch.no_grad():
        gathered = _class_word_logits(decoder, outputs.states, chosen, edges)
        assert gathered.shape == (3, max(sizes))
        for row, (k, size) in enumerate(zip(chosen, sizes, strict=True)):
            alone = _class_word_logits(decoder, outputs.states[row : row + 1], [k], edges)
            assert alone.shape == (1, size)
            torch.testing.assert_close(gathered[row, :size], alone[0], atol=1e-5, rtol=1e-5)
            assert torch.isinf(gathered[row, size:]).all()

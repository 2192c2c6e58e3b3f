"""The OpenAI Python SDK, pointed at a real server, gets models, completions, streamed
completions and echo log-probabilities equal to ScoreSentence's (through the gRPC client,
on the same server) to 1e-6, with text offsets that point into the caller's text."""

from __future__ import annotations

import math

import openai
import pytest

from rnnlm.model.vocab import SENTENCE_END, SENTENCE_START, START_ID
from tests.http.conftest import MODEL

TOLERANCE = 1e-6
TEXTS = [
    "The value of the expression is returned.",
    'He said  "hello"   to   the   interpreter.',
    "Naïve  cafés — déjà vu: zyzzyva isn't a keyword!",
    "<unk> and a<b>c are (maybe) tokens",
]


@pytest.fixture
def sdk(base_url):
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0) as client:
        yield client


def close(a, b):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=0, abs_tol=TOLERANCE)


def test_models_are_listed(sdk):
    models = sdk.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert sdk.models.retrieve(MODEL).id == MODEL


@pytest.mark.parametrize("scorer", [None, "neural", "ngram"])
def test_echo_logprobs_equal_score_sentence(sdk, grpc_client, scorer):
    extra = {"scorer": scorer} if scorer else None
    reply = sdk.completions.create(
        model=MODEL, prompt=TEXTS, max_tokens=0, echo=True, logprobs=0, extra_body=extra
    )
    scored = grpc_client.score(MODEL, TEXTS, eos=False, scorer=scorer)
    assert len(reply.choices) == len(TEXTS)
    for text, choice, score in zip(TEXTS, reply.choices, scored.scores):
        logprobs = choice.logprobs
        assert choice.text == text and choice.finish_reason == "length"
        assert logprobs.tokens == list(score.words)
        expected = [t.logprob for t in score.tokens]
        assert all(map(close, logprobs.token_logprobs, expected)), (logprobs, expected)
        assert math.isclose(sum(logprobs.token_logprobs), score.logprob, abs_tol=1e-5)
        # Each offset is where the word's own characters start in the caller's text.
        for word, offset in zip(logprobs.tokens, logprobs.text_offset):
            source = text[offset:]
            assert source[:1].lower() == word[:1] or word in ("``", "''"), (word, source)
        assert logprobs.text_offset == sorted(logprobs.text_offset)


def test_a_fragment_has_no_log_prob_for_its_first_word(sdk, grpc_client):
    text = "value of the expression"
    reply = sdk.completions.create(
        model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=1, extra_body={"bos": False}
    )
    logprobs = reply.choices[0].logprobs
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    (score,) = grpc_client.score(MODEL, [text], bos=False, eos=False).scores
    assert all(map(close, logprobs.token_logprobs[1:], [t.logprob for t in score.tokens]))
    # With a sentence start (the default) the first word is predicted, and has a value.
    first = sdk.completions.create(model=MODEL, prompt=text, max_tokens=0, echo=True, logprobs=0)
    assert first.choices[0].logprobs.token_logprobs[0] is not None


def test_a_completion_is_scored_as_score_sentence_scores_its_words(sdk, grpc_client):
    reply = sdk.completions.create(
        model=MODEL, prompt="The value of", max_tokens=12, logprobs=3, echo=True, seed=7, n=3
    )
    for choice in reply.choices:
        logprobs = choice.logprobs
        ended = logprobs.tokens[-1] == SENTENCE_END
        assert choice.finish_reason == ("stop" if ended else "length")
        words = logprobs.tokens[:-1] if ended else logprobs.tokens
        (score,) = grpc_client.score(MODEL, [words], eos=ended).scores
        assert all(map(close, logprobs.token_logprobs, [t.logprob for t in score.tokens]))
        assert choice.text.startswith("The value of")
        for word, offset in list(zip(words, logprobs.text_offset))[3:]:  # the generated
            assert choice.text[offset:].startswith(word) or word in ("``", "''"), (word, offset)
        for value, top in zip(logprobs.token_logprobs, logprobs.top_logprobs):
            best = sorted(top.values(), reverse=True)
            assert len(top) == 3 and list(top.values()) == best
            assert value <= best[0] + TOLERANCE  # the best alternative is the best


def test_greedy_continues_with_the_best_alternative(sdk):
    # The generator is the network: its alternatives are the ones greedy decoding picks
    # from (never UNKNOWN_TOKEN, and SENTENCE_END not before the first word).
    neural = {"scorer": "neural"}
    reply = sdk.completions.create(
        model=MODEL, prompt="The", max_tokens=6, temperature=0, logprobs=1, extra_body=neural
    )
    logprobs = reply.choices[0].logprobs
    for token, value, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        # Exactly equal: lm-eval's is_greedy compares with ==.
        assert top == {token: value} or set(top) <= {"UNKNOWN_TOKEN", SENTENCE_END}, top
    again = sdk.completions.create(model=MODEL, prompt="The", max_tokens=6, temperature=0)
    assert again.choices[0].text == reply.choices[0].text


def test_streamed_text_is_the_same_completion(sdk):
    options = {"model": MODEL, "prompt": ["A list of", "The"], "max_tokens": 10, "seed": 3, "n": 2}
    whole = sdk.completions.create(**options)
    texts, finished = {}, {}
    stream = sdk.completions.create(**options, stream=True)
    for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason
    assert texts == {c.index: c.text for c in whole.choices}
    assert finished == {c.index: c.finish_reason for c in whole.choices}


def test_streamed_usage_and_echo(sdk):
    stream = sdk.completions.create(
        model=MODEL,
        prompt="The value",
        max_tokens=3,
        echo=True,
        logprobs=0,
        stream=True,
        stream_options={"include_usage": True},
        seed=1,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].text == "The value"
    assert chunks[0].choices[0].logprobs.tokens == ["the", "value"]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 2


def test_stop_strings_end_the_text_before_them(sdk):
    plain = sdk.completions.create(model=MODEL, prompt="The", max_tokens=30, seed=5)
    text = plain.choices[0].text
    words = text.split()
    assert len(words) > 2, text
    stop = words[2]
    stopped = sdk.completions.create(model=MODEL, prompt="The", max_tokens=30, seed=5, stop=stop)
    assert stopped.choices[0].text == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    streamed = sdk.completions.create(
        model=MODEL, prompt="The", max_tokens=30, seed=5, stop=[stop], stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == stopped.choices[0].text


def test_token_id_prompts_score_as_their_text(sdk, http):
    text = "The value of the expression"
    ids = http.post(f"/models/{MODEL}/tokenize", json={"prompt": text}).json()["tokens"]
    by_text, by_ids = (
        sdk.completions.create(model=MODEL, prompt=p, max_tokens=0, echo=True, logprobs=0)
        for p in (text, ids)
    )
    assert by_ids.choices[0].logprobs.token_logprobs == by_text.choices[0].logprobs.token_logprobs
    assert by_ids.choices[0].text == "the value of the expression"  # the words, as text
    # A leading SENTENCE_START (a tokenizer's BOS) is the sentence start every prompt has:
    # the same values, and its own token first (none), so that token counts agree.
    for options in ({"logprobs": 1}, {"logprobs": 0, "stream": True}):
        with_bos = sdk.completions.create(
            model=MODEL, prompt=[START_ID, *ids], max_tokens=0, echo=True, **options
        )
        if options.get("stream"):
            with_bos = next(iter(with_bos))
        logprobs = with_bos.choices[0].logprobs
        assert logprobs.tokens == [SENTENCE_START, *by_text.choices[0].logprobs.tokens]
        assert logprobs.token_logprobs == [None, *by_text.choices[0].logprobs.token_logprobs]
        assert logprobs.text_offset[0] == 0
        if logprobs.top_logprobs:
            assert logprobs.top_logprobs[0] is None and len(logprobs.top_logprobs) == len(ids) + 1


def test_a_base_url_per_model(base_url):
    with openai.OpenAI(base_url=f"{base_url}/models/{MODEL}/v1", api_key="-") as sdk:
        reply = sdk.completions.create(model=MODEL, prompt="The", max_tokens=2)
    assert reply.model == MODEL and reply.system_fingerprint.startswith(f"{MODEL}:")

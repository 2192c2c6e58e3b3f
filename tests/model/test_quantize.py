"""int8 serving (TorchRNNEngine.quantize, LanguageModel.quantize): scores close to the float
model's, every scoring and decoding path working, checkpoints keeping the float weights."""

from __future__ import annotations

import numpy as np
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train
from tests.conftest import needs_torch

SENTENCES = ["the value of the function is returned .", "a class may define methods ."]
NBEST = ["the value is returned .", "the value is returned to the caller .", "the value ."]


def token_logps(lm: LanguageModel, sentences: list[str]) -> np.ndarray:
    return np.array([t.logprob for s in lm.score(sentences, scorer="neural") for t in s.tokens])


@pytest.fixture(scope="module", params=[("gru", 0), ("lstm", 8)], ids=["gru-full", "lstm-8"])
def float_lm(request, pydoc_corpus) -> LanguageModel:
    cell, classes = request.param
    needs_torch(cell)
    config = ModelConfig(cell=cell, vocab_size=400, embed_size=24, hidden_size=24)
    config = ModelConfig(**{**config.to_dict(), "output_classes": classes})
    return train(pydoc_corpus, config, TrainConfig(epochs=1, seed=3, device="cpu"))


def test_int8_scores_are_close_to_the_float_models(float_lm):
    quantized = LanguageModel.from_bytes(float_lm.to_bytes(), device="cpu").quantize()
    assert quantized.engine.quantized
    want, got = token_logps(float_lm, SENTENCES), token_logps(quantized, SENTENCES)
    assert not np.array_equal(got, want)  # int8 weights really score
    np.testing.assert_allclose(got, want, atol=0.1)
    assert np.abs(got - want).mean() < 0.03
    # The prefix-tree path (an n-best list) agrees with scoring one at a time, to what
    # dynamic quantization allows: activations are quantized with each batch's range, so a
    # score moves a little (here < 0.005) with what else is in the batch (float: 1e-6).
    tree = token_logps(quantized, NBEST)
    alone = np.concatenate([token_logps(quantized, [s]) for s in NBEST])
    np.testing.assert_allclose(tree, alone, atol=0.02)
    sentences = quantized.generate(num_sentences=2, seed=1, max_length=6)
    assert len(sentences) == 2 and all(s.tokens or s.finish_reason for s in sentences)


def test_a_quantized_model_saves_float_weights_and_does_not_train(float_lm, pydoc_corpus):
    quantized = LanguageModel.from_bytes(float_lm.to_bytes(), device="cpu").quantize()
    reloaded = LanguageModel.from_bytes(quantized.to_bytes(), device="cpu")
    np.testing.assert_array_equal(
        token_logps(reloaded, SENTENCES), token_logps(float_lm, SENTENCES)
    )
    with pytest.raises(ValueError, match="a quantized model serves only"):
        train(pydoc_corpus, resume_from=quantized)


def test_the_numpy_rnn_is_not_quantized(small_models):
    with pytest.raises(ValueError, match="int8 quantization needs a 'gru' or 'lstm' model"):
        small_models["rnn"].quantize()


def test_a_float64_model_is_not_quantized(pydoc_corpus):
    # torch's int8 layers take float32 activations: quantized, a float64 model failed at its
    # first score instead of at quantize().
    needs_torch("gru")
    config = ModelConfig(cell="gru", vocab_size=400, embed_size=8, hidden_size=8, dtype="float64")
    lm = train(pydoc_corpus, config, TrainConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="serves float32 models; this one is float64"):
        lm.quantize()
    assert np.isfinite(lm.score(SENTENCES, scorer="neural")[0].logprob)  # still serves

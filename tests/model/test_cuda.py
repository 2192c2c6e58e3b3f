"""GRU/LSTM on a CUDA GPU (cuDNN). Skipped where no GPU is visible, which is the case in CI;
run on a GPU machine with `pytest tests/model/test_cuda.py`."""

import numpy as np
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")

SENTENCES = ["The value is returned.", "If the object is not found, an error is raised.", "x"]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_train_score_and_generate_on_cuda(cell, pydoc_corpus):
    config = ModelConfig(cell=cell, vocab_size=2000, embed_size=64, hidden_size=128)
    lm = train(pydoc_corpus, config, TrainConfig(epochs=2, device="auto", seed=0))
    assert lm.device.startswith("cuda")
    assert next(lm.engine.model.parameters()).is_cuda
    assert torch.backends.cudnn.is_available()
    assert lm.training_state.history[-1]["valid_perplexity"] < len(lm.vocab) / 5

    # Exact round trip on the GPU; CPU scores of the same weights agree closely.
    on_gpu = LanguageModel.from_bytes(lm.to_bytes(), device="cuda")
    on_cpu = LanguageModel.from_bytes(lm.to_bytes(), device="cpu")
    a, b, c = (m.score(SENTENCES) for m in (lm, on_gpu, on_cpu))
    assert [s.logprob for s in a] == [s.logprob for s in b]
    np.testing.assert_allclose([s.logprob for s in a], [s.logprob for s in c], atol=1e-3)

    # Batch invariance on the GPU.
    alone = [lm.score([s])[0].logprob for s in SENTENCES]
    np.testing.assert_allclose(alone, [s.logprob for s in a], atol=1e-4)

    samples = lm.generate(num_sentences=2, seed=1, max_length=20)
    assert samples == lm.generate(num_sentences=2, seed=1, max_length=20)
    assert len(lm.generate(method="beam", beam_width=3, max_length=10)) == 3

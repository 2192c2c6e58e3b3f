"""The package imports, and the NumPy engine trains, where torch cannot be imported."""

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import importlib.abc, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is blocked for this test")

    sys.meta_path.insert(0, BlockTorch())
    from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train
    text = "The cat sat on the mat. The dog sat on the log. A cat saw a dog. " * 40
    lm = train(text, ModelConfig(cell="rnn", hidden_size=16), TrainConfig(epochs=2))
    again = LanguageModel.from_bytes(lm.to_bytes())
    assert again.score(["the cat sat ."])[0].logprob == lm.score(["the cat sat ."])[0].logprob
    assert lm.generate(seed=1)
    try:
        train(text, ModelConfig(cell="gru"), TrainConfig(epochs=1))
    except ValueError as err:
        assert "needs PyTorch" in str(err), err
    else:
        raise AssertionError("gru trained without torch")
    assert "torch" not in sys.modules
    print("ok", lm.training_state.history[-1]["train_perplexity"])
""")


def test_rnn_engine_works_without_torch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")

"""Checkpoints: safetensors + JSON, exact round trips, refusal of damaged data."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save as st_save

from rnnlm.model import CheckpointError, LanguageModel

SENTENCES = ["The value of the expression is returned.", ["an", "unknown", "zqx", "word"]]


def test_file_round_trip_is_exact(small_lm, tmp_path):
    path = tmp_path / "m.safetensors"
    small_lm.save(path)
    loaded = LanguageModel.load(path, device="cpu")
    for a, b in zip(small_lm.score(SENTENCES), loaded.score(SENTENCES)):
        assert [t.logprob for t in a.tokens] == [t.logprob for t in b.tokens]  # to the bit
    assert loaded.generate(seed=4, num_sentences=2) == small_lm.generate(seed=4, num_sentences=2)
    assert loaded.config == small_lm.config
    assert loaded.vocab.tokens == small_lm.vocab.tokens
    assert loaded.tokenizer.to_json() == small_lm.tokenizer.to_json()


def test_bytes_round_trip_is_exact(small_lm):
    data = small_lm.to_bytes()
    loaded = LanguageModel.from_bytes(data, device="cpu")
    assert loaded.to_bytes() == data


def test_format_is_safetensors_with_json_metadata(small_lm, tmp_path):
    path = tmp_path / "m.safetensors"
    small_lm.save(path, resumable=True)
    with safe_open(str(path), framework="numpy") as f:
        meta = json.loads(f.metadata()["rnnlm"])
        keys = set(f.keys())
    assert meta["format"] == "rnnlm.checkpoint" and meta["version"] == 1
    assert meta["model_config"]["cell"] == small_lm.config.cell
    assert meta["vocab"][:3] == ["UNKNOWN_TOKEN", "SENTENCE_START", "SENTENCE_END"]
    assert meta["tokenizer"]["punkt"]["ortho_context"]
    assert meta["training_state"]["epoch"] == 1
    assert any(k.startswith("model.") for k in keys)
    assert any(k.startswith("optimizer.") for k in keys)
    assert not any(
        k.startswith("optimizer.")
        for k in LanguageModel.from_bytes(small_lm.to_bytes()).resume_tensors
    )


def test_damaged_checkpoints_are_refused(small_lm):
    data = small_lm.to_bytes()
    with pytest.raises(CheckpointError, match="too short"):
        LanguageModel.from_bytes(data[:5])
    with pytest.raises(CheckpointError):
        LanguageModel.from_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="no rnnlm metadata"):
        LanguageModel.from_bytes(st_save({"x": np.zeros(3)}))
    with pytest.raises(CheckpointError, match="header length"):
        LanguageModel.from_bytes(b"\xff" * 64)


def test_weights_that_do_not_fit_are_refused(small_lm):
    from rnnlm.model import checkpoint

    groups, meta = checkpoint.loads(small_lm.to_bytes())
    name = next(iter(groups["model"]))
    groups["model"][name] = np.zeros((2, 2), dtype=np.float32)
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    with pytest.raises(ValueError, match=f"{name}.*shape"):
        LanguageModel.from_bytes(checkpoint.dumps(groups, meta))


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        LanguageModel.load(tmp_path / "none.safetensors")


def test_no_pickle_in_the_package():
    """Nothing that loads may unpickle: no pickle/dill/joblib loading, no torch.load,
    no numpy loading with allow_pickle."""
    forbidden = re.compile(
        r"\b(import|from)\s+(pickle|cPickle|_pickle|dill|joblib|shelve|marshal)\b"
        r"|\b(pickle|dill|joblib|marshal)\.loads?\(|torch\.load\(|allow_pickle\s*=\s*True"
    )
    root = Path(__file__).resolve().parents[2] / "model"
    for path in root.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{path}:{number}: {line.strip()}"

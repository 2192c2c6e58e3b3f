"""Shared fixtures: corpora (the repository's ../shared/data and Python's own pydoc text)
and small trained models, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rnnlm.model import Corpus, ModelConfig, TrainConfig, train
from rnnlm.model.engines import torch_available

# The private redis-server fixture, shared by the store and end-to-end tests.
pytest_plugins = ["tests.fixtures_redis"]

SHARED_DATA = Path(
    os.environ.get("RNNLM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

TORCH_CELLS = ["gru", "lstm"]
ALL_CELLS = ["rnn", *TORCH_CELLS]


def shared_file(relative: str) -> Path:
    """A corpus from ../shared/data, or a skip that says where it was looked for."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"corpus {path} is absent (set RNNLM_SHARED_DATA to the data folder)")
    return path


def needs_torch(cell: str) -> None:
    if cell != "rnn" and not torch_available():
        pytest.skip(f"cell {cell!r} needs torch, which is not installed")


@pytest.fixture(scope="session")
def pydoc_text() -> str:
    """Prose that every Python install carries (the help topics), about 120k characters."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))[:120_000]


@pytest.fixture(scope="session")
def pydoc_corpus(pydoc_text) -> Corpus:
    return Corpus.from_text(pydoc_text)


SMALL_MODEL = {"vocab_size": 400, "embed_size": 24, "hidden_size": 24}


@pytest.fixture(scope="session")
def small_models(pydoc_corpus) -> dict:
    """One briefly trained small model per available cell: enough structure to score and
    generate with, cheap to build."""
    models = {}
    for cell in ALL_CELLS:
        if cell != "rnn" and not torch_available():
            continue
        models[cell] = train(
            pydoc_corpus,
            ModelConfig(cell=cell, **SMALL_MODEL),
            TrainConfig(epochs=1, batch_size=32, seed=3, device="cpu"),
        )
    return models


@pytest.fixture(params=ALL_CELLS)
def small_lm(request, small_models):
    needs_torch(request.param)
    return small_models[request.param]

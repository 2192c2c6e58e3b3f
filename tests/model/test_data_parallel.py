"""Data-parallel training (model/data_parallel.py, model/local_launch.py): real processes
joined by gloo on the loopback, as the ``processes`` training option starts them."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import psutil
import pytest

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, WorkerLost, train
from rnnlm.model.batching import make_batch
from rnnlm.model.engines import usable_cores
from tests.conftest import needs_torch

# No dropout: each process draws its own masks, the one difference from one process.
TINY = {"vocab_size": 300, "embed_size": 16, "hidden_size": 16, "dropout": 0.0}


def launched() -> list[psutil.Process]:
    """The training processes this test process started and that are still there."""
    children = psutil.Process().children(recursive=True)
    return [p for p in children if "rnnlm.model.distributed" in " ".join(p.cmdline())]


def step_losses(corpus, model: ModelConfig, training: TrainConfig, **kw) -> tuple[list, object]:
    events: list = []
    lm = train(corpus, model, training, on_progress=events.append, **kw)
    return [e.loss for e in events if e.kind == "step"], lm


@pytest.mark.parametrize(
    ("cell", "classes"),
    [("gru", 0), ("lstm", 8)],  # the full softmax, and the class-factored one
)
def test_two_processes_take_the_steps_of_one(cell, classes, pydoc_corpus):
    """The same global batch and seed: the same losses step by step (to 1e-4), the same
    validation loss, and a model that scores the same."""
    needs_torch(cell)
    model = ModelConfig(cell=cell, output_classes=classes, ngram_order=0, **TINY)
    # batch 5 over 2 processes: parts of 2 and 3 rows, and (with 1 row left at the end of
    # an epoch, as here) a process with none.
    one = TrainConfig(epochs=1, batch_size=5, log_every=1, seed=4, device="cpu")
    losses_one, lm_one = step_losses(pydoc_corpus, model, one)
    two = TrainConfig(epochs=1, batch_size=5, log_every=1, seed=4, device="cpu", processes=2)
    losses_two, lm_two = step_losses(pydoc_corpus, model, two)
    assert len(losses_two) == len(losses_one) > 10
    np.testing.assert_allclose(losses_two[:10], losses_one[:10], rtol=0, atol=1e-4)
    np.testing.assert_allclose(losses_two, losses_one, rtol=0, atol=1e-3)
    history_one, history_two = lm_one.training_state.history, lm_two.training_state.history
    assert history_two[-1]["valid_loss"] == pytest.approx(history_one[-1]["valid_loss"], abs=1e-3)
    text = ["the value of the function is returned .", "a class may define methods ."]
    scores_one, scores_two = lm_one.score(text), lm_two.score(text)
    for a, b in zip(scores_one, scores_two, strict=True):
        assert b.logprob == pytest.approx(a.logprob, abs=1e-3)
    assert lm_two.training_state.status == "completed"
    assert launched() == []  # every process left


def test_the_rows_of_a_batch_are_shared_out_whole(pydoc_corpus):
    """Each row goes to exactly one process, weighted so that the averaged gradient is the
    batch's; a process left without rows runs one with no weight."""
    pytest.importorskip("torch")
    import torch

    from rnnlm.model.data_parallel import DataParallel

    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50, size=n) for n in (9, 4, 7, 2, 5)]
    batch = make_batch(rows)
    for world in (1, 2, 3, 5):
        seen = []
        for rank in range(world):
            part, weight = DataParallel(rank, world, torch.device("cpu")).part(batch)
            assert weight == world
            seen.extend(part.lengths.tolist())
            assert part.inputs.shape[1] == part.lengths.max()  # no padding beyond the part
        assert seen == batch.lengths.tolist()
    # 5 rows over 7 processes: two have none, and run row 0 with no weight.
    parts = [DataParallel(rank, 7, torch.device("cpu")).part(batch) for rank in range(7)]
    empty = [part for part, weight in parts if weight == 0.0]
    assert len(empty) == 2 and all(len(part.lengths) == 1 for part in empty)
    covered = [n for part, weight in parts if weight for n in part.lengths.tolist()]
    assert covered == batch.lengths.tolist()


def test_a_killed_process_ends_the_run_with_worker_lost(pydoc_corpus):
    """Kill one process mid-run: WorkerLost says which and how, the checkpoints written
    before stand, and no process is left behind."""
    needs_torch("gru")
    killed: list[int] = []

    def kill_rank_1(event) -> None:
        if event.step == 12 and not killed:
            (rank_1,) = [p for p in launched() if p.environ().get("RANK") == "1"]
            killed.append(rank_1.pid)
            os.kill(rank_1.pid, signal.SIGKILL)

    steps: list[int] = []
    config = TrainConfig(
        epochs=3, batch_size=8, log_every=1, checkpoint_every=5, device="cpu", processes=2
    )
    with pytest.raises(WorkerLost, match=r"process 1 of 2 ended \(killed by SIGKILL\)"):
        train(
            pydoc_corpus,
            ModelConfig(cell="gru", ngram_order=0, **TINY),
            config,
            on_progress=kill_rank_1,
            on_checkpoint=lambda lm: steps.append(lm.training_state.global_step),
        )
    assert killed and steps[:2] == [5, 10]
    assert launched() == []


def test_a_cancelled_run_stops_every_process_and_resumes(pydoc_corpus):
    """A stop asked for while two processes train stops both at one step with a resumable
    checkpoint; resumed on two processes, the run ends where one process ends."""
    needs_torch("gru")
    model = ModelConfig(cell="gru", ngram_order=2, **TINY)
    model = ModelConfig(**{**model.to_dict(), "dropout": 0.0})
    config = TrainConfig(epochs=2, batch_size=16, log_every=1, device="cpu", seed=1)
    whole = train(pydoc_corpus, model, config)

    stop = threading.Event()
    checkpoints: list[bytes] = []
    two = TrainConfig(**{**config.to_dict(), "processes": 2})
    cut = train(
        pydoc_corpus,
        model,
        two,
        on_progress=lambda e: e.step >= 20 and stop.set(),
        should_stop=stop.is_set,
        on_checkpoint=lambda lm: checkpoints.append(lm.to_bytes(resumable=True)),
    )
    assert cut.training_state.status == "cancelled"
    assert 20 <= cut.training_state.global_step < whole.training_state.global_step
    assert cut.ngram is None  # a cancelled run has no n-gram part yet
    resumed = train(pydoc_corpus, model, two, resume_from=LanguageModel.from_bytes(checkpoints[-1]))
    assert resumed.training_state.status == "completed"
    assert resumed.training_state.global_step == whole.training_state.global_step
    # Within 1e-3, as the losses above: two processes sum their gradients in another order
    # than one does, and Adam's per-weight scaling carries that rounding on (an uninterrupted
    # two-process run ends up to 1.5e-4 from the one-process weights here).
    for name, value in whole.engine.state_dict().items():
        np.testing.assert_allclose(resumed.engine.state_dict()[name], value, atol=1e-3)
    assert resumed.ngram is not None  # rank 0 added it, as one process does
    assert launched() == []


def test_what_cannot_run_data_parallel_is_refused():
    with pytest.raises(ValueError, match="processes must be 1 for cell 'rnn'"):
        TrainConfig(processes=2).check_compatible(ModelConfig(cell="rnn"))
    with pytest.raises(ValueError, match=r"processes \(4\) must be at most batch_size \(2\)"):
        TrainConfig(processes=4, batch_size=2).check_compatible(ModelConfig(cell="gru"))
    with pytest.raises(ValueError, match="train_config.processes must be an integer >= 1, got 0"):
        TrainConfig(processes=0)
    needs_torch("gru")
    too_many = usable_cores() + 1
    with pytest.raises(ValueError, match=f"processes \\({too_many}\\) is more than the"):
        train(
            "a b c .\n" * 50,
            ModelConfig(cell="gru", **TINY),
            TrainConfig(processes=too_many, batch_size=64, device="cpu"),
        )

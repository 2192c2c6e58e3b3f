"""rnnlm.client.plots on a real local training run: the training curves (from the engine's
ProgressEvents and from the client's TrainingEvents alike) and gradient-flow lines, drawn
into PNG files that are read back; matplotlib stays unloaded until a plot is drawn."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from itertools import pairwise

import pytest

pytest.importorskip("matplotlib")  # the dev extra brings it (rnnlm[plot])
from matplotlib.image import imread

from rnnlm.client.plots import (
    INSTALL_HINT,
    figure_gradient_flow,
    figure_training,
    plot_gradient_flow,
    plot_training,
    progress_points,
)
from rnnlm.client.types import TrainingEvent, TrainingProgress
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.training import ProgressEvent, train

EPOCHS = 3


@pytest.fixture(scope="module")
def engine_events(pydoc_text) -> list[ProgressEvent]:
    """The documented recipe: a local run collecting its progress with events.append."""
    events: list[ProgressEvent] = []
    model = ModelConfig(cell="gru", vocab_size=300, embed_size=16, hidden_size=16)
    training = TrainConfig(epochs=EPOCHS, batch_size=32, log_every=3, seed=1)
    train(pydoc_text[:15_000], model, training, on_progress=events.append)
    return events


def as_client_events(events: list[ProgressEvent]) -> list[TrainingEvent]:
    """The same run as LMClient.watch gives it: progress events among checkpoint and state
    events (the server sends the engine's fields under the same names)."""
    watched = [TrainingEvent("0-1", None, "state", state="running")]
    for n, event in enumerate(events):
        progress = TrainingProgress(**dataclasses.asdict(event))
        watched.append(TrainingEvent(f"{n}-2", None, "progress", progress=progress))
        watched.append(TrainingEvent(f"{n}-3", None, "checkpoint", checkpoint_step=event.step))
    watched.append(TrainingEvent("9-9", None, "state", state="completed", model_version=1))
    return watched


def lines_by_label(ax) -> dict[str, tuple[list, list]]:
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.get_lines()
        if not line.get_label().startswith("_")  # epoch markers are unlabelled axvlines
    }


def test_training_plot_is_a_png_of_sensible_size(engine_events, tmp_path):
    path = plot_training(engine_events, tmp_path / "curves.png", title="tiny gru")
    assert path == tmp_path / "curves.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _channels = imread(path).shape
    assert (width, height) == (1000, 700)


def test_training_figure_draws_every_report(engine_events):
    steps = [e for e in engine_events if e.kind == "step"]
    epochs = [e for e in engine_events if e.kind == "epoch"]
    assert len(epochs) == EPOCHS and steps  # the run reported both kinds

    figure = figure_training(engine_events)
    loss, ppl, rate, grad = figure.axes
    curves = lines_by_label(loss)
    assert curves["train"] == ([e.step for e in steps], [e.loss for e in steps])
    assert curves["train, epoch mean"][1] == [e.loss for e in epochs]
    assert curves["validation"] == (
        [e.step for e in epochs],
        [e.valid_loss for e in epochs],
    )
    assert lines_by_label(ppl)["validation"][1] == [e.valid_perplexity for e in epochs]
    assert ppl.get_yscale() == "log"
    assert lines_by_label(rate)["learning rate"][1] == [e.learning_rate for e in engine_events]
    assert lines_by_label(grad)["gradient norm"][1] == [e.grad_norm for e in steps]
    # Each panel marks the end of every epoch.
    for ax in figure.axes:
        markers = [line for line in ax.get_lines() if line.get_label().startswith("_")]
        assert [m.get_xdata()[0] for m in markers] == [e.step for e in epochs]


def test_client_events_give_the_same_points_as_engine_events(engine_events):
    watched = as_client_events(engine_events)
    assert progress_points(watched) == progress_points(engine_events)
    assert len(progress_points(watched)) == len(engine_events)


def test_a_resumed_run_replaces_the_reports_after_its_checkpoint(engine_events):
    # Interrupted after its 5th report, resumed from a checkpoint before its 3rd: the
    # reports from the 3rd on come again, and the plot shows each step once.
    replayed = [*engine_events[:5], *engine_events[2:]]
    points = progress_points(replayed)
    expected = [(e.kind, e.step) for e in engine_events]
    assert [(p.kind, p.step) for p in points] == expected
    # At the step that ends an epoch the step's report comes, then the epoch's: a resumed
    # run that starts again with that step's report replaces both.
    shared = next(
        i
        for i, (a, b) in enumerate(pairwise(engine_events))
        if a.step == b.step and (a.kind, b.kind) == ("step", "epoch")
    )
    replayed = [*engine_events, *engine_events[shared:]]
    assert [(p.kind, p.step) for p in progress_points(replayed)] == expected


def test_nothing_to_plot_is_a_clear_error(tmp_path):
    state_only = [TrainingEvent("1-1", None, "state", state="running")]
    with pytest.raises(ValueError, match="no progress events to plot"):
        plot_training(state_only, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(TypeError, match="not a progress event: dict"):
        figure_training([{"step": 1, "loss": 2.0}])


def test_gradient_flow_draws_one_line_per_model(tmp_path):
    curves = {
        "rnn": [(k, 0.5**k) for k in range(1, 21)],
        "lstm": [(k, 0.9**k) for k in range(20, 0, -1)],  # unordered: sorted by k
    }
    figure = figure_gradient_flow(curves, title="gradient flow")
    (ax,) = figure.axes
    drawn = lines_by_label(ax)
    assert set(drawn) == {"rnn", "lstm"}
    assert drawn["lstm"] == ([k for k in range(1, 21)], [0.9**k for k in range(1, 21)])
    assert ax.get_yscale() == "log"

    path = plot_gradient_flow(curves, tmp_path / "flow.png")
    assert imread(path).shape[:2] == (500, 800)
    with pytest.raises(ValueError, match="'gru' has no points"):
        figure_gradient_flow({"gru": []})


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_the_client_loads_no_matplotlib():
    done = run_python(
        "import json, sys\n"
        "import rnnlm.client, rnnlm.client.cli, rnnlm.client.plots, rnnlm.client.cli_plots\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('matplotlib'))))\n"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_without_matplotlib_the_error_says_what_to_install():
    # A None entry in sys.modules makes `import matplotlib` fail as if it were not installed.
    done = run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from rnnlm.client.plots import PlotDependencyError, plot_gradient_flow\n"
        "try:\n"
        "    plot_gradient_flow({'rnn': [(1, 1.0)]}, 'never.png')\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("PlotDependencyError ")
    assert INSTALL_HINT in done.stdout


def test_rnnlm_plot_without_matplotlib_is_one_line_before_any_call():
    # Port 1 has no server: the command must stop before it calls one.
    done = run_python(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from rnnlm.client.cli import main\n"
        "sys.exit(main(['--target', '127.0.0.1:1', 'plot', 'some-job']))\n"
    )
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and INSTALL_HINT in done.stderr

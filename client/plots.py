"""Pictures of training: loss, perplexity, learning rate and gradient norm against the step
(``plot_training``), and how a gradient fades with distance (``plot_gradient_flow``).

    events = []
    lm = train(corpus, ModelConfig(...), TrainConfig(...), on_progress=events.append)
    plot_training(events, "curves.png")                 # a local run (rnnlm.model)
    plot_training(client.watch(job_id), "curves.png")   # a job on a server (waits for its end)

matplotlib is the optional extra ``rnnlm[plot]``. It is imported when a picture is drawn,
never by ``import rnnlm.client``, and only through its object-oriented API on an Agg canvas:
no pyplot, so the global backend, an interactive session's figures and other threads are
left alone. The format follows the file's suffix (``.png``, ``.svg``, ``.pdf``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: importing the client must not load matplotlib
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'rnnlm[plot]'"
DPI = 100  # 10 x 7 inches -> 1000 x 700 pixels


class PlotDependencyError(ImportError):
    """matplotlib, which drawing needs, is not installed."""


@dataclass(frozen=True)
class ProgressPoint:
    """What the plots need of one progress report. ``kind`` is "step" (the loss over the
    steps since the previous report) or "epoch" (the epoch's mean loss, and validation)."""

    kind: str
    step: int
    epoch: int
    loss: float
    perplexity: float
    learning_rate: float
    grad_norm: float
    valid_loss: float | None = None
    valid_perplexity: float | None = None


def progress_points(events: Iterable[Any]) -> list[ProgressPoint]:
    """The progress reports among ``events``, in order. Accepted, by their attribute names:
    the client's ``TrainingEvent`` (from ``LMClient.watch``; other kinds are skipped), its
    ``TrainingProgress``, and the engine's ``rnnlm.model.training.ProgressEvent``.

    A resumed run restarts from its last checkpoint, so its first reports can have smaller
    steps than the interrupted run's last ones: those later, replaced reports are dropped,
    leaving the run as it went on (one curve, steps never going back)."""
    points: list[ProgressPoint] = []
    for event in events:
        progress = _progress_of(event)
        if progress is None:
            continue
        point = _point(progress)
        while points and _replaced(points[-1], point):
            points.pop()
        points.append(point)
    return points


def _replaced(earlier: ProgressPoint, later: ProgressPoint) -> bool:
    """``later`` comes from a resumed run that went back past ``earlier``. Within one run
    the steps never go back, and at a step that ends an epoch the step's report comes
    first, then the epoch's; any other order at one step is a report made again."""
    if earlier.step != later.step:
        return earlier.step > later.step
    return not (earlier.kind != "epoch" and later.kind == "epoch")


def _progress_of(event: Any) -> Any:
    if hasattr(event, "step") and hasattr(event, "loss"):  # ProgressEvent, TrainingProgress
        return event
    if hasattr(event, "progress") and hasattr(event, "kind"):  # TrainingEvent
        return event.progress  # None unless kind == "progress"
    raise TypeError(
        f"not a progress event: {type(event).__name__}; pass TrainingEvents (LMClient.watch) "
        "or ProgressEvents (train(..., on_progress=events.append))"
    )


def _point(progress: Any) -> ProgressPoint:
    valid_loss = getattr(progress, "valid_loss", None)
    valid_perplexity = getattr(progress, "valid_perplexity", None)
    return ProgressPoint(
        kind=str(getattr(progress, "kind", "step")),
        step=int(progress.step),
        epoch=int(getattr(progress, "epoch", 0)),
        loss=float(progress.loss),
        perplexity=float(progress.perplexity),
        learning_rate=float(getattr(progress, "learning_rate", float("nan"))),
        grad_norm=float(getattr(progress, "grad_norm", float("nan"))),
        valid_loss=None if valid_loss is None else float(valid_loss),
        valid_perplexity=None if valid_perplexity is None else float(valid_perplexity),
    )


# -- training curves ---------------------------------------------------------------------


def plot_training(events: Iterable[Any], path: str | Path, title: str | None = None) -> Path:
    """Draw the training curves of ``events`` (see ``figure_training``) into ``path``;
    returns the path. ValueError when there is no progress report among them."""
    return _save(figure_training(events, title), path)


def figure_training(events: Iterable[Any], title: str | None = None) -> Figure:
    """Four panels against the step: loss and perplexity (log scale), each with the
    training curve (one point per progress report), each epoch's mean training loss and
    its validation; the learning rate; the gradient norm before clipping. Dotted vertical
    lines mark the ends of epochs."""
    points = progress_points(events)
    if not points:
        raise ValueError(
            "no progress events to plot: a run reports progress every log_every steps "
            "and at the end of each epoch"
        )
    figure = _new_figure()
    from matplotlib.ticker import MaxNLocator

    axes = figure.subplots(2, 2, sharex=True)
    loss, ppl, rate, grad = axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1]
    steps = [p for p in points if p.kind != "epoch"]
    epochs = [p for p in points if p.kind == "epoch"]
    validated = [p for p in epochs if p.valid_loss is not None]

    for ax, name in ((loss, "loss"), (ppl, "perplexity")):
        if steps:
            _line(ax, steps, name, "train", linewidth=1.2)
        if epochs:
            _line(ax, epochs, name, "train, epoch mean", linestyle="none", marker="o")
        if validated:
            _line(ax, validated, "valid_" + name, "validation", marker="s")
    loss.set_ylabel("loss (nats per token)")
    ppl.set_ylabel("perplexity")
    ppl.set_yscale("log")
    _plain_numbers(ppl)
    # Every report carries the rate in force; an epoch's report repeats its last step's
    # gradient norm, so the norm is drawn from step reports when there are any.
    _line(rate, points, "learning_rate", "learning rate")
    rate.set_ylabel("learning rate")
    _line(grad, steps or epochs, "grad_norm", "gradient norm")
    grad.set_ylabel("gradient norm (before clipping)")

    for ax in (loss, ppl, rate, grad):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        for p in epochs:
            ax.axvline(p.step, color="0.6", linestyle=":", linewidth=0.8)
        ax.grid(True, alpha=0.3)
    for ax in (loss, ppl):
        ax.legend(loc="upper right", fontsize="small")
    for ax in (rate, grad):
        ax.set_xlabel("step" + (" (dotted: end of an epoch)" if epochs else ""))
    if title:
        figure.suptitle(title)
    return figure


def _plain_numbers(ax: Axes) -> None:
    """Label a log axis 200, 300 rather than 2x10^2, 3x10^2 (perplexities are read as is);
    LogFormatter still labels only some minor ticks when the axis spans decades."""
    from matplotlib.ticker import LogFormatter

    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))


def _line(ax: Axes, points: Sequence[ProgressPoint], field: str, label: str, **style: Any) -> None:
    ax.plot([p.step for p in points], [getattr(p, field) for p in points], label=label, **style)


# -- gradient flow -----------------------------------------------------------------------


def plot_gradient_flow(
    curves: Mapping[str, Sequence[tuple[int, float]]], path: str | Path, title: str | None = None
) -> Path:
    """Draw ``curves`` (see ``figure_gradient_flow``) into ``path``; returns the path."""
    return _save(figure_gradient_flow(curves, title), path)


def figure_gradient_flow(
    curves: Mapping[str, Sequence[tuple[int, float]]], title: str | None = None
) -> Figure:
    """One line per model: ``curves[name]`` is ``[(k, norm), ...]``, the mean norm of
    dL_t/dh_{t-k} at distance k, on a log scale: a vanishing gradient is a falling line.
    Norms of 0 (underflow) cannot be shown on a log scale and leave a gap."""
    if not curves:
        raise ValueError("no gradient-flow curves to plot: pass {model name: [(k, norm), ...]}")
    empty = [name for name, curve in curves.items() if not curve]
    if empty:
        raise ValueError(f"gradient-flow curve {empty[0]!r} has no points; each needs (k, norm)")
    figure = _new_figure(size=(8, 5))
    from matplotlib.ticker import MaxNLocator

    ax = figure.subplots()
    for name, curve in curves.items():
        ordered = sorted(curve)
        ax.plot([k for k, _ in ordered], [norm for _, norm in ordered], marker=".", label=name)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("distance k (steps back in time)")
    ax.set_ylabel(r"mean $\Vert\partial L_t \,/\, \partial h_{t-k}\Vert$")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return figure


# -- matplotlib --------------------------------------------------------------------------


def require_matplotlib() -> None:
    """Raise PlotDependencyError, saying what to install, unless matplotlib can be loaded."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as err:
        raise PlotDependencyError(
            f"drawing plots needs matplotlib, which is not installed ({err}): {INSTALL_HINT}"
        ) from err


def _new_figure(size: tuple[float, float] = (10, 7)) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # draws without a display, whatever backend pyplot uses
    return figure


#: The picture formats written (by the file's suffix; none: .png).
FORMATS = (".png", ".svg", ".pdf")


def picture_path(path: str | Path) -> Path:
    """``path`` as it will be written: ``.png`` added when it has no suffix; a suffix
    that is not a picture format is refused (ValueError), before any work is done."""
    path = Path(path)
    if not path.suffix:
        return path.with_suffix(".png")
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"cannot draw into {path.name!r}: the file name must end in {', '.join(FORMATS)}"
        )
    return path


def _save(figure: Figure, path: str | Path) -> Path:
    path = picture_path(path)
    figure.savefig(path, dpi=DPI)
    return path

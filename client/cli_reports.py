"""The report commands of ``rnnlm``: measurements of trained models on held-out text.

rnnlm gradients news news-lstm --file held_out.txt          # k, then a column a model
rnnlm gradients news -s "the cat sat on the mat ." --json   # one JSON object a model
rnnlm gradients news news-lstm --file held_out.txt --plot flow.png
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from rnnlm.client import _output as out
from rnnlm.client.sync import LMClient
from rnnlm.client.types import GradientFlow

GRADIENTS_EPILOG = """\
For each model: the mean norm of dL_t/dh_{t-k}, the gradient of the loss at a word with
respect to the recurrent state k steps earlier (the top layer's; an LSTM's h), over every
position of the held-out sentences that has a state that far back. The last row is the
factor fitted per step back: well below 1 the gradient vanishes (a word ten steps back gets
0.5^10 = 1/1000 of it at 0.5), above 1 it explodes. Sentences come with -s (repeatable),
--file (one a line) or on stdin; every model is measured on the same ones."""


def add_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the commands with the parser's ``command(name, func, help, **kw)``."""
    p = command(
        "gradients",
        cmd_gradients,
        "the vanishing-gradient report: |dL_t/dh_{t-k}| by distance k, one column a model",
        epilog=GRADIENTS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="the models to measure")
    # Named "sentences", as in score: words after a flag that argparse leaves over join them.
    p.add_argument(
        "-s",
        "--sentence",
        dest="sentences",
        action="append",
        default=[],
        metavar="SENTENCE",
        help="a held-out sentence (repeat the flag for more)",
    )
    p.add_argument("--file", help="held-out sentences, one per line ('-': stdin)")
    p.add_argument(
        "--max-distance", type=int, default=20, help="the largest distance k, 1-200 (default 20)"
    )
    p.add_argument("--plot", metavar="FILE", help="also draw one line per model (.png, .svg)")
    p.add_argument("--title", help="the plot's title (default: none)")


def cmd_gradients(args: argparse.Namespace, client: LMClient) -> int:
    if args.plot and not _can_draw(args.plot):
        return 1
    sentences = held_out(args)
    reports = [client.gradient_flow(m, sentences, args.max_distance) for m in args.models]
    if args.json:
        for report in reports:
            print(out.to_json(report))
    else:
        print(flow_table(reports))
    if args.plot:
        from rnnlm.client.plots import plot_gradient_flow  # loads matplotlib when it draws

        curves = {f"{r.model_id} ({r.cell})": r.curve for r in reports}
        out.eprint(f"wrote {plot_gradient_flow(curves, args.plot, args.title)}")
    return 0


def _can_draw(path: str) -> bool:
    """matplotlib is there and ``path`` names a picture format; else say what to do
    (before any call: the fix is an install or a file name, not a retry)."""
    from rnnlm.client import plots

    plots.picture_path(path)  # ValueError: a one-line error
    try:
        plots.require_matplotlib()
    except plots.PlotDependencyError as err:
        out.eprint(f"error: {err}")
        return False
    return True


def held_out(args: argparse.Namespace) -> list[str]:
    """The -s sentences and the --file lines (stdin without either); the server refuses
    none at all."""
    lines = list(args.sentences)
    if args.file and args.file != "-":
        with open(args.file, encoding="utf-8") as f:
            lines += f.read().splitlines()
    elif args.file == "-" or not lines:
        if sys.stdin.isatty():
            out.eprint("reading sentences from stdin, one per line (Ctrl-D ends)")
        lines += sys.stdin.read().splitlines()
    return [line.strip() for line in lines if line.strip()]


def flow_table(reports: list[GradientFlow]) -> str:
    """k, then each model's mean norm at k (blank past its reach), and the decay fitted per
    step as the last row."""

    def norm(report: GradientFlow, k: int) -> str:
        return f"{report.mean_norms[k]:.4g}" if k < len(report.mean_norms) else ""

    longest = max(len(r.distances) for r in reports)
    rows: list[list[object]] = [[k, *(norm(r, k) for r in reports)] for k in range(longest)]
    decays = [f"{r.decay_per_step:.4g}" if r.decay_per_step is not None else "-" for r in reports]
    rows.append(["per step", *decays])
    headers = ["k", *(f"{r.model_id} ({r.cell})" for r in reports)]
    return out.table(headers, rows, right=range(len(headers)))

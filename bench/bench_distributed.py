"""Data-parallel training throughput on the CPU: 1 process against 2 (``processes=N``).

    python bench/bench_distributed.py                   # GRU 128 and 512: ~5 min on 2 idle cores
    python bench/bench_distributed.py --quick           # a tiny model, a few steps (CI smoke run)
    python bench/bench_distributed.py --cells gru,lstm --sizes 128:300 --rounds 5

Each cell trains the same model on the same text for one epoch with ``TrainConfig(processes=N)``
(``model/local_launch.py``): 1 process with every usable core's math threads (what a
one-process run gets), 1 process with 1 thread (for reference), and N processes, which the
launcher gives ``usable_cores() // N`` threads each. ``batch_size`` is the global batch, so
all of them take the same steps. The figure is the epoch event's training tokens/s (the
steps alone); "start-up" is the rest of the wall time of ``train()``: tokenising and the
vocabulary in every case, and for N processes also starting them (Python and torch imports),
their rendezvous, sending rank 0's start and returning the model: a few seconds that a short
run pays once. The cells take turns, round after round (the order rotated each round), so
that other programs on a shared machine fall on all of them alike; the table shows the
median round and the range over the rounds, with the load average when the cell started
and the CPU that other programs took during it (% of one core). The first step losses of
every cell are compared with those of the 1-process run (dropout 0: float rounding only).
The n-gram part (``ngram_order``) is off and there is no validation split: neither is what
is measured. Never part of the tests: figures depend on the machine and its other load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import torch

from rnnlm.model import Corpus, ModelConfig, TrainConfig, train
from rnnlm.model.engines import usable_cores

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/wikitext-2/valid.txt"
# Characters of WikiText-2 raw text per training sentence, roughly (its first 736,000 gave
# 5,888 sentences): how much text a number of steps needs. The table shows the real steps.
CHARS_PER_SENTENCE = 125
COMPARED_STEPS = 10  # first step losses compared between cells


def cpu_now() -> tuple[float, float, float]:
    """(this process and its reaped children's CPU seconds, the machine's busy CPU seconds,
    the clock): the children of a data-parallel run are counted once they have exited."""
    mine = psutil.Process().cpu_times()
    total = psutil.cpu_times()
    busy = sum(total) - total.idle - getattr(total, "iowait", 0.0)
    ours = mine.user + mine.system + mine.children_user + mine.children_system
    return ours, busy, time.perf_counter()


@contextlib.contextmanager
def children_log() -> Iterator[Path]:
    """The training processes inherit stderr and log every epoch there: send it to a file
    while they run (printed when the run fails) to keep the table readable."""
    with tempfile.NamedTemporaryFile(prefix="rnnlm-bench-", suffix=".log") as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            yield Path(log.name)
        except BaseException:
            os.dup2(saved, 2)
            print(Path(log.name).read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run_cell(corpus: Corpus, model: ModelConfig, batch: int, procs: int, threads: int) -> dict:
    """One epoch of training with ``procs`` processes (``threads`` math threads each)."""
    config = TrainConfig(epochs=1, batch_size=batch, valid_fraction=0.0, patience=None,
                         log_every=1, device="cpu", processes=procs)  # fmt: skip
    events: list = []
    previous = torch.get_num_threads()
    if procs == 1:  # trains in this process (the launcher sets its processes' threads)
        torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    before = cpu_now()
    try:
        with children_log() if procs > 1 else contextlib.nullcontext():
            train(corpus, model, config, on_progress=events.append)
    finally:
        torch.set_num_threads(previous)
    ours, busy, wall = (b - a for a, b in zip(before, cpu_now()))
    epoch = next(e for e in events if e.kind == "epoch")
    return {
        "procs": procs,
        "threads": threads,
        "steps": epoch.step,
        "tok_s": epoch.tokens_per_second,
        "wall": wall,
        "startup": wall - epoch.elapsed_seconds,
        "load": load,
        "other": 100 * max(0.0, busy - ours) / wall,
        "losses": [e.loss for e in events if e.kind == "step"][:COMPARED_STEPS],
    }


def text_for(path: str, sentences: int) -> str:
    """The first lines of the corpus, about ``sentences`` sentences of them."""
    text = Path(path).read_text(encoding="utf-8")
    cut = text.find("\n", sentences * CHARS_PER_SENTENCE)
    return text if cut < 0 else text[:cut]


def parse_sizes(spec: str) -> list[tuple[int, int]]:
    """``--sizes``: "hidden:steps" pairs, comma-separated."""
    sizes = []
    for pair in spec.split(","):
        hidden, _, steps = pair.partition(":")
        if not (hidden.strip().isdigit() and steps.strip().isdigit()):
            raise ValueError(f"--sizes takes hidden:steps pairs such as 128:200, got {pair!r}")
        sizes.append((int(hidden), int(steps)))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", default=os.environ.get("RNNLM_BENCH_CORPUS", str(DEFAULT_CORPUS))
    )
    parser.add_argument("--quick", action="store_true", help="a tiny model, 20 steps, 1 round")
    parser.add_argument("--cells", default="gru", help="gru, lstm or both (comma-separated)")
    parser.add_argument("--sizes", help="hidden:steps pairs (default 128:150,512:50; quick 32:20)")
    parser.add_argument("--vocab", type=int, help="vocabulary size (default 8000; quick 2000)")
    parser.add_argument("--batch-size", type=int, default=32, help="the global batch")
    parser.add_argument("--processes", type=int, default=2, help="processes of the parallel run")
    parser.add_argument("--rounds", type=int, help="runs of each cell (default 3; quick 1)")
    args = parser.parse_args(argv)
    if not Path(args.corpus).is_file():
        print(f"skipped: corpus {args.corpus} not found (set --corpus or RNNLM_BENCH_CORPUS)")
        return 0
    cores = usable_cores()
    if cores < 2:
        print(f"skipped: {cores} usable core; data-parallel training needs one per process")
        return 0
    if not 2 <= args.processes <= min(cores, args.batch_size):
        parser.error(
            f"--processes must be from 2 to the usable cores ({cores}) and at most "
            f"--batch-size ({args.batch_size}), got {args.processes}"
        )
    try:
        sizes = parse_sizes(args.sizes or ("32:20" if args.quick else "128:150,512:50"))
    except ValueError as err:
        parser.error(str(err))
    vocab = args.vocab or (2000 if args.quick else 8000)
    rounds = args.rounds or (1 if args.quick else 3)
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    if not cells or set(cells) - {"gru", "lstm"}:
        parser.error(f"--cells takes gru and/or lstm (data-parallel cells), got {args.cells!r}")
    layouts = [(1, cores), (1, 1), (args.processes, cores // args.processes)]
    print(
        f"# {cores} usable cores ({os.cpu_count()} CPUs), torch {torch.__version__}, load "
        f"average {os.getloadavg()[0]:.2f}; {args.corpus}; vocabulary {vocab} (min_count 1), "
        f"batch {args.batch_size}, adamw, dropout 0, 1 epoch, {rounds} rounds (median shown)"
    )
    models = {}  # (cell, hidden) -> (model config, corpus)
    for cell in cells:
        for hidden, steps in sizes:
            shape = {"embed_size": hidden, "hidden_size": hidden, "vocab_size": vocab}
            model = ModelConfig(cell=cell, dropout=0.0, min_count=1, ngram_order=0, **shape)
            models[cell, hidden] = (
                model,
                Corpus.from_text(text_for(args.corpus, steps * args.batch_size)),
            )
    for model, _ in models.values():  # untimed: loads NLTK's data and warms torch up
        train(text_for(args.corpus, 2 * args.batch_size), model,
              TrainConfig(epochs=1, batch_size=args.batch_size, valid_fraction=0.0))  # fmt: skip
    runs: dict[tuple, list[dict]] = {}
    for r in range(rounds):
        for (cell, hidden), (model, corpus) in models.items():
            turn = layouts[r % len(layouts) :] + layouts[: r % len(layouts)]
            for procs, threads in turn:
                row = run_cell(corpus, model, args.batch_size, procs, threads)
                runs.setdefault((cell, hidden, procs, threads), []).append(row)
                shown = {k: round(v, 2) for k, v in row.items() if k != "losses"}
                print(f"# round {r + 1} {cell} {hidden}: {shown}", flush=True)
    report(models, layouts, runs)
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    return 0


def report(models: dict, layouts: list[tuple[int, int]], runs: dict[tuple, list[dict]]) -> None:
    header = (
        f"{'model':10} {'procs x threads':>15} {'steps':>5} {'train tok/s':>11} "
        f"{'range':>15} {'ratio':>6} {'wall s':>7} {'start-up s':>10} {'load':>5} {'other':>6}"
    )
    lines, notes = [], []
    for cell, hidden in models:
        base = None
        for procs, threads in layouts:
            cell_runs = sorted(runs[cell, hidden, procs, threads], key=lambda x: x["tok_s"])
            row = cell_runs[len(cell_runs) // 2]
            base = base or row
            spread = f"{cell_runs[0]['tok_s']:,.0f}-{cell_runs[-1]['tok_s']:,.0f}"
            lines.append(
                f"{cell + ' ' + str(hidden):10} {f'{procs} x {threads}':>15} {row['steps']:>5} "
                f"{row['tok_s']:>11,.0f} {spread:>15} {row['tok_s'] / base['tok_s']:>5.2f}x "
                f"{row['wall']:>7.1f} {row['startup']:>10.1f} {row['load']:>5.2f} "
                f"{row['other']:>5.0f}%"
            )
            if row is not base:
                if procs > 1:
                    notes.append(
                        f"{cell} {hidden}: {procs} processes / 1 ({base['procs']} x "
                        f"{base['threads']}): {row['tok_s'] / base['tok_s']:.2f}x training "
                        f"tokens/s, {row['wall'] / base['wall']:.2f}x wall time"
                    )
                diff = max(abs(a - b) for a, b in zip(row["losses"], base["losses"], strict=True))
                notes.append(
                    f"{cell} {hidden}: first {len(row['losses'])} step losses, {procs} x "
                    f"{threads} against {base['procs']} x {base['threads']}: max |diff| {diff:.1e}"
                )
        lines.append("")
    print(
        "\nTraining tokens/s (epoch event, steps only); ratio: against the first row of the "
        "model;\nload: 1-min load average at the cell's start; other: CPU of other programs "
        "during it, % of one core"
    )
    print("\n".join([header, "-" * len(header), *lines, *notes]))


if __name__ == "__main__":
    sys.exit(main())

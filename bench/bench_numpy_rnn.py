"""How close the NumPy ``rnn``'s training step comes to the machine's matrix-product rate.

    python bench/bench_numpy_rnn.py             # vocabulary 8,000, hidden 100, batch 32, BPTT 4
    python bench/bench_numpy_rnn.py --quick     # fewer steps (CI smoke run)

One process. In the same run, interleaved, so that the machine's load hits both alike:
(1) the float32 matrix-product rate of this machine at the output layer's shape, (N, H) @
(H, V), and (2) training steps of the NumPy engine on WikiText-2 sentences (full BPTT and
``bptt_truncate``; the full softmax and the class-factored one). Each step's useful FLOPs are
counted from its products (output layer forward and its two backward products, 6 N H V;
the recurrence and its backward, 6 N H^2; the class layer, by the classes the targets
visit), and the table gives achieved GFLOP/s, the share of the measured product rate
(the issue's goal: 70% for the full softmax with BPTT 4), and tokens/s. The math library's
threads are shown; set OMP_NUM_THREADS to compare.

Each training cell is paired with a product-rate cell run just before it, and its share is
of that rate: on a shared machine the rate moves by a third from one minute to the next
(120-171 GFLOP/s within one run on 2 threads), and a share of the best rate of the whole run
compares the training with a quieter moment than its own. The table gives the median over
the rounds, the range of the shares beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from rnnlm.model import ModelConfig, TrainConfig
from rnnlm.model.batching import length_sorted_batches
from rnnlm.model.corpus import Corpus
from rnnlm.model.dataset import prepare, target_counts
from rnnlm.model.engines import create_engine

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RNNLM_SHARED_DATA") or ROOT / "shared/data")


def gemm_rate(n: int, h: int, v: int, seconds: float) -> float:
    """GFLOP/s of float32 (n, h) @ (h, v), the output layer's product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, h), dtype=np.float32)
    b = rng.standard_normal((h, v), dtype=np.float32)
    out = np.empty((n, v), dtype=np.float32)
    np.matmul(a, b, out=out)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        np.matmul(a, b, out=out)
        count += 1
    return 2 * n * h * v * count / (time.perf_counter() - started) / 1e9


def step_flops(batch, hidden: int, vocab: int, engine) -> float:
    n = batch.num_tokens
    if engine.bounds is None:
        output = 6 * n * hidden * vocab
    else:  # class layer, and each token's class's words
        sizes = np.diff(engine.bounds)
        classes = np.searchsorted(engine.bounds, batch.targets[batch.mask], side="right") - 1
        output = 6 * hidden * (n * len(sizes) + int(sizes[classes].sum()))
    padded = batch.inputs.size
    return output + 6 * padded * hidden * hidden


def train_rate(engine, batches, seconds: float, hidden: int, vocab: int) -> tuple[float, float]:
    """(GFLOP/s, tokens/s) of training steps over ``batches`` for about ``seconds``."""
    flops, tokens, spent, i = 0.0, 0, 0.0, 0
    while spent < seconds:
        batch = batches[i % len(batches)]
        i += 1
        started = time.perf_counter()
        engine.train_step(batch)
        spent += time.perf_counter() - started
        flops += step_flops(batch, hidden, vocab, engine)
        tokens += batch.num_tokens
    return flops / spent / 1e9, tokens / spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short cells")
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--hidden", type=int, default=100)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, help="per cell and round (default 4; quick 1)")
    parser.add_argument("--rounds", type=int, help="rounds of paired cells (default 5; quick 2)")
    args = parser.parse_args(argv)
    seconds = args.seconds or (1.0 if args.quick else 4.0)
    args.rounds = args.rounds or (2 if args.quick else 5)
    text = (DATA / "wikitext-2/valid.txt").read_text(encoding="utf-8")
    corpus = Corpus.from_text(text)
    configs = {
        "full, BPTT 4": ({"output_classes": 0}, 4),
        "full, full BPTT": ({"output_classes": 0}, None),
        "classes, BPTT 4": ({}, 4),
    }
    threads = os.environ.get("OMP_NUM_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS") or "-"
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, OMP_NUM_THREADS="
        f"{threads}; NumPy {np.__version__}; vocabulary {args.vocab}, hidden {args.hidden}, "
        f"batch {args.batch}; {seconds:g} s a cell, {args.rounds} rounds interleaved"
    )
    engines = {}
    batches = []
    for name, (extra, truncate) in configs.items():
        classes = extra.get("output_classes", round(args.vocab**0.5))
        model = ModelConfig(cell="rnn", vocab_size=args.vocab, hidden_size=args.hidden,
                            output_classes=classes, ngram_order=0)  # fmt: skip
        train_config = TrainConfig(batch_size=args.batch, bptt_truncate=truncate, optimizer="sgd")
        _, vocab, train_seqs, _, _, _ = prepare(corpus, model, train_config, None)
        engine = create_engine(model, len(vocab), word_counts=target_counts(train_seqs, len(vocab)))
        engine.configure_training("sgd", 0.1, 5.0, truncate)
        engines[name] = engine
        if not batches:
            rng = np.random.default_rng(0)
            batches = [b for _, b in length_sorted_batches(train_seqs, args.batch, rng)][:200]
    mean_tokens = np.mean([b.num_tokens for b in batches])
    # Per configuration, a (rate, GFLOP/s, tokens/s) a round.
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in engines}
    for _ in range(args.rounds):
        for name, engine in engines.items():
            rate = gemm_rate(int(mean_tokens), args.hidden, args.vocab, seconds / 2)
            rounds[name].append(
                (rate, *train_rate(engine, batches, seconds, args.hidden, args.vocab))
            )
    rates = [r[0] for runs in rounds.values() for r in runs]
    print(f"float32 product rate at ({mean_tokens:.0f}, {args.hidden}) @ ({args.hidden}, "
          f"{args.vocab}): median {np.median(rates):.1f} GFLOP/s, {min(rates):.1f}-"
          f"{max(rates):.1f} over {len(rates)} cells")  # fmt: skip
    header = f"{'configuration':<18} {'GFLOP/s':>8} {'of limit':>9} {'(range)':>11} {'tokens/s':>9}"
    print("\n".join([header, "-" * len(header)]))
    tokens_s = {}
    for name, runs in rounds.items():
        shares = [100 * flops / rate for rate, flops, _ in runs]
        tokens_s[name] = float(np.median([t for *_, t in runs]))
        flops = float(np.median([f for _, f, _ in runs]))
        share, spread = "-", ""
        if "full" in name:
            share, spread = f"{np.median(shares):.0f}%", f"{min(shares):.0f}-{max(shares):.0f}%"
        print(f"{name:<18} {flops:>8.1f} {share:>9} {spread:>11} {tokens_s[name]:>9,.0f}")
    ratio = tokens_s["classes, BPTT 4"] / tokens_s["full, BPTT 4"]
    print(f"classes / full softmax, tokens/s (medians): {ratio:.1f}x")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The output layers at WikiText-2's full vocabulary: full softmax, class-factored softmax
(``output_classes``) and adaptive softmax (``adaptive_cutoffs``), for a gru/lstm; the full
and class-factored softmax for the NumPy rnn (it has no adaptive softmax).

    python bench/bench_output_layers.py                 # LSTM 2x200, 3 epochs each (~15 min)
    python bench/bench_output_layers.py --quick         # small model and text (< 1 minute)
    python bench/bench_output_layers.py --cell gru --epochs 2 --cutoffs 2000,6000
    OMP_NUM_THREADS=1 python bench/bench_output_layers.py --cell rnn --optimizer adam  # ~10 min

Every word of ``wikitext-2/valid.txt``'s training split is in the vocabulary (``min_count``
1, no size cap: 11,651 words here, against which the full softmax's output layer is ~80% of
the training FLOPs of an LSTM 2x200). Two parts:

1. Speed, side by side: each output layer trains one epoch on the whole text, in rounds
   (full, classes, adaptive, full, ...), so that the machine's load falls on all of them
   alike; the best training tokens/s of each is kept, and scoring tokens/s (batches of 64
   test sentences, the network alone) is measured the same way. Ratios are to the full
   softmax. (The whole text, not a slice: a slice builds its own, smaller vocabulary;
   250,000 characters of it hold 5,565 words, where the full softmax costs half as much.)
2. Quality: each trains ``--epochs`` epochs on the whole of valid.txt (seed 0, the engine's
   defaults otherwise) and is scored on the start of test.txt: per-token perplexity of the
   network alone, and its change against the full softmax; the training tokens/s of these
   runs is printed too (one after the other, not interleaved).

Targets from issue 13: training at least 2.5x the full softmax's tokens/s, perplexity within
5%. Thread counts and the load average are printed beside the figures. Never part of the tests.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch

from rnnlm.model import Corpus, LanguageModel, ModelConfig, TrainConfig, train
from rnnlm.model.config import OPTIMIZERS
from rnnlm.model.dataset import prepare

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RNNLM_SHARED_DATA") or ROOT / "shared/data")
FULL = {"embed_size": 200, "hidden_size": 200, "num_layers": 2}
QUICK = {"embed_size": 32, "hidden_size": 32, "num_layers": 1}
# The NumPy rnn: one layer, its input matrix maps a word straight to the state (no embedding).
RNN_FULL, RNN_QUICK = {"hidden_size": 200}, {"hidden_size": 32}
SPEED_TARGET, PERPLEXITY_TOLERANCE = 2.5, 0.05


def layer_options(cell: str, cutoffs: tuple[int, ...], vocab: int) -> dict[str, dict]:
    """Each output layer's ModelConfig fields: the full softmax, about sqrt(V) word classes
    (the default from a vocabulary of 1,000 on), and for a gru/lstm the adaptive softmax."""
    layers = {
        "full": {"output_classes": 0},
        "classes": {"output_classes": round(math.sqrt(vocab))},
    }
    if cell != "rnn":
        layers["adaptive"] = {"output_classes": 0, "adaptive_cutoffs": cutoffs}
    return layers


def config(args, sizes: dict, layer: dict) -> ModelConfig:
    return ModelConfig(
        cell=args.cell,
        vocab_size=10**7,  # no cap: every word of the corpus
        min_count=1,
        ngram_order=0,
        **sizes,
        **layer,
    )


def vocabulary_size(text: str, model_config: ModelConfig) -> int:
    """The vocabulary training will build: every word of its training split (the split is
    the one ``train`` makes, seed 0), the special tokens included."""
    corpus = Corpus.from_text(text)
    prepared = prepare(corpus, model_config, TrainConfig(seed=0), None)
    return len(prepared.vocab)


def train_run(
    text: str, model_config: ModelConfig, epochs: int, optimizer: str
) -> tuple[LanguageModel, float]:
    """The trained model and its training tokens/s over all its epochs (each epoch's as
    training reports it; epochs are the same tokens, so the harmonic mean is the whole's)."""
    rates: list[float] = []

    def progress(event) -> None:
        if event.kind == "epoch":
            rates.append(event.tokens_per_sec)

    train_config = TrainConfig(
        epochs=epochs, seed=0, device="cpu", log_every=10**9, optimizer=optimizer
    )
    lm = train(text, model_config, train_config, on_progress=progress)
    return lm, len(rates) / sum(1 / rate for rate in rates)


def test_sentences(lm: LanguageModel, text: str) -> list[list[str]]:
    """Test text split and tokenised as training splits its corpus."""
    corpus = Corpus.from_text(text)
    return [s for paragraph in corpus.paragraphs for s in lm.tokenizer.sentences(paragraph)]


def scoring_rate(lm: LanguageModel, sentences: list[list[str]]) -> float:
    started = time.perf_counter()
    scores = lm.score(sentences, scorer="neural", batch_size=64)
    return sum(len(s.tokens) for s in scores) / (time.perf_counter() - started)


def perplexity(lm: LanguageModel, sentences: list[list[str]]) -> float:
    scores = lm.score(sentences, scorer="neural", batch_size=64)
    return math.exp(-sum(s.logprob for s in scores) / sum(len(s.tokens) for s in scores))


def threads(cell: str) -> str:
    """The thread count that applies: torch's for a gru/lstm, the BLAS's for the NumPy rnn
    (OMP_NUM_THREADS; unset: one per core)."""
    if cell == "rnn":
        return f"BLAS threads {os.environ.get('OMP_NUM_THREADS', f'{os.cpu_count()} (unset)')}"
    return f"torch {torch.__version__}, {torch.get_num_threads()} threads"


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model and text")
    parser.add_argument("--cell", default="lstm", choices=["gru", "lstm", "rnn"])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the quality runs")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the speed runs")
    parser.add_argument(
        "--cutoffs", default="2000,6000", help="adaptive softmax cut-offs (word ranks)"
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--optimizer",
        default=TrainConfig.optimizer,
        choices=OPTIMIZERS,
        help="for every layer alike (default: training's; the NumPy rnn learns far better "
        "with adam than with adamw's default weight decay)",
    )
    parser.add_argument(
        "--speed-only", action="store_true", help="the speed rounds alone, no quality runs"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cell == "rnn":
        sizes = RNN_QUICK if args.quick else RNN_FULL
    else:
        sizes = QUICK if args.quick else FULL
    train_text = (DATA / "wikitext-2/valid.txt").read_text(encoding="utf-8")
    test_text = (DATA / "wikitext-2/test.txt").read_text(encoding="utf-8")
    test_chars = 40_000 if args.quick else 300_000
    if args.quick:
        train_text, args.epochs, args.rounds = train_text[:150_000], 1, 1
    cutoffs = tuple(int(c) for c in args.cutoffs.split(","))
    vocab = vocabulary_size(train_text, config(args, sizes, {"output_classes": 0}))
    if args.quick:
        cutoffs = tuple(c * vocab // 11651 for c in cutoffs)  # the same shares of a small V
    layers = layer_options(args.cell, cutoffs, vocab)
    print(
        f"# {os.cpu_count()} CPUs, {threads(args.cell)}; {args.cell} {sizes}, {args.optimizer}; "
        f"vocabulary {vocab:,} words (all of wiki.valid); layers {layers}; {load()}",
        flush=True,
    )

    # 1. Speed, side by side.
    train_rates: dict[str, list[float]] = {name: [] for name in layers}
    score_rates: dict[str, list[float]] = {name: [] for name in layers}
    sentences = None
    for round_ in range(args.rounds):
        for name, layer in layers.items():
            lm, tokens_per_sec = train_run(
                train_text, config(args, sizes, layer), 1, args.optimizer
            )
            sentences = sentences or test_sentences(lm, test_text[:test_chars])
            train_rates[name].append(tokens_per_sec)
            score_rates[name].append(scoring_rate(lm, sentences))
            print(
                f"#   round {round_ + 1} {name}: train {tokens_per_sec:,.0f} tok/s, "
                f"score {score_rates[name][-1]:,.0f} tok/s, {load()}",
                flush=True,
            )
    best_train = {name: max(r) for name, r in train_rates.items()}
    best_score = {name: max(r) for name, r in score_rates.items()}

    # 2. Quality.
    # Also the training tokens/s of these whole-corpus runs (one after the other, so more
    # exposed to the load than the rounds above, but at the corpus's own batch sizes).
    quality, run_rate = dict.fromkeys(layers, math.nan), dict.fromkeys(layers, math.nan)
    for name, layer in {} if args.speed_only else layers.items():
        started = time.perf_counter()
        lm, run_rate[name] = train_run(
            train_text, config(args, sizes, layer), args.epochs, args.optimizer
        )
        quality[name] = perplexity(lm, test_sentences(lm, test_text[:test_chars]))
        print(
            f"#   {name}: {args.epochs} epochs in {time.perf_counter() - started:.0f} s, "
            f"train {run_rate[name]:,.0f} tok/s, test ppl {quality[name]:.2f}, {load()}",
            flush=True,
        )

    header = (
        f"{'output layer':>12} {'train tok/s':>11} {'ratio':>6} {'score tok/s':>11} "
        f"{'ratio':>6} {'run tok/s':>9} {'ratio':>6} {'test ppl':>9} {'change':>7}  targets"
    )
    rows = []
    for name in layers:
        train_ratio = best_train[name] / best_train["full"]
        run_ratio = run_rate[name] / run_rate["full"]
        change = quality[name] / quality["full"] - 1
        verdict = ""
        if name != "full":
            fast = "PASS" if train_ratio >= SPEED_TARGET else "MISS"
            run_fast = "PASS" if run_ratio >= SPEED_TARGET else "MISS"
            close = "PASS" if change <= PERPLEXITY_TOLERANCE else "MISS"
            run_fast, close = ("not run", "not run") if math.isnan(change) else (run_fast, close)
            verdict = (
                f"speed >= {SPEED_TARGET}x: rounds {fast}, whole run {run_fast}; "
                f"ppl within 5% {close}"
            )
        rows.append(
            f"{name:>12} {best_train[name]:>11,.0f} {train_ratio:>5.2f}x "
            f"{best_score[name]:>11,.0f} {best_score[name] / best_score['full']:>5.2f}x "
            f"{run_rate[name]:>9,.0f} {run_ratio:>5.2f}x "
            f"{quality[name]:>9.2f} {100 * change:>+6.1f}%  {verdict}"
        )
    print(
        f"\nOutput layers, {args.cell} {sizes.get('num_layers', 1)}x{sizes['hidden_size']}, "
        f"vocabulary {vocab:,}, {threads(args.cell)} "
        f"(train and score tok/s: best of {args.rounds} interleaved rounds of one epoch; "
        f"run tok/s and ppl: {args.epochs} epochs; {len(train_text):,} characters)"
    )
    print("\n".join([header, "-" * len(header), *rows]))
    print(f"# {load()} after")
    return 0


if __name__ == "__main__":
    sys.exit(main())

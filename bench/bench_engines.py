"""Training and scoring throughput of each engine, printed as a table.

    python bench/bench_engines.py                      # all engines, WikiText-2 valid
    python bench/bench_engines.py --engines rnn --seconds 20
    python bench/bench_engines.py --device cuda        # on a GPU machine

Tokens are real (non-padding) target tokens, SENTENCE_END included. Each row trains for
``--steps`` steps or ``--seconds`` seconds, whichever comes first, after warm-up steps
that are not timed. Never part of the tests: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from rnnlm.model import Corpus, ModelConfig, TrainConfig
from rnnlm.model.batching import length_sorted_batches
from rnnlm.model.dataset import prepare
from rnnlm.model.engines import create_engine, torch_available

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/wikitext-2/valid.txt"

# The PyTorch word_language_model example's defaults: 2x200, full vocabulary, 35-token
# sequences, batch 20, dropout 0.2, SGD at 20 with clipping at 0.25.
EXAMPLE_MODEL = ModelConfig(
    cell="lstm",
    vocab_size=1_000_000,
    embed_size=200,
    hidden_size=200,
    num_layers=2,
    dropout=0.2,
    tie_weights=False,  # the example's default (its --tied flag is off)
    lowercase=False,
)
EXAMPLE_TRAINING = TrainConfig(
    batch_size=20, max_length=35, optimizer="sgd", learning_rate=20.0, clip=0.25
)

# name -> (model config, train config, what it corresponds to)
SETUPS = {
    "rnn": (
        ModelConfig(cell="rnn", vocab_size=8000, hidden_size=100),
        TrainConfig(batch_size=32, bptt_truncate=4, optimizer="sgd", learning_rate=1.0),
        "tutorial RNN: vocab 8000, hidden 100, batch 32, BPTT truncated at 4",
    ),
    "lstm": (
        EXAMPLE_MODEL,
        EXAMPLE_TRAINING,
        "PyTorch word_language_model defaults: 2x200 LSTM, full vocab, 35 tokens, batch 20",
    ),
    "gru": (dataclasses.replace(EXAMPLE_MODEL, cell="gru"), EXAMPLE_TRAINING, "as lstm, GRU cells"),
}


def threads(engine_name: str) -> str:
    """torch's intra-op threads for gru/lstm; for NumPy, the BLAS's (OMP_NUM_THREADS or
    the CPU count, which is what OpenBLAS uses when it is not set)."""
    if engine_name != "rnn":
        import torch

        return str(torch.get_num_threads())
    return os.environ.get("OMP_NUM_THREADS", str(os.cpu_count()))


def bench_one(name: str, corpus: Corpus, args) -> dict:
    model_config, train_config, note = SETUPS[name]
    train_config = dataclasses.replace(train_config, device=args.device, valid_fraction=0.0)
    prepared = prepare(corpus, model_config, train_config, None)
    vocab, seqs = prepared.vocab, prepared.train
    engine = create_engine(model_config, len(vocab), seed=0, device=args.device)
    engine.configure_training(
        train_config.optimizer,
        train_config.effective_learning_rate,
        train_config.clip,
        train_config.bptt_truncate,
    )
    batches = [
        b for _, b in length_sorted_batches(seqs, train_config.batch_size, np.random.default_rng(0))
    ]
    for batch in batches[: args.warmup]:
        engine.train_step(batch)
    tokens, steps, start = 0, 0, time.perf_counter()
    for batch in batches[args.warmup :]:
        tokens += engine.train_step(batch).num_tokens
        steps += 1
        if steps >= args.steps or time.perf_counter() - start > args.seconds:
            break
    train_rate = tokens / (time.perf_counter() - start)

    score_batches = [b for _, b in length_sorted_batches(seqs[: args.score_sentences], 64)]
    engine.token_log_probs(score_batches[0])  # warm-up
    start = time.perf_counter()
    scored = 0
    for batch in score_batches:
        engine.token_log_probs(batch)
        scored += batch.num_tokens
    score_rate = scored / (time.perf_counter() - start)
    return {
        "engine": name,
        "vocab": len(vocab),
        "device": str(getattr(engine, "device", "cpu")),
        "threads": threads(name),
        "steps": steps,
        "train_tok_s": train_rate,
        "score_tok_s": score_rate,
        "setup": note,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", default=os.environ.get("RNNLM_BENCH_CORPUS", str(DEFAULT_CORPUS))
    )
    parser.add_argument("--engines", default="rnn,gru,lstm")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps at most")
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="timed training seconds at most"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--score-sentences", type=int, default=2000)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (gru/lstm only)")
    args = parser.parse_args(argv)
    if not Path(args.corpus).is_file():
        print(f"skipped: corpus {args.corpus} not found (set --corpus or RNNLM_BENCH_CORPUS)")
        return 0
    corpus = Corpus.from_file(args.corpus)
    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    print(
        f"# corpus {args.corpus}; python {platform.python_version()}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs"
    )
    rows = []
    for name in names:
        if name != "rnn" and not torch_available():
            print(f"# {name}: skipped, torch is not installed")
            continue
        device = args.device if name != "rnn" else "cpu"
        rows.append(bench_one(name, corpus, argparse.Namespace(**{**vars(args), "device": device})))
    header = (
        f"{'engine':6} {'vocab':>6} {'device':7} {'threads':>7} {'steps':>5} "
        f"{'train tok/s':>12} {'score tok/s':>12}  setup"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['engine']:6} {r['vocab']:>6} {r['device']:7} {r['threads']:>7} {r['steps']:>5} "
            f"{r['train_tok_s']:>12,.0f} {r['score_tok_s']:>12,.0f}  {r['setup']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

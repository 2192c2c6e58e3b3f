"""In-process scoring by batch size: is a batch of 1,000 sentences as fast per token as one
of 64, at vocabularies of 8,000 and 33,278 words (WikiText-2's full one)?

    python bench/bench_score_batch.py             # GRU 128 and LSTM 2x200, full softmax (~3 min)
    python bench/bench_score_batch.py --quick     # small models, few sentences (< 30 s)
    python bench/bench_score_batch.py --threads 1 --output-classes -1   # default word classes

Scoring used to build the whole (tokens, vocabulary) logit matrix of a batch: 2.8 GB for
1,000 sentences at 33k words, so batch 1,000 was never faster than 64 and often slower
(LSTM at 33k words: 91 against 128 sentences/s). The engines now run the output layer and
its log-softmax in chunks of positions and gather only the targets' log-probabilities.

The networks are freshly initialised (speed depends on the shapes, not on the weights): the
held-out sentences of WikiText-2's test.txt, their words mapped to ids by a hash, are scored
by ``scoring.neural_token_log_probs`` (what ``LanguageModel.score`` and the server's batcher
call) at each batch size, the sizes interleaved in rounds so that the machine's load falls on
all alike; the best round is kept. Printed with thread count, load average and the process's
peak RSS. Target (issue 13): batch 1,000 at least as fast per token as batch 64. Never part
of the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from rnnlm.model import ModelConfig
from rnnlm.model.engines import create_engine
from rnnlm.model.scoring import neural_token_log_probs
from rnnlm.model.vocab import END_ID, START_ID

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RNNLM_SHARED_DATA") or ROOT / "shared/data")
VOCABS = (8000, 33278)  # the issue's 8k, and every word of WikiText-2's training set
CELLS = {"gru 1x128": ("gru", 128, 1), "lstm 2x200": ("lstm", 200, 2)}
QUICK_CELLS = {"gru 1x32": ("gru", 32, 1)}
BATCHES = (64, 1000)


def held_out(limit: int) -> list[list[str]]:
    """Sentences of WikiText-2's test text (5 to 60 words), as lists of words."""
    text = (DATA / "wikitext-2/test.txt").read_text(encoding="utf-8")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("=")]
    pieces = [p.split() for line in lines for p in re.split(r"(?<= \.) ", line)]
    return [p for p in pieces if 5 <= len(p) <= 60][:limit]


def framed(sentences: list[list[str]], vocab: int) -> list[np.ndarray]:
    """Each sentence as a framed id sequence (start, words, end); a word's id is a stable hash
    of it, past the special ids, so that repeated words and shared prefixes stay so."""
    first = max(START_ID, END_ID) + 1
    out = []
    for words in sentences:
        ids = [first + zlib.crc32(w.encode()) % (vocab - first) for w in words]
        out.append(np.array([START_ID, *ids, END_ID], dtype=np.int64))
    return out


def rate(engine, sequences: list[np.ndarray], batch: int) -> float:
    """Scored tokens per second of one pass over ``sequences`` in batches of ``batch``."""
    started = time.perf_counter()
    logps = neural_token_log_probs(engine, sequences, batch_size=batch)
    elapsed = time.perf_counter() - started
    return sum(len(lp) for lp in logps) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model, few sentences")
    parser.add_argument("--sentences", type=int, default=3000, help="sentences a pass")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument(
        "--output-classes", type=int, default=0, help="0: full softmax (the case in the issue)"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cells = QUICK_CELLS if args.quick else CELLS
    if args.quick:
        args.sentences, args.rounds = 1000, 1
    sentences = held_out(args.sentences)
    tokens = sum(len(s) + 1 for s in sentences)
    print(
        f"# {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads;"
        f" {len(sentences):,} sentences ({tokens:,} scored tokens) a pass; output_classes "
        f"{args.output_classes}; load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    rows = []
    for name, (cell, hidden, layers) in cells.items():
        for vocab in VOCABS:
            config = ModelConfig(
                cell=cell,
                vocab_size=vocab,
                embed_size=hidden,
                hidden_size=hidden,
                num_layers=layers,
                output_classes=args.output_classes,
                ngram_order=0,
            )
            counts = np.arange(vocab, 0, -1, dtype=np.int64)  # Zipf-like ranks for the classes
            engine = create_engine(config, vocab, device="cpu", word_counts=counts)
            sequences = framed(sentences, vocab)
            rate(engine, sequences[:200], 64)  # warm-up: allocator, kernels
            best = dict.fromkeys(BATCHES, 0.0)
            for round_ in range(args.rounds):
                for batch in BATCHES:
                    best[batch] = max(best[batch], rate(engine, sequences, batch))
                    print(
                        f"#   {name} V={vocab:,} round {round_ + 1} batch {batch}: "
                        f"{best[batch]:,.0f} tok/s best so far, load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
            ratio = best[BATCHES[1]] / best[BATCHES[0]]
            verdict = "PASS" if ratio >= 1.0 else "MISS"
            rows.append(
                f"{name:>11} {vocab:>7,} {best[64]:>11,.0f} {best[1000]:>12,.0f} "
                f"{ratio:>6.2f}x  {verdict}"
            )
    header = f"{'model':>11} {'vocab':>7} {'batch 64':>11} {'batch 1,000':>12} {'ratio':>7}"
    print(
        f"\nIn-process scoring, tokens/s (best of {args.rounds} interleaved rounds), "
        f"{torch.get_num_threads()} threads; goal: batch 1,000 >= batch 64 per token"
    )
    print("\n".join([header, "-" * len(header), *rows]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak RSS {peak:,.0f} MiB; load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

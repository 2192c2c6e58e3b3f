"""``python -m rnnlm.model demo``: train a small model, then rank and generate sentences.

The corpus is Python's own help text (``pydoc_data.topics``, shipped with every Python)
unless ``--corpus`` names a file, so the demo needs no download.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from rnnlm.model.config import CELLS, ModelConfig, TrainConfig
from rnnlm.model.corpus import Corpus
from rnnlm.model.lm import LanguageModel
from rnnlm.model.training import ProgressEvent, train

CANDIDATES = [
    "The function returns a new list.",
    "Function the list new a returns.",
    "The list returns a new function.",
    "A new returns list the function.",
]


def pydoc_corpus(max_chars: int) -> Corpus:
    from pydoc_data.topics import topics

    return Corpus.from_text("\n\n".join(topics[k] for k in sorted(topics))[:max_chars])


def print_progress(event: ProgressEvent) -> None:
    line = (
        f"epoch {event.epoch}/{event.epochs} step {event.step}/{event.total_steps} "
        f"loss {event.loss:.3f} ppl {event.perplexity:8.1f} "
        f"{event.tokens_per_second:8.0f} tok/s lr {event.learning_rate:.4g} "
        f"|g| {event.grad_norm:.2f} eta {event.eta_seconds:4.0f}s"
    )
    if event.valid_perplexity is not None:
        line += f"  valid ppl {event.valid_perplexity:.1f}"
    print(line, flush=True)


def demo(args: argparse.Namespace) -> int:
    corpus = Corpus.from_file(args.corpus) if args.corpus else pydoc_corpus(args.max_chars)
    model_config = ModelConfig(
        cell=args.cell, vocab_size=args.vocab_size, embed_size=64, hidden_size=args.hidden
    )
    train_config = TrainConfig(epochs=args.epochs, batch_size=32, log_every=25, seed=args.seed)
    print(f"training {model_config.cell} on {len(corpus)} paragraphs ...", flush=True)
    started = time.perf_counter()
    lm = train(corpus, model_config, train_config, on_progress=print_progress)
    print(f"trained in {time.perf_counter() - started:.0f}s: {lm}\n")

    with tempfile.TemporaryDirectory() as tmp:  # show the save/load round trip
        path = Path(tmp) / "demo.safetensors"
        lm.save(path)
        print(f"saved {path.stat().st_size / 1e6:.1f} MB checkpoint, loading it back\n")
        lm = LanguageModel.load(path)

    print("ranked candidates (most probable first):")
    for rank, (index, score) in enumerate(lm.rank(CANDIDATES), 1):
        print(
            f"  {rank}. {score.logprob:8.2f} ln  ppl {score.perplexity:7.1f}  {CANDIDATES[index]}"
        )
    print("\nsampled sentences (temperature 0.8, top-k 40):")
    for s in lm.generate(num_sentences=3, temperature=0.8, top_k=40, seed=args.seed):
        print(f"  {s.logprob:8.2f}  {s.text}")
    print("\nbeam search, width 3:")
    for s in lm.generate(method="beam", beam_width=3, max_length=20):
        print(f"  {s.logprob:8.2f}  {s.text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rnnlm.model")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a small model, rank and generate sentences")
    p.add_argument("--corpus", help="a UTF-8 text or CSV file (default: Python's help text)")
    p.add_argument("--cell", choices=CELLS, default="gru")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=4000)
    p.add_argument("--max-chars", type=int, default=400_000, help="pydoc text to train on")
    p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        return demo(args)
    except ValueError as err:  # configuration and corpus errors: a message, not a trace
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Regenerate the example pictures in docs/images/ from real, small training runs on Python's
own help text (``pydoc_data.topics``, as ``python -m rnnlm.model demo`` uses):

    docs/images/training-curves.png   plot_training of a GRU's run (loss, perplexity, rate, |g|)
    docs/images/gradient-flow.png     plot_gradient_flow of an rnn, a gru and an lstm

    python scripts/make_doc_images.py            # a few minutes on two CPU cores
    python scripts/make_doc_images.py --out DIR  # somewhere else

Needs the server extra (the engine, torch for gru/lstm) and the plot extra (matplotlib).
The runs are seeded; the pictures still differ in the last bits between machines and
library versions, so they are committed as examples, not compared in tests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rnnlm.client.plots import plot_gradient_flow, plot_training
from rnnlm.model.config import ModelConfig, TrainConfig
from rnnlm.model.gradient_flow import gradient_flow
from rnnlm.model.lm import LanguageModel
from rnnlm.model.training import ProgressEvent, train

ROOT = Path(__file__).resolve().parents[1]
TRAIN_CHARS = 150_000  # of the help text: the training corpus
HELD_OUT_CHARS = 20_000  # the text after it: the gradient report's sentences
SENTENCE_WORDS = (8, 60)  # held-out sentences of this many words
SENTENCES = 200
DISTANCE = 30


def help_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def small_run(
    cell: str, text: str, epochs: int, events: list[ProgressEvent] | None = None
) -> LanguageModel:
    model = ModelConfig(cell=cell, vocab_size=2000, embed_size=32, hidden_size=64)
    training = TrainConfig(epochs=epochs, batch_size=32, log_every=20, seed=1)
    started = time.perf_counter()
    on_progress = events.append if events is not None else None
    lm = train(text, model, training, on_progress=on_progress)
    print(f"  {cell}: {epochs} epochs in {time.perf_counter() - started:.0f}s", flush=True)
    return lm


def training_curves(text: str, out: Path) -> Path:
    events: list[ProgressEvent] = []
    small_run("gru", text, epochs=6, events=events)
    title = "GRU (64 units, 2000 words) on Python's help text"
    return plot_training(events, out / "training-curves.png", title)


def gradient_flows(text: str, held_out: str, out: Path) -> Path:
    curves = {}
    for cell in ("rnn", "gru", "lstm"):
        lm = small_run(cell, text, epochs=2)
        low, high = SENTENCE_WORDS
        sentences = [s for s in lm.tokenizer.sentences(held_out) if low <= len(s) <= high]
        flow = gradient_flow(lm, sentences[:SENTENCES], max_distance=DISTANCE)
        decay = flow.decay_per_step
        name = cell if decay is None else f"{cell} (x{decay:.2f} per step back)"
        curves[name] = list(zip(flow.distances, flow.mean_norms))
    title = "How far back the loss reaches: 3 small models on held-out sentences"
    return plot_gradient_flow(curves, out / "gradient-flow.png", title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    text = help_text()
    train_text, held_out = text[:TRAIN_CHARS], text[TRAIN_CHARS : TRAIN_CHARS + HELD_OUT_CHARS]
    print("training curves:", flush=True)
    written = [training_curves(train_text, args.out)]
    print("gradient flow:", flush=True)
    written.append(gradient_flows(train_text, held_out, args.out))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

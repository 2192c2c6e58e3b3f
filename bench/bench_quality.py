"""Validation perplexity of GRU configurations on a real corpus: what each option buys.

    python bench/bench_quality.py --list                       # the configurations
    python bench/bench_quality.py                              # all, 8 epochs, 1 thread
    python bench/bench_quality.py --only tied,drop0.3 --epochs 6

Every row trains a GRU (embed = hidden = 256 unless the row says otherwise, vocabulary
8000, batch 32) with ``train()`` as a user would: the default 10% validation split,
early stopping, the learning-rate plateau rule. It reports the epochs run, the best
validation perplexity (the published model's) and the curve. Options not varied by a row
are pinned here, not taken from the current defaults, so rows stay comparable when the
defaults change. torch runs on ``--threads`` threads (default 1), so that two copies with
different ``--only`` lists can share a 2-core machine. Never part of the tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from rnnlm.model import Corpus, ModelConfig, TrainConfig, train

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared/data/wikitext-2/valid.txt"

BASE_MODEL = {
    "cell": "gru",
    "vocab_size": 8000,
    "embed_size": 256,
    "hidden_size": 256,
    "dropout": 0.0,
    "embed_dropout": 0.0,
    "tie_weights": None,  # tied where embed == hidden
    "ngram_order": 0,  # the network alone
}
BASE_TRAIN = {
    "batch_size": 32,
    "optimizer": "rmsprop",
    "weight_decay": 0.0,
    "lr_patience": 1,
    "seed": 0,
    "device": "cpu",
}

ADAMW_01 = {"optimizer": "adamw", "weight_decay": 0.1, "learning_rate": 0.01}
# name -> (model overrides, training overrides), in the order of the table
CONFIGS: dict[str, tuple[dict, dict]] = {
    "untied": ({"tie_weights": False}, {}),
    "tied": ({}, {}),
    "drop0.2": ({"dropout": 0.2}, {}),
    "drop0.3": ({"dropout": 0.3}, {}),
    "drop0.4": ({"dropout": 0.4}, {}),
    "drop0.3-ed0.1": ({"dropout": 0.3, "embed_dropout": 0.1}, {}),
    "adam": ({}, {"optimizer": "adam"}),
    "adam-drop0.2": ({"dropout": 0.2}, {"optimizer": "adam"}),
    "adam-drop0.3": ({"dropout": 0.3}, {"optimizer": "adam"}),
    "adam-drop0.4": ({"dropout": 0.4}, {"optimizer": "adam"}),
    "adamw-drop0.3": ({"dropout": 0.3}, {"optimizer": "adamw", "weight_decay": 0.01}),
    "adamw0.1-drop0.3": ({"dropout": 0.3}, {"optimizer": "adamw", "weight_decay": 0.1}),
    "adamw0.1-lr0.01": ({}, ADAMW_01),
    "adamw0.1-lr0.01-drop0.3": ({"dropout": 0.3}, ADAMW_01),
    "adamw0.1-lr0.01-drop0.3-untied": ({"dropout": 0.3, "tie_weights": False}, ADAMW_01),
    "adamw0.1-lr0.01-drop0.3-ed0.1": ({"dropout": 0.3, "embed_dropout": 0.1}, ADAMW_01),
    "adam-drop0.3-ed0.1": ({"dropout": 0.3, "embed_dropout": 0.1}, {"optimizer": "adam"}),
    "lrpat2-drop0.3": ({"dropout": 0.3}, {"lr_patience": 2}),
    "h128-drop0.3": ({"dropout": 0.3, "embed_size": 128, "hidden_size": 128}, {}),
    "h128-drop0.2": ({"dropout": 0.2, "embed_size": 128, "hidden_size": 128}, {}),
    "h128-tied": ({"embed_size": 128, "hidden_size": 128}, {}),
}


def describe(model: ModelConfig, tc: TrainConfig) -> str:
    return (
        f"{model.embed_size}/{model.hidden_size} tie={int(model.tie_weights)} "
        f"drop={model.dropout} ed={model.embed_dropout} {tc.optimizer} "
        f"lr={tc.effective_learning_rate} wd={tc.effective_weight_decay} lrpat={tc.lr_patience}"
    )


def run_one(name: str, corpus: Corpus, epochs: int) -> dict:
    model_overrides, train_overrides = CONFIGS[name]
    model = ModelConfig(**{**BASE_MODEL, **model_overrides})
    tc = TrainConfig(**{**BASE_TRAIN, **train_overrides, "epochs": epochs})
    started = time.perf_counter()

    def progress(event) -> None:  # epoch lines on stderr: a long run shows it is alive
        if event.kind == "epoch":
            print(
                f"# {name} epoch {event.epoch}: valid ppl {event.valid_perplexity:.1f}, "
                f"lr {event.learning_rate:.3g}, {time.perf_counter() - started:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    lm = train(corpus, model, tc, on_progress=progress)
    seconds = time.perf_counter() - started
    state = lm.training_state
    curve = [h["valid_perplexity"] for h in state.history]
    return {
        "name": name,
        "setup": describe(model, tc),
        "epochs": len(state.history),
        "best_epoch": state.best_epoch,
        "best_ppl": min(curve),
        "final_lr": state.learning_rate,
        "seconds": seconds,
        "curve": " ".join(f"{p:.0f}" for p in curve),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--corpus", default=os.environ.get("RNNLM_BENCH_CORPUS", str(DEFAULT_CORPUS))
    )
    parser.add_argument("--only", default="", help="comma-separated names (default: all)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--list", action="store_true", help="print the configurations")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or args.list:
        for name, (m, t) in CONFIGS.items():
            print(f"{name:20} model {m} train {t}")
        return 2 if unknown else 0
    if not Path(args.corpus).is_file():
        print(f"skipped: corpus {args.corpus} not found (set --corpus or RNNLM_BENCH_CORPUS)")
        return 0
    torch.set_num_threads(args.threads)
    corpus = Corpus.from_file(args.corpus)
    print(
        f"# corpus {args.corpus}; up to {args.epochs} epochs; torch {torch.__version__} on "
        f"{args.threads} thread(s); python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    header = f"{'config':20} {'epochs':>6} {'best':>4} {'valid ppl':>9} {'seconds':>7}  curve"
    print(header)
    print("-" * len(header))
    for name in names:
        r = run_one(name, corpus, args.epochs)
        print(
            f"{r['name']:20} {r['epochs']:>6} {r['best_epoch']:>4} {r['best_ppl']:>9.1f} "
            f"{r['seconds']:>7.0f}  {r['curve']}  [{r['setup']}, final lr {r['final_lr']:.3g}]",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

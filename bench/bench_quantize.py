"""int8 serving against float: the scoring speed-up and the perplexity change, on the same
held-out text, for models trained here on WikiText-2.

    python bench/bench_quantize.py            # GRU and LSTM 2x256, vocabulary 8,000 (~6 min)
    python bench/bench_quantize.py --quick    # small models (< 1 minute)

Each model is trained in this process (one epoch on wiki.valid, as the shared data README
suggests), then scores WikiText-2's test sentences float and int8
(``LanguageModel.quantize``, what ``rnnlm serve --quantize int8`` does): sentences/s in
batches of 64 and one sentence at a time, with one math thread and with the default, runs
interleaved (float, int8, float, int8) and the better of each kept; perplexity of the
network alone on the same sentences. Never part of the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import torch

from rnnlm.model import LanguageModel, ModelConfig, TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RNNLM_SHARED_DATA") or ROOT / "shared/data")
FULL = {"vocab_size": 8000, "embed_size": 256, "hidden_size": 256, "num_layers": 2}
QUICK = {"vocab_size": 2000, "embed_size": 64, "hidden_size": 64, "num_layers": 1}


def held_out(limit: int) -> list[str]:
    text = (DATA / "wikitext-2/test.txt").read_text(encoding="utf-8")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    sentences = [line for line in lines if line and not line.startswith("=")]
    pieces = [p for s in sentences for p in re.split(r"(?<= \.) ", s) if 5 <= len(p.split()) <= 60]
    return pieces[:limit]


def rate(lm: LanguageModel, sentences: list[str], batch: int, threads: int) -> float:
    torch.set_num_threads(threads)
    words = [lm.words(s) for s in sentences]  # tokenised once: the network's speed only
    started = time.perf_counter()
    if batch == 1:
        for w in words:
            lm.score([w], scorer="neural")
    else:
        lm.score(words, scorer="neural", batch_size=batch)
    return len(words) / (time.perf_counter() - started)


def perplexity(lm: LanguageModel, sentences: list[str]) -> float:
    scores = lm.score(sentences, scorer="neural", batch_size=64)
    total = sum(s.logprob for s in scores)
    return float(torch.tensor(-total / sum(len(s.tokens) for s in scores)).exp())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small models, few sentences")
    parser.add_argument("--cells", default="gru,lstm")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    train_text = (DATA / "wikitext-2/valid.txt").read_text(encoding="utf-8")
    if args.quick:
        train_text = train_text[:150_000]
    sentences = held_out(300 if args.quick else 2000)
    default_threads = torch.get_num_threads()
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {sizes}; trained 1 "
        f"epoch on {len(train_text):,} characters of wiki.valid; {len(sentences)} test "
        f"sentences; torch {torch.__version__}, default threads {default_threads}"
    )
    header = f"{'model':>6} {'threads':>7} {'batch':>5} {'float s/s':>10} {'int8 s/s':>9} "
    header += f"{'speed-up':>8}"
    rows, quality = [], []
    for cell in args.cells.split(","):
        config = ModelConfig(cell=cell, **sizes)
        started = time.perf_counter()
        float_lm = train(train_text, config, TrainConfig(epochs=1, seed=0, device="cpu"))
        print(f"# {cell}: trained in {time.perf_counter() - started:.0f} s", flush=True)
        int8_lm = LanguageModel.from_bytes(float_lm.to_bytes(), device="cpu").quantize()
        for threads in sorted({1, default_threads}):
            for batch in (64, 1):
                part = sentences if batch > 1 else sentences[: len(sentences) // 4]
                runs = {"float": [], "int8": []}
                for _ in range(2):  # interleaved: the machine's load hits both alike
                    runs["float"].append(rate(float_lm, part, batch, threads))
                    runs["int8"].append(rate(int8_lm, part, batch, threads))
                best = {k: max(v) for k, v in runs.items()}
                rows.append(
                    f"{cell:>6} {threads:>7} {batch:>5} {best['float']:>10,.0f} "
                    f"{best['int8']:>9,.0f} {best['int8'] / best['float']:>7.2f}x"
                )
        torch.set_num_threads(default_threads)
        ppl_float, ppl_int8 = perplexity(float_lm, sentences), perplexity(int8_lm, sentences)
        change = 100 * (ppl_int8 / ppl_float - 1)
        quality.append(f"{cell:>6} {ppl_float:>10.2f} {ppl_int8:>10.2f} {change:>+8.2f}%")
    print("\nScoring speed, sentences/s (the network only)")
    print("\n".join([header, "-" * len(header), *rows]))
    header = f"{'model':>6} {'float ppl':>10} {'int8 ppl':>10} {'change':>9}"
    print("\nPerplexity on the same sentences (network alone)")
    print("\n".join([header, "-" * len(header), *quality]))
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

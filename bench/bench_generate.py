"""Generate through gRPC under concurrency: continuous batching at work.

    python bench/bench_generate.py            # GRU 128, vocabulary 8,000 (~4 minutes)
    python bench/bench_generate.py --quick    # small model, short cells (~1 minute)
    python bench/bench_generate.py --torch-threads 1   # the server's math on one thread

A server in its own process (``python -m rnnlm.server``, local store in a temp dir) serves
a GRU trained through the service on WikiText-2 (bench_service.py's helpers). For 1, 4 and
16 concurrent streams (each its own LMClient and TCP connection), every stream loops
``generate_stream`` of one sentence of exactly ``--tokens`` words (min_length = max_length,
so that every call decodes the same amount whatever the model prefers) for ``--seconds``:
tokens/s summed over the streams, time to first token (p50, p90), the server's CPU and
threads, and the load average at the end of the cell. Each stream count runs twice, back to
back: with the library's default packing (the tokens a stream has ready go in one message,
up to ``max_tokens_per_message`` = 64) and with one token a message (the server's old way).

The model's decoding loop (model/decoding.py) advances every stream's sentence in one
batched step, so the summed rate grows with streams instead of falling (before: 1,397
tokens/s with one stream, 886 summed over 16). One message a token then capped 16 streams at
~2x: ~0.3 ms of the server's Python a message, under one GIL, cost more than a batched step.
Target (issue 13): 16 streams at least 4x one stream's rate. One server process is held
at about one core by the interpreter lock (the decoding loop, gRPC's sending threads);
``--processes 2`` (one math thread each) serves the streams of each connection in one of two
processes, each with its own decoding loop: after the one-process cells the benchmark runs
1 and 16 streams (the default packing) against such a server too (``--processes 1`` leaves
it out). Server CPU is the server's processes' together. Never part of the tests: figures
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyspy
from bench_service import FULL, MODEL_ID, OWN_CONNECTION, QUICK, Server, corpora, table, train

from rnnlm.client._common import TOKENS_PER_MESSAGE
from rnnlm.client.errors import ResourceExhausted
from rnnlm.client.sync import LMClient

STREAMS = (1, 4, 16)
# How the streams ask for their tokens: the library's default packing, one a message.
MODES = {f"packed {TOKENS_PER_MESSAGE}": {}, "1 a message": {"max_tokens_per_message": 1}}


def cell(
    server: Server,
    streams: int,
    seconds: float,
    tokens: int,
    options: dict,
    profile: str | None = None,
) -> dict:
    """``streams`` threads generating back to back (``options`` for generate_stream);
    summed tokens/s and first-token times; with ``profile``, a py-spy profile of the server
    during the cell."""
    counts, firsts, refused = [0] * streams, [], [0]
    spy = pyspy.start(server.proc.pid, seconds - 1, profile) if profile else None
    cpu_before = _cpu_seconds(server)
    client_before = time.process_time()  # this process: the streams' clients
    start = time.perf_counter()

    def stream(i: int) -> None:
        seed = 1000 * i
        with LMClient(server.target, options=OWN_CONNECTION) as lm:
            while time.perf_counter() < start + seconds:
                seed += 1
                asked = time.perf_counter()
                try:
                    for n, _ in enumerate(
                        lm.generate_stream(
                            MODEL_ID, max_tokens=tokens, min_tokens=tokens, seed=seed, **options
                        )
                    ):
                        if n == 0:
                            firsts.append(time.perf_counter() - asked)
                        counts[i] += 1
                except ResourceExhausted:  # --max-streams: a slot not yet given back
                    refused[0] += 1
                    time.sleep(0.01)

    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(stream, range(streams)))
    wall = time.perf_counter() - start
    threads = sum(p.num_threads() for p in _processes(server))
    busy = _cpu_seconds(server) - cpu_before
    client_busy = time.process_time() - client_before
    first = np.array(firsts) * 1000
    if spy is not None:
        print("\n".join(pyspy.summary(pyspy.finish(spy))), flush=True)
    return {
        "streams": streams,
        "tok_s": sum(counts) / wall,
        "ttft_p50": float(np.percentile(first, 50)) if len(first) else float("nan"),
        "ttft_p90": float(np.percentile(first, 90)) if len(first) else float("nan"),
        "server_cpu": 100 * busy / wall,
        "client_cpu": 100 * client_busy / wall,
        "server_threads": threads,
        "load": os.getloadavg()[0],
        "refused": refused[0],
    }


def _processes(server: Server) -> list:
    """The server's process and its children (``--processes 2``: the serving ones)."""
    return [server.ps, *server.ps.children(recursive=True)]


def _cpu_seconds(server: Server) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in _processes(server))


def warm_up(server: Server, connections: int) -> None:
    """A short call on each of ``connections`` connections, so that every server process
    has loaded the model before a cell is timed."""

    def one(_: int) -> None:
        with LMClient(server.target, options=OWN_CONNECTION, retries=3) as lm:
            list(lm.generate_stream(MODEL_ID, max_tokens=5, seed=0))

    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one, range(connections)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model, short cells")
    parser.add_argument("--seconds", type=float, help="per cell (default 15; quick 4)")
    parser.add_argument("--tokens", type=int, default=30, help="words per generated sentence")
    parser.add_argument("--torch-threads", type=int, help="OMP_NUM_THREADS of the server")
    parser.add_argument("--profile", help="py-spy profile of the 16-stream cell to this file")
    parser.add_argument(
        "--processes", type=int, default=2, help="server processes of the last cells (1: none)"
    )
    args = parser.parse_args(argv)
    model = QUICK if args.quick else FULL
    seconds = args.seconds or (4.0 if args.quick else 15.0)
    if args.torch_threads:  # inherited by the server; torch reads it when imported
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    text, corpus_name, _ = corpora(150_000 if args.quick else 600_000)
    threads = os.environ.get("OMP_NUM_THREADS", "torch default")
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} before, server math "
        f"threads {threads}; {model}; {args.tokens}-word sentences, {seconds:g}s a cell; "
        f"trained 1 epoch on {len(text):,} bytes of {corpus_name}"
    )
    with tempfile.TemporaryDirectory(prefix="rnnlm-bench-") as tmp:
        store = str(Path(tmp) / "store")
        server = Server(store, ["--max-streams", str(max(STREAMS) + 4)], "generate")
        try:
            with LMClient(server.target) as lm:
                corpus = lm.upload_corpus(text, filename="train.txt")
                train(lm, MODEL_ID, corpus, {**model, "batch_size": 64})
                list(lm.generate_stream(MODEL_ID, max_tokens=5, seed=0))  # load it
            results: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for streams in STREAMS:  # both modes back to back: under the same load
                for mode, options in MODES.items():
                    profile = args.profile if streams == max(STREAMS) and not options else None
                    done = cell(server, streams, seconds, args.tokens, options, profile)
                    results[mode].append(done)
                    print(f"# {mode}, {streams} streams done, load {done['load']:.2f}", flush=True)
        finally:
            server.stop()
        if args.processes > 1:
            flags = ["--max-streams", str(max(STREAMS) + 4), "--processes", str(args.processes)]
            server = Server(store, flags, "generate-processes")
            try:
                warm_up(server, max(STREAMS))
                mode = f"{next(iter(MODES))}, {args.processes} processes"
                results[mode] = [
                    cell(server, streams, seconds, args.tokens, {})
                    for streams in (min(STREAMS), max(STREAMS))
                ]
                print(f"# {mode} done, load {results[mode][-1]['load']:.2f}", flush=True)
            finally:
                server.stop()
    # --processes: each process gets the cores' share (server/cores.py), whatever the variable
    each = f"{max(1, (os.cpu_count() or 1) // args.processes)} each"
    math_threads = {mode: each for mode in results if "processes" in mode}
    rows = [
        f"{mode:>24} {r['streams']:>7} {r['tok_s']:>9,.0f} {r['tok_s'] / cells[0]['tok_s']:>6.2f}x "
        f"{r['ttft_p50']:>9.1f} {r['ttft_p90']:>9.1f} {r['server_cpu']:>7.0f}% "
        f"{r['client_cpu']:>7.0f}% "
        f"{r['server_threads']:>7} {math_threads.get(mode, threads):>8} {r['load']:>5.2f} "
        f"{r['refused']:>7}"
        for mode, cells in results.items()
        for r in cells
    ]
    header = f"{'messages':>24} {'streams':>7} {'tokens/s':>9} {'vs 1':>7} {'TTFT p50':>9} "
    header += f"{'TTFT p90':>9} {'srv CPU':>8} {'cli CPU':>8} {'threads':>7} {'math thr':>8} "
    header += f"{'load':>5}"
    table(
        header + f" {'refused':>7}", rows, "Generate (TTFT in ms; vs 1: the same mode's 1 stream)"
    )
    for mode, cells in results.items():
        ratio = cells[-1]["tok_s"] / cells[0]["tok_s"]
        verdict = "PASS" if ratio >= 4 else "MISS"
        print(f"{mode}: {max(STREAMS)} streams / 1 stream: {ratio:.3f}x (goal >= 4x): {verdict}")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

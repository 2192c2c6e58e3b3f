"""gRPC load benchmark of the rnnlm service: scoring, generation and server memory.

    python bench/bench_service.py                  # full run, 5-minute memory soak (~12 min)
    python bench/bench_service.py --quick          # small model, short cells (CI smoke, < 2 min)
    python bench/bench_service.py --clients 1,8,32 --seconds 10 --soak-seconds 300 --json out.json

What is measured, and how:

* The server runs in its own process (``python -m rnnlm.server`` on a local store in a temp
  dir), so that its RSS can be read with psutil and the load generator does not share its
  GIL. A first server trains the benchmark GRU through the service (upload, train, watch to
  the end) plus two tiny models for the cache check; then servers with ``--batching false``
  and ``--batching true`` are started on the same store and loaded in turn.
* Scoring: N client threads (``--clients``), each with its own LMClient and its own TCP
  connection, send ScoreSentence requests of ONE held-out sentence (10-30 words) back to back
  for ``--seconds``; sentences/s counts completed calls, p50/p99 are per-call latencies.
  ``--client-procs`` spreads the threads over processes when the client's GIL is the limit.
* In-process reference: the same checkpoint loaded here with ``LanguageModel.from_bytes``
  scoring the same sentences with ``lm.score(sentences, batch_size=128)`` (and 32: the most
  that 32 one-sentence clients can put in one batch), with no server running.
* Generate: tokens/s summed over 1 and 16 concurrent ``generate_stream`` calls.
* Memory: server RSS idle with the model loaded (after one call), after the scoring cells,
  and after ``--soak-seconds`` of 32-client scoring; then a server with ``--cache-size 2``
  is asked to score 3 models in turn and its log shows which stay loaded.

Targets (from the issue) are printed with PASS/MISS. Every process shares this machine's CPUs
(printed first): on a small machine the clients take CPU from the server. Never part of the
tests: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import suppress
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import psutil

from rnnlm.client.sync import LMClient

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("RNNLM_SHARED_DATA") or ROOT / "shared/data")
MODEL_ID, CACHE_IDS = "bench", ("bench-c1", "bench-c2")
FULL = {"cell": "gru", "vocab_size": 8000, "embed_size": 128, "hidden_size": 128}
QUICK = {"cell": "gru", "vocab_size": 2000, "embed_size": 64, "hidden_size": 64}
TINY = {"cell": "gru", "vocab_size": 1000, "embed_size": 32, "hidden_size": 32}
# Without a local subchannel pool, gRPC shares one TCP connection among channels with the same
# target and options; independent clients have connections of their own.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def corpora(train_bytes: int) -> tuple[bytes, str, list[str]]:
    """Training text, its file name, and held-out sentences of 10-30 words."""
    train, test = DATA / "wikitext-2/valid.txt", DATA / "wikitext-2/test.txt"
    if train.is_file() and test.is_file():  # the data README: train on valid, test on test
        text, held, name = train.read_text()[:train_bytes], test.read_text(), str(train)
    else:
        from pydoc_data.topics import topics

        whole = "\n\n".join(topics[k] for k in sorted(topics))
        cut = min(train_bytes, len(whole) * 4 // 5)
        text, held, name = whole[:cut], whole[cut:], "pydoc_data.topics"
    sentences = []
    for line in held.splitlines():
        if line.strip().startswith("="):  # WikiText headings
            continue
        for piece in re.split(r"(?<=[.!?])\s+", line.strip()):
            if 10 <= len(piece.split()) <= 30:
                sentences.append(piece)
    return text.encode(), name, sentences


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m rnnlm.server`` in a child process, its log in a file."""

    def __init__(self, store: str, flags: list[str], log_name: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self.log_path = Path(store).parent / f"{log_name}.log"
        cmd = [sys.executable, "-m", "rnnlm.server", "--address", self.target]
        cmd += ["--store-dir", store, "--device", "cpu", *flags]
        self.flags = " ".join(flags)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 60
        with LMClient(self.target, timeout=1.0, retries=0) as probe:
            while True:
                try:
                    probe.models()
                    return
                except Exception:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"server did not start: {self.log()[-2000:]}") from None
                    time.sleep(0.2)

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def train(client: LMClient, model_id: str, corpus, settings: dict) -> float:
    started = time.perf_counter()
    job = client.train(model_id, corpus, epochs=1, seed=0, **settings)
    for event in client.watch(job.job_id):
        if event.final and event.state not in ("completed", "early_stopped"):
            raise RuntimeError(f"training {model_id} ended {event.state}: {event.error}")
    return time.perf_counter() - started


def drive(target, model_id, sentences, threads, start_at, seconds, omit, offset=0):
    """``threads`` clients scoring one sentence per call from ``start_at`` (wall clock) for
    ``seconds``; returns (calls, latencies in s, time the last call ended)."""
    lats: list[list[float]] = [[] for _ in range(threads)]
    ends = [start_at] * threads

    def client(i: int) -> None:
        with LMClient(target, options=OWN_CONNECTION, retries=0) as lm:
            k = (offset + i) * 7919  # each client walks the sentences from its own place
            lm.score(model_id, [sentences[k % len(sentences)]])  # connect before the clock
            time.sleep(max(0.0, start_at - time.time()))
            while time.time() < start_at + seconds:
                k += 1
                t0 = time.perf_counter()
                lm.score(model_id, [sentences[k % len(sentences)]], omit_tokens=omit)
                lats[i].append(time.perf_counter() - t0)
            ends[i] = time.time()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(client, range(threads)))
    flat = [x for lat in lats for x in lat]
    return len(flat), flat, max(ends)


def cpu_seconds(procs) -> float:
    total = 0.0
    for p in procs:
        with suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - t.iowait


def load(args, pool, server, sentences, clients, seconds) -> dict:
    """One cell: ``clients`` threads, over ``args.client_procs`` processes when given. CPU use
    is split into server, clients (this process and its pool) and other processes: on a small
    shared machine that says who the bottleneck is."""
    target, procs = server.target, min(args.client_procs, clients)
    me = psutil.Process()
    mine = [me, *(c for c in me.children() if c.pid != server.proc.pid)]
    before = cpu_seconds([server.ps]), cpu_seconds(mine), busy_seconds(), time.time()
    start_at = time.time() + 1.0 + 0.02 * clients  # time for every client to connect
    if procs == 1:
        parts = [drive(target, MODEL_ID, sentences, clients, start_at, seconds, args.omit_tokens)]
    else:
        split = [clients // procs + (p < clients % procs) for p in range(procs)]
        offsets = np.cumsum([0, *split[:-1]])
        futures = [
            pool.submit(drive, target, MODEL_ID, sentences, n, start_at, seconds,
                        args.omit_tokens, int(o))
            for n, o in zip(split, offsets)
        ]  # fmt: skip
        parts = [f.result() for f in futures]
    calls = sum(p[0] for p in parts)
    lat = np.array([x for p in parts for x in p[1]]) * 1000
    elapsed = max(p[2] for p in parts) - start_at
    wall = time.time() - before[3]
    srv, cli = cpu_seconds([server.ps]) - before[0], cpu_seconds(mine) - before[1]
    return {
        "clients": clients,
        "sent_s": calls / elapsed,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "calls": calls,
        "server_cpu": 100 * srv / wall,  # % of one core, connection set-up included
        "client_cpu": 100 * cli / wall,
        "other_cpu": 100 * (busy_seconds() - before[2] - srv - cli) / wall,
    }


def generate(target, streams: int, seconds: float, max_tokens: int) -> dict:
    """``streams`` threads, each looping generate_stream (4 sentences of up to max_tokens)."""
    counts = [0] * streams
    end = time.time() + seconds

    def stream(i: int) -> None:
        with LMClient(target, options=OWN_CONNECTION) as lm:
            seed = i * 1000
            while time.time() < end:
                seed += 1
                for _ in lm.generate_stream(
                    MODEL_ID, num_sentences=4, max_tokens=max_tokens, seed=seed
                ):
                    counts[i] += 1

    start = time.time()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(stream, range(streams)))
    elapsed = time.time() - start
    return {"streams": streams, "tok_s": sum(counts) / elapsed, "tokens": sum(counts)}


def in_process(store_dir: str, model_id: str, sentences: list[str], seconds: float) -> dict:
    """Sentences/s of ``lm.score`` in this process, per batch size, no server running."""
    import torch

    from rnnlm.model import LanguageModel
    from rnnlm.server.models import ModelRegistry, checkpoint_key
    from rnnlm.server.store import open_store

    store = open_store(None, store_dir)
    version = ModelRegistry(store).get(model_id)["current_version"]
    lm = LanguageModel.from_bytes(store.get_blob(checkpoint_key(model_id, version)), device="cpu")
    store.close()
    rates = {"torch_threads": torch.get_num_threads()}
    for batch in (128, 32):
        lm.score(sentences[:batch], batch_size=batch)  # warm-up
        chunks, k, start = [], 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            chunk = sentences[k : k + 512] or sentences[:512]
            k = (k + 512) % len(sentences)
            t0 = time.perf_counter()
            lm.score(chunk, batch_size=batch)
            chunks.append(len(chunk) / (time.perf_counter() - t0))
        rates[batch] = float(np.median(chunks))  # the median: robust to other processes
    return rates


def check(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def table(header: str, rows: list[str]) -> None:
    print(header)
    print("-" * len(header))
    for row in rows:
        print(row)
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model, short cells, soak 20s")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--seconds", type=float, help="per scoring cell (default 10; quick 3)")
    parser.add_argument("--soak-seconds", type=float, help="scoring soak (default 300; quick 20)")
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--vocab", type=int, help="vocabulary (default 8000; quick 2000)")
    parser.add_argument("--hidden", type=int, help="hidden and embedding size (128; quick 64)")
    parser.add_argument("--train-bytes", type=int, help="training text (default 600k; quick 150k)")
    parser.add_argument("--client-procs", type=int, default=1, help="processes of client threads")
    parser.add_argument("--omit-tokens", action="store_true", help="no per-token scores sent")
    parser.add_argument("--server-flags", default="", help="more flags for the load servers")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    quick = args.quick
    model = dict(QUICK if quick else FULL, cell=args.cell)
    if args.vocab:
        model["vocab_size"] = args.vocab
    if args.hidden:
        model["embed_size"] = model["hidden_size"] = args.hidden
    seconds = args.seconds or (3.0 if quick else 10.0)
    soak = args.soak_seconds if args.soak_seconds is not None else (20.0 if quick else 300.0)
    clients = [int(c) for c in args.clients.split(",")]
    text, corpus_name, sentences = corpora(args.train_bytes or (150_000 if quick else 600_000))
    print(
        f"# {platform.python_version()}, {os.cpu_count()} CPUs "
        f"(load avg {os.getloadavg()[0]:.2f}), client procs {args.client_procs}; "
        f"model {model}, 1 epoch on {len(text):,} bytes of {corpus_name}; "
        f"{len(sentences):,} held-out sentences; {seconds:g}s per cell, soak {soak:g}s"
    )
    res: dict = {"model": model, "cpus": os.cpu_count(), "seconds": seconds, "soak_s": soak}
    extra = args.server_flags.split()
    tmp = tempfile.TemporaryDirectory(prefix="rnnlm-bench-")
    store = str(Path(tmp.name) / "store")
    pool = None
    if args.client_procs > 1:
        pool = ProcessPoolExecutor(args.client_procs, mp_context=get_context("spawn"))
        list(pool.map(time.sleep, [0] * args.client_procs))  # start them before any clock
    try:
        server = Server(store, [], "train")
        try:
            with LMClient(server.target) as lm:
                corpus = lm.upload_corpus(text, filename="train.txt")
                res["train_s"] = train(lm, MODEL_ID, corpus, {**model, "batch_size": 64})
                tiny = lm.upload_corpus(text[:30_000], filename="tiny.txt")
                for model_id in CACHE_IDS:
                    train(lm, model_id, tiny, TINY)
        finally:
            server.stop()
        print(f"# trained {MODEL_ID} through the service in {res['train_s']:.1f}s", flush=True)
        res["in_process"] = in_process(store, MODEL_ID, sentences, max(seconds, 4.0))

        score_rows: dict[str, list[dict]] = {}
        for batching in ("false", "true"):
            server = Server(store, ["--batching", batching, *extra], f"batching-{batching}")
            try:
                with LMClient(server.target) as lm:
                    lm.score(MODEL_ID, [sentences[0]])  # loads the model
                time.sleep(1.0)
                idle = server.rss_mb()
                score_rows[batching] = []
                for n in clients:
                    row = load(args, pool, server, sentences, n, seconds)
                    score_rows[batching].append(row)
                    print(f"# batching {batching}: {row}", flush=True)
                if batching == "true":
                    after_cells = server.rss_mb()
                    res["generate"] = [
                        generate(server.target, n, seconds, 30 if not quick else 15)
                        for n in (1, 16)
                    ]
                    samples: list[float] = []
                    with ThreadPoolExecutor(1) as bg:
                        soaking = bg.submit(load, args, pool, server, sentences, 32, soak)
                        while not soaking.done():
                            samples.append(server.rss_mb())
                            time.sleep(min(5.0, soak / 10))
                        res["soak"] = soaking.result()
                    time.sleep(1.0)
                    res["memory"] = {
                        "idle_mb": idle,
                        "after_cells_mb": after_cells,
                        "soak_max_mb": max(samples),
                        "after_soak_mb": server.rss_mb(),
                    }
            finally:
                server.stop()
        res["scoring"] = score_rows

        # The cache bound: 3 models through a server that keeps 2.
        server = Server(store, ["--cache-size", "2"], "cache")
        cache_rows = []
        try:
            with LMClient(server.target) as lm:
                for model_id in (MODEL_ID, *CACHE_IDS, MODEL_ID):
                    lm.score(model_id, [sentences[0]])
                    log = server.log()
                    cache_rows.append(
                        (model_id, server.rss_mb(), log.count(" loaded in "),
                         log.count(" unloaded"))
                    )  # fmt: skip
        finally:
            server.stop()
        res["cache"] = cache_rows
    finally:
        if pool is not None:
            pool.shutdown()
        tmp.cleanup()

    report(res, clients)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


def report(res: dict, clients: list[int]) -> None:
    ip = res["in_process"]
    print(f"\nin-process lm.score (torch threads {ip['torch_threads']}, no server running):")
    table(
        f"{'batch_size':>10} {'sentences/s':>12}",
        [f"{b:>10} {ip[b]:>12,.0f}" for b in (128, 32)],
    )
    rows = []
    for batching in ("false", "true"):
        for r in res["scoring"][batching]:
            on = "on" if batching == "true" else "off"
            rows.append(
                f"{r['clients']:>7} {on:>8} {r['sent_s']:>12,.0f} {r['p50_ms']:>8.2f} "
                f"{r['p99_ms']:>8.2f} {r['calls']:>8,} {r['server_cpu']:>6.0f}% "
                f"{r['client_cpu']:>6.0f}% {r['other_cpu']:>6.0f}%"
            )
    print("ScoreSentence, one sentence per call (CPU: % of one core):")
    table(f"{'clients':>7} {'batching':>8} {'sentences/s':>12} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'calls':>8} {'server':>7} {'client':>7} {'other':>7}", rows)  # fmt: skip
    on = {r["clients"]: r for r in res["scoring"]["true"]}
    off = {r["clients"]: r for r in res["scoring"]["false"]}
    top = max(clients)
    if top in on and top in off:
        ratio = on[top]["sent_s"] / off[top]["sent_s"]
        frac = on[top]["sent_s"] / ip[128]
        table(
            f"{'target':44} {'measured':>9} {'goal':>6}  result",
            [
                f"{f'batching on/off at {top} clients':44} {ratio:>8.1f}x {'5x':>6}  "
                f"{check(ratio, 5)}",
                f"{f'on at {top} clients / in-process batch 128':44} {frac:>9.2f} {'0.50':>6}  "
                f"{check(frac, 0.5)}",
            ],
        )
    table(
        f"{'Generate streams':>16} {'tokens/s':>10} {'tokens':>8}",
        [f"{g['streams']:>16} {g['tok_s']:>10,.0f} {g['tokens']:>8,}" for g in res["generate"]],
    )
    m, soak = res["memory"], res["soak"]
    growth = 100 * (m["after_soak_mb"] / m["idle_mb"] - 1)
    drift = 100 * (m["after_soak_mb"] / m["after_cells_mb"] - 1)
    print(
        f"server RSS (batching on); soak: 32 clients for {res['soak_s']:g}s, "
        f"{soak['sent_s']:,.0f} sentences/s, p99 {soak['p99_ms']:.1f} ms"
    )
    table(
        f"{'when':44} {'RSS MiB':>9}",
        [
            f"{'idle, one model loaded (after 1 call)':44} {m['idle_mb']:>9.1f}",
            f"{'after the scoring and generate cells':44} {m['after_cells_mb']:>9.1f}",
            f"{'during the soak, max':44} {m['soak_max_mb']:>9.1f}",
            f"{'after the soak':44} {m['after_soak_mb']:>9.1f}",
            f"{'growth idle -> after soak (goal < 5%)':44} {growth:>8.1f}%  "
            f"{'PASS' if growth < 5 else 'MISS'}",
            f"{'growth during soak (after cells -> after)':44} {drift:>8.1f}%",
        ],
    )
    print("model cache, server --cache-size 2 (loads/unloads counted in its log):")
    table(
        f"{'scored model':14} {'RSS MiB':>9} {'loads':>6} {'unloads':>8} {'loaded now':>10}",
        [
            f"{mid:14} {rss:>9.1f} {loads:>6} {unloads:>8} {loads - unloads:>10}"
            for mid, rss, loads, unloads in res["cache"]
        ],
    )


if __name__ == "__main__":
    sys.exit(main())

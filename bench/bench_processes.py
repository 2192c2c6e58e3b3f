"""Scoring throughput through gRPC with 1 and 2 server processes (``rnnlm serve --processes``).

    python bench/bench_processes.py                         # GRU 8000/128, 10 s cells (~7 min)
    python bench/bench_processes.py --quick                 # small model, 3 s a cell
    python bench/bench_processes.py --clients 32,64 --client-procs 2

The load cells of bench_service.py (whose helpers this reuses; that file is at its size
limit): a first server trains the benchmark GRU through the service on a local store; then,
for each process count, ``python -m rnnlm.server --processes N`` on that store, every process
warmed up (the model loaded), and N client threads, each with its own connection (the kernel
spreads connections over the processes), send ScoreSentence calls of ONE held-out sentence
back to back. The servers run side by side and take the cells in turn, ``--rounds`` times,
so that what else runs on the machine falls on each alike; the table shows the median round.
Server CPU is the parent's and its children's (an idle server counts among the "client").
Math threads per process are the server's choice (0: one process takes torch's default, all
cores; N processes an equal share each) unless ``--torch-threads`` is given here.

Target (issue 14): 2 processes score at least 1.6x the sentences/s of 1 on a 2-core machine.
Never part of the tests: figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import psutil
from bench_service import FULL, MODEL_ID, OWN_CONNECTION, QUICK, Server, corpora, load, table, train

from rnnlm.client.sync import LMClient


class ProcessTree:
    """A server process and its children, as one for ``load``'s CPU accounting."""

    def __init__(self, root: psutil.Process) -> None:
        self.root = root

    def cpu_times(self) -> tuple[float, float]:
        procs = [self.root, *self.root.children(recursive=True)]
        times = [p.cpu_times() for p in procs]
        return sum(t.user for t in times), sum(t.system for t in times)


def warm_up(target: str, sentence: str, clients: int = 32) -> None:
    """One call from each of ``clients`` connections, so every process loads the model."""

    def one(_: int) -> None:
        with LMClient(target, options=OWN_CONNECTION, retries=3) as lm:
            lm.score(MODEL_ID, [sentence])

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))


def threads_of(server: Server, processes: int, torch_threads: int) -> str:
    """Math threads per process: as asked, from the parent's log (N > 1) or torch's default."""
    if torch_threads:
        return str(torch_threads)
    if processes == 1:
        return os.environ.get("OMP_NUM_THREADS") or f"{os.cpu_count()} (default)"
    for line in server.log_path.read_text().splitlines():
        if "math threads each" in line:
            return line.rsplit(", ", 1)[1].split()[0]
    return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small model, 3 s cells")
    parser.add_argument("--processes", default="1,2", help="server process counts to compare")
    parser.add_argument("--clients", default="32,64", help="client threads per scoring cell")
    parser.add_argument("--seconds", type=float, help="per cell (default 10; quick 3)")
    parser.add_argument("--client-procs", type=int, default=1, help="processes of client threads")
    parser.add_argument("--omit-tokens", action="store_true", help="ask for no per-token scores")
    parser.add_argument("--torch-threads", type=int, default=0, help="per server process")
    parser.add_argument("--rounds", type=int, default=3, help="cells per configuration")
    parser.add_argument("--server-flags", default="", help="more flags for the load servers")
    args = parser.parse_args(argv)
    model = QUICK if args.quick else FULL
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    counts = [int(n) for n in args.processes.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    text, corpus_name, sentences = corpora(150_000 if args.quick else 600_000)
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, client procs "
        f"{args.client_procs}; {model}, 1 epoch on {len(text):,} bytes of {corpus_name}; "
        f"{seconds:g}s a cell, {args.rounds} rounds (the median shown)"
    )
    tmp = tempfile.TemporaryDirectory(prefix="rnnlm-bench-")
    store = str(Path(tmp.name) / "store")
    pool = None
    if args.client_procs > 1:  # spawn: forking a process that has used gRPC is unsafe
        pool = ProcessPoolExecutor(args.client_procs, mp_context=get_context("spawn"))
        list(pool.map(time.sleep, [0] * args.client_procs))
    rows = []
    try:
        server = Server(store, [], "train")
        try:
            with LMClient(server.target) as lm:
                corpus = lm.upload_corpus(text, filename="train.txt")
                spent = train(lm, MODEL_ID, corpus, {**model, "batch_size": 64})
            print(f"# trained {MODEL_ID} through the service in {spent:.1f}s", flush=True)
        finally:
            server.stop()
        servers: dict[int, Server] = {}
        try:
            for n in counts:  # all at once: an idle server takes next to no CPU
                flags = ["--processes", str(n), *args.server_flags.split()]
                if args.torch_threads:
                    flags += ["--torch-threads", str(args.torch_threads)]
                servers[n] = Server(store, flags, f"processes-{n}")
                servers[n].ps = ProcessTree(servers[n].ps)  # type: ignore[assignment]
                warm_up(servers[n].target, sentences[0])
            # Cell by cell in turn, round after round: load from other programs on the
            # machine then falls on every process count alike; the median round is shown.
            for c in clients:
                cells: dict[int, list[dict]] = {n: [] for n in counts}
                for _ in range(args.rounds):
                    for n, server in servers.items():
                        row = {"processes": n, "threads": threads_of(server, n, args.torch_threads),
                               **load(args, pool, server, sentences, c, seconds)}  # fmt: skip
                        cells[n].append(row)
                        print(f"# {row}", flush=True)
                for n in counts:
                    rows.append(sorted(cells[n], key=lambda r: r["sent_s"])[args.rounds // 2])
        finally:
            for server in servers.values():
                server.stop()
    finally:
        if pool is not None:
            pool.shutdown()
        tmp.cleanup()
    report(rows, counts)
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")
    return 0


def report(rows: list[dict], counts: list[int]) -> None:
    base = {r["clients"]: r["sent_s"] for r in rows if r["processes"] == min(counts)}
    lines = [
        f"{r['processes']:>9} {r['threads']:>14} {r['clients']:>7} {r['sent_s']:>12,.0f} "
        f"{r['sent_s'] / base[r['clients']]:>6.2f}x {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
        f"{r['server_cpu']:>6.0f}% {r['client_cpu']:>6.0f}% {r['other_cpu']:>6.0f}%"
        for r in rows
    ]
    table(
        f"{'processes':>9} {'threads each':>14} {'clients':>7} {'sentences/s':>12} {'ratio':>7} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'server':>7} {'client':>7} {'other':>7}",
        lines,
        "ScoreSentence, one sentence a call, batching on; CPU in % of one core "
        "(server: the parent and its processes):",
    )
    if len(counts) > 1:
        top = max(counts)
        best = max(r["sent_s"] / base[r["clients"]] for r in rows if r["processes"] == top)
        verdict = "PASS" if best >= 1.6 else "MISS"
        print(f"{top} processes / {min(counts)}, best cell: {best:.2f}x (goal 1.6x)  {verdict}")


if __name__ == "__main__":
    sys.exit(main())

"""Soak: a real server under a mixed workload for N minutes; resources and status codes.

    python bench/bench_soak.py                     # 10 minutes, 4 clients, Redis
    python bench/bench_soak.py --store local       # the same on the directory store
    python bench/bench_soak.py --minutes 1 --quick # a smoke run: 2 clients, tiny corpora

A private ``redis-server`` (free loopback port, nothing on disk) and an ``rnnlm serve``
process with a short sweep interval, orphan grace and retention, so that the sweep runs
during the soak. Client threads (one LMClient each) repeat a cycle: upload a generated
corpus, Train a tiny GRU, watch it (every fourth job is cancelled at its first event),
score, rank and rescore a small n-best list, generate (sampling, beam, a stream closed
early, a too-short deadline), a handful of deliberately bad requests, then DeleteTrainingJob,
DeleteModel and DeleteCorpus (half the cancelled jobs are kept ~15 s first, so that the
sweep's retention removes their checkpoints). Every call's outcome is counted by gRPC status
per method; UNKNOWN, INTERNAL and DATA_LOSS are flagged with their messages.

Sampled after a warm-up cycle (start) and after the workload has stopped and a sweep has run
(end): the server's RSS, threads and open file descriptors; Redis' DBSIZE, keys under the
server's prefix and INFO used_memory, or the directory store's files and bytes. Never part
of the tests; exits non-zero only when the setup fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

from rnnlm.client import LMClient
from rnnlm.client.errors import ResourceExhausted, RnnlmError

PREFIX = "soak"
MODEL = {"cell": "gru", "vocab_size": 300, "embed_size": 16, "hidden_size": 16}
TRAINING = {"epochs": 1, "batch_size": 32, "log_every": 2, "seed": 1}
SWEEP_S, GRACE_S = 4.0, 2.0  # the server's --sweep-interval-s and --orphan-grace-s
ALARM = ("UNKNOWN", "INTERNAL", "DATA_LOSS")  # never expected: a handler failed
# Made-up words drawn with Zipf-like weights: a vocabulary and repetition, like real text.
WORDS = [a + b for a in ("ka", "lo", "mi", "su", "te", "ra", "no", "vi") for b in "aeiou"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus_text(rng: random.Random, sentences: int) -> bytes:
    """Paragraphs of 5 sentences of 4-12 words; a fresh seed gives a fresh corpus id."""
    weights = [1 / (k + 1) for k in range(len(WORDS))]
    pick = lambda: " ".join(rng.choices(WORDS, weights, k=rng.randint(4, 12))) + " ."  # noqa: E731
    lines = [pick() for _ in range(sentences)]
    return "\n\n".join(" ".join(lines[i : i + 5]) for i in range(0, sentences, 5)).encode()


class Outcomes:
    """Counts (label, status name) over all threads; keeps the first alarming messages."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.alarms: list[str] = []
        self._lock = threading.Lock()

    def add(self, label: str, status: str, detail: str = "") -> None:
        with self._lock:
            self.counts[(label, status)] += 1
            if (status in ALARM or status.startswith("client:")) and len(self.alarms) < 10:
                self.alarms.append(f"{label} {status}: {detail[:300]}")

    def call(self, label: str, fn, *args, **kwargs):
        """fn(*args, **kwargs) counted by outcome; returns its result, or None on an error."""
        try:
            result = fn(*args, **kwargs)
        except RnnlmError as err:
            self.add(label, err.code.name, err.details)
            return None
        except Exception as err:  # a client-side failure: counted, flagged, the soak goes on
            self.add(label, f"client:{type(err).__name__}", str(err))
            return None
        self.add(label, "OK")
        return result


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which(os.environ.get("RNNLM_REDIS_SERVER", "redis-server"))
    if binary is None:
        raise RuntimeError("redis-server is not on PATH (or set RNNLM_REDIS_SERVER)")
    import redis  # the server extra's client; this bench runs where a server can

    port = free_port()
    cmd = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly",
           "no", "--dir", str(workdir), "--logfile", str(workdir / "redis.log")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    url, deadline = f"redis://127.0.0.1:{port}/0", time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with redis.Redis.from_url(url, socket_timeout=1) as r:
                r.ping()
            return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"redis-server did not start on port {port}")


def start_server(args, workdir: Path, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    """``rnnlm serve`` (the console script next to this Python) with short sweep settings."""
    target = f"127.0.0.1:{free_port()}"
    cmd = [str(Path(sys.executable).with_name("rnnlm")), "serve", "--address", target,
           "--device", "cpu", "--redis-prefix", PREFIX, "--store-dir", str(workdir / "store"),
           "--sweep-interval-s", str(SWEEP_S), "--orphan-grace-s", str(GRACE_S),
           "--event-retention-s", "5", "--checkpoint-retention-s", "5",
           "--request-id-ttl-s", "30", "--max-message-bytes", str(2**20),
           "--torch-threads", str(args.torch_threads)]  # fmt: skip
    if redis_url:
        cmd += ["--redis-url", redis_url]
    with open(workdir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    with LMClient(target, timeout=2, retries=0) as probe:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if probe.health() == "SERVING":
                    return proc, target
            except RnnlmError:
                pass
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("the server did not start:\n" + (workdir / "server.log").read_text()[-2000:])


def sample(pid: int, args, workdir: Path, redis_url: str | None) -> dict[str, float]:
    """The server process's resources and the store's size, now."""
    ps = psutil.Process(pid)
    out = {"server RSS MiB": ps.memory_info().rss / 2**20, "server threads": ps.num_threads(),
           "server open fds": ps.num_fds()}  # fmt: skip
    if redis_url:
        import redis

        with redis.Redis.from_url(redis_url) as r:
            out["Redis DBSIZE"] = r.dbsize()
            out[f"Redis keys {PREFIX}:*"] = sum(1 for _ in r.scan_iter(f"{PREFIX}:*", 1000))
            out["Redis used_memory KiB"] = r.info("memory")["used_memory"] / 1024
    else:
        files = [p for p in (workdir / "store").rglob("*") if p.is_file()]
        out["store files"] = len(files)
        out["store KiB"] = sum(p.stat().st_size for p in files) / 1024
    return out


def thread_names(pid: int) -> str:
    """The server's threads by OS name (Linux): gRPC core's own ("event_engine", ...) apart
    from Python's and torch's, which carry the process name."""
    names = Counter()
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            names[comm.read_text().strip()] += 1
    return ", ".join(f"{n} {k}" for n, k in sorted(names.items()))


def cycle(c: LMClient, fast: LMClient, rng: random.Random, tag: str, o: Outcomes, args,
          parked: list) -> str:  # fmt: skip
    """One round of the mix; returns the job's final state (or why there was none)."""
    text = corpus_text(rng, 150 if args.quick else 400)
    corpus = o.call("UploadCorpus", c.upload_corpus, text, filename=f"{tag}.txt")
    if corpus is None:
        return "no corpus"
    model_id, state = f"m-{tag}", "no job"

    def train():  # over --max-concurrent-jobs: refused (counted); a real client waits, retries
        for _ in range(100):
            try:
                return c.train(model_id, corpus, **MODEL, **TRAINING)
            except ResourceExhausted as err:
                o.add("Train", err.code.name, err.details)
                time.sleep(0.3)
        return c.train(model_id, corpus, **MODEL, **TRAINING)

    job = o.call("Train", train)
    if job is not None:
        cancel = rng.random() < 0.25

        def watch() -> str:
            for k, event in enumerate(c.watch(job.job_id, timeout=300)):
                if cancel and k == 0:  # a cancelled job, then calls on a model not ready
                    c.cancel(job.job_id)
                if event.final:
                    return event.state
            return "watch ended early"

        state = o.call("WatchTrainingJob", watch) or "watch failed"
    sentences = [" ".join(rng.choices(WORDS, k=rng.randint(3, 10))) + " ." for _ in range(8)]
    o.call("ScoreSentence", c.score, model_id, sentences)
    o.call("ScoreSentence (rank)", c.rank, model_id, sentences[:4])
    nbest = [f"{i // 3} ||| {s} ||| LM0= -1.5 ||| -1.5" for i, s in enumerate(sentences[:6])]
    o.call("ScoreSentence (rescore)", c.rescore, nbest, model_id)
    o.call("Generate (sample)", c.generate, model_id, num_sentences=2, max_tokens=20, seed=1)
    o.call("Generate (beam)", c.generate, model_id, beam_width=4, max_tokens=15)

    def closed_early() -> None:  # closing the iterator cancels the call on the server
        stream = c.generate_stream(model_id, num_sentences=8, max_tokens=50)
        for k, _ in enumerate(stream):
            if k == 3:
                break
        stream.close()

    o.call("Generate (closed early)", closed_early)
    hurried = lambda: list(c.generate_stream(model_id, max_tokens=50, timeout=0.001))  # noqa: E731
    o.call("Generate (1 ms deadline)", hurried)
    o.call("ScoreSentence (1 ms deadline)", fast.score, model_id, sentences)
    bad_requests(c, model_id, corpus.corpus_id, o)
    if job is not None and state == "cancelled" and rng.random() < 0.5:
        # Kept a while: the sweep removes its checkpoint (retention over) meanwhile.
        parked.append((time.time(), job.job_id, model_id))
    else:
        release(c, o, [(0.0, job.job_id if job else None, model_id)], 0.0)
    o.call("DeleteCorpus", c.delete_corpus, corpus.corpus_id)
    return state


def release(c: LMClient, o: Outcomes, parked: list, age: float) -> None:
    """Delete the parked (since, job id, model id) entries older than ``age`` seconds."""
    for item in [p for p in parked if time.time() - p[0] >= age]:
        parked.remove(item)
        if item[1] is not None:
            o.call("DeleteTrainingJob", c.delete_job, item[1])
        o.call("DeleteModel", c.delete_model, item[2])


def bad_requests(c: LMClient, model_id: str, corpus_id: str, o: Outcomes) -> None:
    """Each should get a specific status (NOT_FOUND, INVALID_ARGUMENT, ...), never UNKNOWN."""
    o.call("bad: ScoreSentence unknown model", c.score, "no-such-model", ["a b ."])
    o.call("bad: GetModel malformed id", c.model, "bad id/../!")
    o.call("bad: GetTrainingJob unknown", c.job, "no-such-job")
    o.call("bad: DeleteCorpus unknown", c.delete_corpus, "c-" + "0" * 32)
    o.call("bad: ScoreSentence 300 sentences", c.score, model_id, ["ka ."] * 300)
    o.call("bad: ScoreSentence 1.1 MB message", c.score, model_id, ["ka " * 370_000])
    o.call("bad: Generate temperature -1", c.generate, model_id, temperature=-1.0)
    o.call("bad: Train oversized model", c.train, "too-big", corpus_id, hidden_size=100_000)
    o.call("bad: Train unknown corpus", c.train, "m-x", "c-" + "f" * 32, **MODEL)


def worker(i: int, target: str, stop_at: float, args, o: Outcomes, states: Counter) -> None:
    """Cycles until ``stop_at`` (at least one); the cycle under way finishes, and everything
    it made is deleted on the way out."""
    rng, parked = random.Random(args.seed * 1000 + i), []
    with LMClient(target, timeout=60) as c, LMClient(target, timeout=0.001, retries=0) as fast:
        for n in range(10**9):
            tag = f"{i}-{n}-{rng.getrandbits(32):08x}"
            states[cycle(c, fast, rng, tag, o, args, parked)] += 1
            release(c, o, parked, GRACE_S + 3 * SWEEP_S)
            if time.time() >= stop_at:
                break
        release(c, o, parked, 0.0)


def report(start: dict, end: dict, o: Outcomes, states: Counter, log: str) -> None:
    print("\n## Resources: after warm-up (start), after the workload and a sweep (end)")
    print("| figure | start | end | delta |\n|---|---|---|---|")
    for key in start:
        a, b = start[key], end[key]
        print(f"| {key} | {a:,.1f} | {b:,.1f} | {b - a:+,.1f} |")
    codes = sorted({s for _, s in o.counts}, key=lambda s: (s != "OK", s))
    labels = sorted({m for m, _ in o.counts})
    print("\n## Outcomes by gRPC status code\n| call | " + " | ".join(codes) + " |")
    print("|---|" + "---|" * len(codes))
    for m in labels:
        print(f"| {m} | " + " | ".join(str(o.counts[(m, s)] or "") for s in codes) + " |")
    total = Counter()
    for (_, s), n in o.counts.items():
        total[s] += n
    print("| **all** | " + " | ".join(f"**{total[s]}**" for s in codes) + " |")
    print("\njobs ended:", ", ".join(f"{k} {v}" for k, v in states.most_common()))
    print(f"server log: {log.count('sweep: removed')} sweep removals, "
          f"{log.count('Traceback')} tracebacks, {log.count(' ERROR ')} ERROR lines")  # fmt: skip
    bad = sum(n for s, n in total.items() if s in ALARM or s.startswith("client:"))
    if bad:
        print(f"\n!!! {bad} UNKNOWN/INTERNAL/DATA_LOSS or client-side failures: see below !!!")
        print("\n".join(f"  {a}" for a in o.alarms))
    else:
        print("no UNKNOWN, INTERNAL, DATA_LOSS or client-side failures")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="workload time (10)")
    parser.add_argument("--clients", type=int, help="client threads (default 4; quick 2)")
    parser.add_argument("--store", choices=("redis", "local"), default="redis")
    parser.add_argument("--torch-threads", type=int, default=0, help="server's; 0: torch's")
    parser.add_argument("--quick", action="store_true", help="2 clients, smaller corpora")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    clients = args.clients or (2 if args.quick else 4)
    import torch  # only to say how many threads the server's torch default is here

    threads = args.torch_threads or torch.get_num_threads()
    print(f"# {args.store} store, {clients} client threads, {args.minutes:g} min, server torch "
          f"threads {threads}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"sweep every {SWEEP_S:g}s, orphan grace {GRACE_S:g}s", flush=True)  # fmt: skip
    tmp = tempfile.TemporaryDirectory(prefix="rnnlm-soak-")
    workdir, redis_proc, server = Path(tmp.name), None, None
    o, states = Outcomes(), Counter()
    try:
        redis_url = None
        if args.store == "redis":
            redis_proc, redis_url = start_redis(workdir)
        server, target = start_server(args, workdir, redis_url)
        worker(0, target, 0.0, args, Outcomes(), Counter())  # warm-up: one cycle, not counted
        time.sleep(GRACE_S + 2 * SWEEP_S)  # its debris swept before the baseline
        start = sample(server.pid, args, workdir, redis_url)
        threads_start = thread_names(server.pid)
        stop_at, began = time.time() + 60 * args.minutes, time.time()
        pool = [threading.Thread(target=worker, args=(i, target, stop_at, args, o, states))
                for i in range(clients)]  # fmt: skip
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        took = time.time() - began
        time.sleep(GRACE_S + 2 * SWEEP_S)  # at least one whole sweep after the last call
        end = sample(server.pid, args, workdir, redis_url)
        print(f"# server threads at the start: {threads_start}; at the end: "
              f"{thread_names(server.pid)}")  # fmt: skip
        log = (workdir / "server.log").read_text(errors="replace")
    except Exception as err:  # setup failure: the only non-zero exit
        print(f"setup failed: {err}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait()
        tmp.cleanup()
    calls = sum(o.counts.values())
    print(f"# {calls:,} calls in {took:.0f}s ({calls / took:.1f}/s), {sum(states.values())} "
          f"cycles; load average at the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    report(start, end, o, states, log)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Redis store behind Redis Sentinel (``redis+sentinel://`` URLs, server/store/
redis_sentinel.py): real processes on loopback ports, a primary, one replica and one
sentinel (quorum 1) that watches them. The store writes through the sentinel's name for
the primary; the primary is SIGKILLed; the sentinel promotes the replica; the store finds
the new primary by itself, still holds what was written before the kill (and acknowledged
by the replica: WAIT), and takes new writes. A server started on the URL answers health
and calls before and after. Everything has a password, the primary's with characters that
must be percent-encoded in the URL."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from rnnlm.client import LMClient
from rnnlm.server import RnnlmServer, ServerConfig
from rnnlm.server.errors import Unavailable
from rnnlm.server.store import JOB, MODEL, RedisStore, open_store
from rnnlm.server.store.redis_sentinel import SentinelUrl
from tests.fixtures_redis import REDIS_SERVER, answers_ping, free_port

SERVICE = "rnnlm-primary"
PASSWORD = "s3cret:p@ss/word"  # the primary's (and the replica's)
SENTINEL_PASSWORD = "sentinel-only"
# The sentinel calls the primary down after 1 s without an answer; a second failover of
# the same primary would wait 2 x failover-timeout.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
WAIT_S = 20.0


def wait_for(condition, what: str, timeout: float = WAIT_S):
    """Poll ``condition`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


class Node:
    """One ``redis-server`` process (a data node or, with a config file, a sentinel)."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        command = [_binary(), *args, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(workdir), "--logfile", str(self.log), "--save", ""]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(port=self.port, password=password, socket_timeout=5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def _binary() -> str:
    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        pytest.fail(f"{REDIS_SERVER!r} is not on PATH: apt-get install redis-server")
    return binary


@pytest.fixture
def sentinel_setup(tmp_path: Path) -> Iterator[dict]:
    # Diskless sync at once (the default waits 5 s for more replicas to join).
    auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD, "--repl-diskless-sync-delay", "0"]
    nodes: list[Node] = []
    try:
        primary = Node(tmp_path / "primary", "primary", auth)
        nodes.append(primary)
        wait_for(lambda: answers_ping(primary.port, PASSWORD), "the primary to start")
        replica_of = ["--replicaof", "127.0.0.1", str(primary.port)]
        replica = Node(tmp_path / "replica", "replica", [*auth, *replica_of])
        nodes.append(replica)
        wait_for(
            lambda: replica.client(PASSWORD).info("replication")["master_link_status"] == "up",
            "the replica to sync",
        )
        config = tmp_path / "sentinel" / "sentinel.conf"  # sentinels rewrite their config
        config.parent.mkdir()
        config.write_text(
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1\n"
            f"sentinel auth-pass {SERVICE} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
        )
        sentinel = Node(config.parent, "sentinel", [str(config), "--sentinel"])
        nodes.append(sentinel)
        watcher = sentinel.client(SENTINEL_PASSWORD)
        wait_for(lambda: _known_replicas(watcher), "the sentinel to see the replica")
        password = urllib.parse.quote(PASSWORD, safe="")
        url = (
            f"redis+sentinel://:{password}@127.0.0.1:{sentinel.port}/{SERVICE}/0"
            f"?sentinel_password={SENTINEL_PASSWORD}"
        )
        yield {"url": url, "primary": primary, "replica": replica, "watcher": watcher}
    except BaseException:
        for node in nodes:
            tail = node.log.read_text(errors="replace")[-3000:] if node.log.exists() else ""
            print(f"--- {node.log.name}\n{tail}")  # shown by pytest with the failure
        raise
    finally:
        for node in nodes:
            node.kill()


def _known_replicas(watcher: redis.Redis) -> list:
    try:
        replicas = watcher.sentinel_slaves(SERVICE)
    except redis.ResponseError:  # the sentinel has not met the primary yet
        return []
    return [r for r in replicas if not (r["is_sdown"] or r["is_odown"])]


def _primary_port(watcher: redis.Redis) -> int:
    return int(watcher.sentinel_get_master_addr_by_name(SERVICE)[1])


def test_the_store_follows_a_failover(sentinel_setup, tmp_path):
    url, primary, replica = (sentinel_setup[k] for k in ("url", "primary", "replica"))
    watcher = sentinel_setup["watcher"]
    store = open_store(url, tmp_path / "unused", prefix="sentinel")
    assert isinstance(store, RedisStore)
    # The server under a prefix of its own: the documents written here are not models.
    config = ServerConfig(address="127.0.0.1:0", redis_url=url, redis_prefix="served")
    server = RnnlmServer(config)
    server.start()
    try:
        assert _primary_port(watcher) == primary.port
        sentinel_port = watcher.connection_pool.connection_kwargs["port"]
        where = store.describe()
        assert where.startswith(f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}/0 ")
        assert PASSWORD not in where and SENTINEL_PASSWORD not in where
        store.create(MODEL, "before", {"state": "ready"})
        store.put_blob("weights/before", b"\x00\x01" * 5000)
        event_id = store.append_event("job-before", {"kind": "progress"})
        with LMClient(server.address, retries=4) as client:
            assert client.health() == "SERVING"
            assert client.models() == []  # read through the sentinel's primary
        # The writes reached the replica before the kill: it is what will be promoted.
        assert primary.client(PASSWORD).wait(1, 5000) >= 1

        primary.kill()
        wait_for(lambda: _primary_port(watcher) == replica.port, "the sentinel to fail over")

        def store_answers() -> bool:
            try:
                return store.get(MODEL, "before") is not None
            except Unavailable:  # the old primary's connections fail until it is found
                return False

        wait_for(store_answers, "the store to reach the new primary")
        assert store.get(MODEL, "before") == {"state": "ready"}
        assert store.get_blob("weights/before") == b"\x00\x01" * 5000
        assert [i for i, _ in store.read_events("job-before")] == [event_id]
        store.create(JOB, "after", {"state": "queued"})
        store.update(JOB, "after", lambda doc: {**(doc or {}), "state": "running"})
        assert store.get(JOB, "after") == {"state": "running"}
        assert replica.client(PASSWORD).get("sentinel:doc:job:after") is not None

        with LMClient(server.address, retries=4) as client:
            wait_for(lambda: client.health() == "SERVING", "the server's health")
            assert [m.model_id for m in client.models()] == []
    finally:
        server.stop(grace=1.0)
        store.close()


def test_the_server_refuses_a_bad_sentinel_url_without_showing_the_password():
    with pytest.raises(ValueError) as caught:
        ServerConfig(redis_url="redis+sentinel://:hunter2@sentinel:26379/")
    assert "must be /service_name" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "url,message",
    [
        ("redis+sentinel://s:26379", "must be /service_name"),
        ("redis+sentinel://s:26379/m/zero", "database 'zero' must be a whole number"),
        ("redis+sentinel://s:99999/m", "sentinel 's:99999' is not host[:port]"),
        ("redis+sentinel://s1,,s2/m", "sentinel '' is not host[:port]"),
        ("redis+sentinel://s/m?ssl_ca_certs=/ca.pem", "unknown option 'ssl_ca_certs'"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url, message):
    with pytest.raises(ValueError, match="invalid Sentinel URL") as caught:
        SentinelUrl.parse(url)
    assert message in str(caught.value)


def test_a_sentinel_url_names_every_sentinel_and_the_primary():
    url = "redis+sentinel://app:p%40ss@10.0.0.1,10.0.0.2:26380,[fd00::3]:26381/lm/2"
    assert SentinelUrl.parse(url) == SentinelUrl(
        sentinels=(("10.0.0.1", 26379), ("10.0.0.2", 26380), ("fd00::3", 26381)),
        service_name="lm",
        db=2,
        username="app",
        password="p@ss",
    )

"""Client-side round robin over several servers: a list of addresses, the same joined by
commas (the CLI's ``--target``), and a ``dns:///`` name that resolves to several addresses,
as a Kubernetes headless Service's name does. Two real servers on loopback, one port on two
loopback addresses (127.0.0.1 and 127.0.0.2) like two pods; each server counts the calls it
answered in its own metrics, so the test sees where every call went. The DNS name is served
by a small DNS responder in the test, named as the resolver in the target
(``dns://127.0.0.1:PORT/name:port``), so the machine's own resolver is left alone."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnnlm.client import LMClient
from rnnlm.client.cli import main
from rnnlm.server import RnnlmServer
from tests.client.facade import AsyncFacade

from .conftest import Backend, wait_until

HEADLESS_NAME = "rnnlm-headless.default.svc.cluster.local"


@pytest.fixture
def backend(tmp_path: Path) -> Backend:
    """One directory store for both servers: the calls counted here read only listings."""
    return Backend("local", tmp_path / "store", None, "rnnlm")


@pytest.fixture
def pair(start_server) -> tuple[RnnlmServer, RnnlmServer]:
    """Two servers on one port, at 127.0.0.1 and 127.0.0.2 (the whole 127/8 is loopback)."""
    first = start_server(address="127.0.0.1:0")
    return first, start_server(address=f"127.0.0.2:{first.port}")


def answered(server: RnnlmServer) -> int:
    """ListModels calls this server answered OK, from its own metrics."""
    labels = {"method": "ListModels", "code": "OK"}
    value = server.metrics.registry.get_sample_value("rnnlm_requests_total", labels)
    return int(value or 0)


def until_both_answer(client, pair, most: int = 500) -> None:
    """Call until each server has answered one call: a round-robin channel connects to every
    address, but sends calls only to those already connected."""
    calls = 0

    def both() -> bool | None:
        nonlocal calls
        client.models()
        calls += 1
        assert calls <= most, f"{most} calls, answered {[answered(s) for s in pair]}"
        return True if all(answered(s) for s in pair) else None

    wait_until(both, timeout=30, what="both servers to answer")


class StubDns:
    """A DNS responder on a loopback UDP port that answers one name's A query with given
    addresses (TTL 1 s) and every other query with no address."""

    def __init__(self, name: str, addresses: list[str]) -> None:
        self.name, self.addresses = name, addresses
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="stub-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.sock.sendto(self.answer(query), peer)

    def answer(self, query: bytes) -> bytes:
        (query_id,) = struct.unpack(">H", query[:2])
        end, labels = 12, []  # the question: length-prefixed labels, a 0, type and class
        while query[end]:
            labels.append(query[end + 1 : end + 1 + query[end]].decode().lower())
            end += 1 + query[end]
        (qtype,) = struct.unpack(">H", query[end + 1 : end + 3])
        question = query[12 : end + 5]
        records = b""
        if qtype == 1 and ".".join(labels) == self.name:  # type A
            self.queries += 1
            for address in self.addresses:
                # A pointer to the name in the question, type A, class IN, TTL, 4 bytes.
                records += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 1, 4)
                records += socket.inet_aton(address)
        count = len(self.addresses) if records else 0
        # Flags: a response, recursion desired and available, no error.
        return struct.pack(">6H", query_id, 0x8180, 1, count, 0, 0) + question + records

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def stub_dns(pair) -> Iterator[StubDns]:
    dns = StubDns(HEADLESS_NAME, ["127.0.0.1", "127.0.0.2"])
    yield dns
    dns.close()


def targets(pair, dns: StubDns) -> dict[str, object]:
    port = pair[0].port
    return {
        "list": [f"127.0.0.1:{port}", f"127.0.0.2:{port}"],
        "comma-separated": f"127.0.0.1:{port},127.0.0.2:{port}",
        "dns name": f"dns://127.0.0.1:{dns.port}/{HEADLESS_NAME}:{port}",
    }


@pytest.mark.parametrize("form", ["list", "comma-separated", "dns name"])
def test_calls_of_one_client_reach_both_servers(pair, stub_dns, form):
    target = targets(pair, stub_dns)[form]
    with LMClient(target, retries=3) as client:
        until_both_answer(client, pair)
        before = [answered(s) for s in pair]
        for _ in range(20):
            client.models()
        after = [answered(s) for s in pair]
    # Round robin: each connected server takes every other call.
    assert [b - a for a, b in zip(before, after)] == [10, 10]
    if form == "dns name":
        assert stub_dns.queries >= 1  # the name went through DNS, not a fixed list


def test_pick_first_when_the_caller_asks_keeps_to_one_server(pair, stub_dns):
    """The control: the same list with gRPC's default policy sends everything to one."""
    target = targets(pair, stub_dns)["list"]
    with LMClient(target, options=[("grpc.lb_policy_name", "pick_first")]) as client:
        for _ in range(20):
            client.models()
    assert sorted(answered(s) for s in pair) == [0, 20]


def test_the_asyncio_client_balances_too(pair, stub_dns):
    with AsyncFacade(targets(pair, stub_dns)["comma-separated"], retries=3) as client:
        until_both_answer(client, pair)


def test_calls_keep_succeeding_while_one_server_stops(pair, stub_dns):
    """Calls in a loop while one server shuts down: a call it turns away as it drains
    (UNAVAILABLE) is retried, and the next calls go to the server that is left."""
    first, second = pair
    failures: list[BaseException] = []
    stop_calling = threading.Event()
    with LMClient(targets(pair, stub_dns)["dns name"], retries=3, backoff=0.1) as client:
        until_both_answer(client, pair)

        def call_in_a_loop() -> None:
            while not stop_calling.is_set():
                try:
                    client.models()
                except Exception as err:  # every failure is the finding
                    failures.append(err)

        caller = threading.Thread(target=call_in_a_loop, name="caller")
        caller.start()
        try:
            wait_until(lambda: True if answered(first) >= 20 else None, what="calls to A")
            first.stop(grace=1.0)
            stopped_at = answered(second)
            wait_until(lambda: True if answered(second) >= stopped_at + 50 else None)
        finally:
            stop_calling.set()
            caller.join(30)
        last_of_first = answered(first)
        for _ in range(10):
            client.models()
    assert failures == []
    assert answered(first) == last_of_first  # nothing more reached the stopped server


def test_the_cli_takes_a_comma_separated_target(pair, stub_dns, capsys):
    target = targets(pair, stub_dns)["comma-separated"]
    assert main(["--target", target, "models", "--json"]) == 0
    assert sum(answered(s) for s in pair) == 1
    capsys.readouterr()
    code = main(["--target", f"{target},127.0.0.3", "models"])
    assert code == 1
    assert "'127.0.0.3' is not host:port" in capsys.readouterr().err

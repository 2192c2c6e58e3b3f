"""Targets: one server, a gRPC URI and lists of servers (``client/_targets.py``), as the
client hands them to gRPC. Name resolution here is the machine's own (``localhost``)."""

from __future__ import annotations

import json

import pytest

from rnnlm.client import LMClient
from rnnlm.client._targets import channel_target, target_text


@pytest.mark.parametrize(
    "target",
    [
        "localhost:50051",
        "10.0.0.1:50051",
        "dns:///rnnlm-headless.default.svc:50051",
        "dns://10.96.0.10/rnnlm-headless:50051",
        "ipv4:10.0.0.1:50051,10.0.0.2:50051",
        "ipv6:[::1]:50051,[::2]:50051",
        "unix:/run/rnnlm.sock",
    ],
)
def test_one_server_or_a_grpc_uri_passes_unchanged(target):
    assert channel_target(target) == target


@pytest.mark.parametrize(
    "target,expected",
    [
        (["10.0.0.1:50051", "10.0.0.2:50051"], "ipv4:10.0.0.1:50051,10.0.0.2:50051"),
        ("10.0.0.1:50051, 10.0.0.2:50052", "ipv4:10.0.0.1:50051,10.0.0.2:50052"),
        ("[::1]:50051,[fe80::1]:50051", "ipv6:[::1]:50051,[fe80::1]:50051"),
        ("localhost:50051,10.0.0.2:50051", "ipv4:127.0.0.1:50051,10.0.0.2:50051"),
        ("10.0.0.1:1,10.0.0.1:1,10.0.0.1:2", "ipv4:10.0.0.1:1,10.0.0.1:2"),  # duplicates go
    ],
)
def test_a_list_becomes_an_address_list(target, expected):
    assert channel_target(target_text(target)) == expected


@pytest.mark.parametrize(
    "target,message",
    [
        ("10.0.0.1:50051,10.0.0.2", "'10.0.0.2' is not host:port"),
        ("10.0.0.1:50051,", "'' is not host:port"),
        ("10.0.0.1:50051,10.0.0.2:70000", "port in 1-65535"),
        ("10.0.0.1:50051,[::1]:50051", "mixes IPv4 and IPv6"),
        ("10.0.0.1:50051,no-such-host.invalid:50051", "cannot resolve 'no-such-host.invalid'"),
    ],
)
def test_a_bad_list_is_refused_with_what_is_allowed(target, message):
    with pytest.raises(ValueError, match=message):
        channel_target(target)


@pytest.mark.parametrize("target", [[], [b"10.0.0.1:1"], 50051])
def test_a_target_of_the_wrong_type_is_refused(target):
    with pytest.raises(TypeError, match="target must be"):
        target_text(target)


def test_the_client_shows_the_list_and_dials_the_addresses():
    client = LMClient(["127.0.0.1:1", "127.0.0.2:1"], retries=0)
    try:
        assert client.target == "127.0.0.1:1,127.0.0.2:1"
        assert repr(client) == "LMClient('127.0.0.1:1,127.0.0.2:1')"
        assert client._address == "ipv4:127.0.0.1:1,127.0.0.2:1"
        options = dict(client._security[1])
        config = json.loads(options["grpc.service_config"])
        assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    finally:
        client.close()


def test_a_policy_the_caller_names_wins():
    options = [("grpc.lb_policy_name", "pick_first")]
    with LMClient("127.0.0.1:1", retries=0, options=options) as client:
        config = json.loads(dict(client._security[1])["grpc.service_config"])
        assert config["loadBalancingConfig"] == [{"pick_first": {}}]


def test_one_server_is_picked_first_and_several_are_balanced():
    from rnnlm.client._targets import balancing

    assert balancing("localhost:50051") == "pick_first"
    assert balancing("10.0.0.1:1,10.0.0.2:1") == "round_robin"
    assert balancing("dns:///rnnlm-headless:50051") == "round_robin"
    assert balancing("ipv4:10.0.0.1:1,10.0.0.2:1") == "round_robin"

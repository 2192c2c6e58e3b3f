"""docker/compose.yaml and its overlays, read as YAML (anchors and merge keys resolved),
without Docker: the servers are configured only through variables they read, Redis keeps
its data, the servers wait for it, shut down within Compose's patience, and check their
health with `rnnlm health`. Each check also runs on a broken copy, so it can fail."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.deploy.common import DOCKER, unknown_rnnlm_names

COMPOSE = DOCKER / "compose.yaml"
OVERLAYS = sorted(p for p in DOCKER.glob("compose.*.yaml"))
UNITS = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}


def load(path) -> dict:
    return yaml.safe_load(path.read_text())


def seconds(duration: str) -> float:
    """A Compose duration ("1m30s", "15s") in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", str(duration))
    if not parts or "".join(n + u for n, u in parts) != str(duration):
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def ours(services: dict) -> dict:
    """The services that run our image (built from docker/Dockerfile)."""
    return {
        name: s
        for name, s in services.items()
        if str(s.get("build", {}).get("dockerfile", "")).endswith("Dockerfile")
        or str(s.get("image", "")).startswith("rnnlm:")
    }


def env_problems(name: str, service: dict) -> list[str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    problems = [f"{name}: {k} is not an RNNLM_* setting" for k in env if not k.startswith("RNNLM_")]
    problems += [f"{name}: nothing reads {k}" for k in unknown_rnnlm_names(env)]
    if "RNNLM_API_KEY" in env:
        problems.append(f"{name}: pass the API key as a file (RNNLM_API_KEY_FILE), not a value")
    return problems


def compose_problems(data: dict) -> list[str]:
    services = data.get("services", {})
    redis = services.get("redis", {})
    problems = []
    command = redis.get("command") or []
    command = command.split() if isinstance(command, str) else command
    if "--appendonly" not in command or command[command.index("--appendonly") + 1] != "yes":
        problems.append("redis: append-only persistence (--appendonly yes) is off")
    if not any(str(v).endswith(":/data") for v in redis.get("volumes", [])):
        problems.append("redis: no volume at /data")
    if redis.get("ports"):
        problems.append("redis: published to the host")
    health = " ".join(redis.get("healthcheck", {}).get("test", []))
    if (
        "redis-cli" not in health
        or "ping" not in health
        or "REDISCLI_AUTH" not in redis.get("environment", {})
    ):
        problems.append("redis: no authenticated redis-cli ping health check")
    servers = ours(services)
    if "rnnlm" not in servers or len(servers) < 2:
        problems.append("need the service rnnlm and a replica")
    for name, s in servers.items():
        problems += env_problems(name, s)
        env = s.get("environment", {})
        if s.get("depends_on", {}).get("redis", {}).get("condition") != "service_healthy":
            problems.append(f"{name}: does not wait for a healthy redis")
        if not str(env.get("RNNLM_REDIS_URL", "")).startswith("redis://"):
            problems.append(f"{name}: no RNNLM_REDIS_URL: replicas must share Redis")
        if s.get("healthcheck", {}).get("test", [])[1:3] != ["rnnlm", "health"]:
            problems.append(f"{name}: health check is not rnnlm health")
        grace = float(env.get("RNNLM_SHUTDOWN_GRACE_S", 8.0))  # the server's default
        if seconds(s.get("stop_grace_period", "10s")) <= grace:
            problems.append(f"{name}: stop_grace_period is not above the shutdown grace")
        published = [str(p).split(":")[-1] for p in s.get("ports", [])]
        if sorted(published) != ["50051", "8080", "9100"]:
            problems.append(f"{name}: publishes {published}, not 50051, 8080 (HTTP) and 9100")
        if str(env.get("RNNLM_HTTP_ADDRESS", "")).rpartition(":")[2] != "8080":
            problems.append(f"{name}: the HTTP API does not listen on 8080 (RNNLM_HTTP_ADDRESS)")
        if name != "rnnlm" and not s.get("profiles"):
            problems.append(f"{name}: a replica must sit behind a profile")
    host_ports = [str(p).rsplit(":", 1)[0] for s in servers.values() for p in s.get("ports", [])]
    if len(host_ports) != len(set(host_ports)):
        problems.append("two servers publish the same host port")
    return problems


def test_compose():
    assert compose_problems(load(COMPOSE)) == []


def test_compose_has_no_version_key():
    assert "version" not in load(COMPOSE)


def breakages():
    def server(d, name="rnnlm"):
        return d["services"][name]

    def env(d, name="rnnlm"):
        return server(d, name)["environment"]

    return {
        "unknown variable": lambda d: env(d).update(RNNLM_STORE_DIRECTORY="/x"),
        "non-RNNLM variable": lambda d: env(d).update(STORE_DIR="/x"),
        "API key as a value": lambda d: env(d).update(RNNLM_API_KEY="x" * 16),
        "no append-only file": lambda d: d["services"]["redis"].update(command=["redis-server"]),
        "redis without volume": lambda d: d["services"]["redis"].pop("volumes"),
        "redis published": lambda d: d["services"]["redis"].update(ports=["6379:6379"]),
        "replica without profile": lambda d: server(d, "rnnlm-2").pop("profiles"),
        "short stop grace": lambda d: server(d).update(stop_grace_period="5s"),
        "grace raised past it": lambda d: env(d).update(RNNLM_SHUTDOWN_GRACE_S="30"),
        "started, not healthy": lambda d: server(d)["depends_on"]["redis"].update(
            condition="service_started"
        ),
        "no health check": lambda d: server(d, "rnnlm-2").pop("healthcheck"),
        "same host ports": lambda d: server(d, "rnnlm-2").update(ports=server(d)["ports"]),
        "no redis url": lambda d: env(d).pop("RNNLM_REDIS_URL"),
        "no HTTP API": lambda d: env(d).pop("RNNLM_HTTP_ADDRESS"),
        "HTTP port unpublished": lambda d: server(d)["ports"].pop(),
    }


@pytest.mark.parametrize("name", breakages())
def test_compose_checks_catch(name):
    data = load(COMPOSE)
    # Break one service only: the merge key gave the replicas one shared environment object.
    for service in data["services"].values():
        service.update(copy.deepcopy(service))
    breakages()[name](data)
    assert compose_problems(data)


def test_seconds():
    assert seconds("1m30s") == 90 and seconds("15s") == 15 and seconds("500ms") == 0.5
    with pytest.raises(ValueError):
        seconds("15 s")


def overlay_problems(name: str, data: dict) -> list[str]:
    base = load(COMPOSE)["services"]
    problems = [f"{name}: {s} is not in compose.yaml" for s in data["services"] if s not in base]
    for service_name, service in data["services"].items():
        problems += env_problems(service_name, service)
        key_file = (service.get("environment") or {}).get("RNNLM_API_KEY_FILE")
        if key_file:
            secret = key_file.removeprefix("/run/secrets/")
            if secret not in service.get("secrets", []) or secret not in data.get("secrets", {}):
                problems.append(f"{name}: {service_name} reads {key_file}, not a declared secret")
        devices = str(service.get("deploy", {}).get("resources", {}).get("reservations"))
        variant = service.get("build", {}).get("args", {}).get("VARIANT")
        if ("nvidia" in devices) != (variant == "cuda"):
            problems.append(f"{name}: {service_name} reserves GPUs without the cuda image or back")
    return problems


@pytest.mark.parametrize("path", OVERLAYS, ids=lambda p: p.name)
def test_overlays(path):
    assert overlay_problems(path.name, load(path)) == []


def test_overlay_checks_catch():
    assert {p.name for p in OVERLAYS} >= {"compose.api-key.yaml", "compose.gpu.yaml"}
    key = load(DOCKER / "compose.api-key.yaml")
    key["secrets"] = {}
    assert overlay_problems("api-key", key)
    gpu = load(DOCKER / "compose.gpu.yaml")
    gpu["services"]["rnnlm"] = {**gpu["services"]["rnnlm"], "build": {}}
    assert overlay_problems("gpu", gpu)
    assert overlay_problems("new", {"services": {"rnnlm-3": {}}})

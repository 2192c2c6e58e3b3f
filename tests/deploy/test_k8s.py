"""The Kubernetes manifests (docker/k8s/), checked without a cluster: kubernetes-validate
against the Kubernetes schema (strict: an unknown field fails), at the oldest version the
manifests claim (1.27, where native gRPC probes became stable) and at the newest it knows;
then what the files promise: gRPC probes on the port the server listens on, a headless
Service, a PodDisruptionBudget over the Deployment's pods, a termination grace above the
server's drain, Redis with an append-only file on a volume, and image, ports, user and
settings that agree with docker/Dockerfile and docker/compose.yaml. Each check also runs
on a deliberately broken copy, so that it is known to be able to fail."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnnlm.server.app import JOB_STOP_EXTRA_S
from rnnlm.server.config import ServerConfig
from tests.deploy.common import DOCKER, unknown_rnnlm_names
from tests.deploy.test_docker import env_of, image, last

K8S = DOCKER / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)
# Native gRPC probes (probe.grpc) are stable from 1.27; the newest is the validator's own.
KUBERNETES_VERSIONS = ("1.27.0", None)
SERVER = {"app.kubernetes.io/name": "rnnlm", "app.kubernetes.io/component": "server"}


def kubernetes_validate(paths: list[Path], version: str | None) -> subprocess.CompletedProcess:
    binary = Path(sys.executable).parent / "kubernetes-validate"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: the dev extra has it (kubernetes-validate)")
    command = [str(binary), "--strict", "--no-warn", *(["-k", version] if version else [])]
    return subprocess.run(
        [*command, *map(str, paths)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
def test_manifests_match_the_kubernetes_schema(version):
    result = kubernetes_validate(MANIFESTS, version)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "old,new,error",
    [
        ("clusterIP: None", "clusterIp: None", "'clusterIp' was unexpected"),  # strict
        ("      port: 50051\n", "      port: grpc\n", "is not of type 'integer'"),
    ],
)
def test_the_validator_fails_on_a_broken_manifest(tmp_path, old, new, error):
    name = {"clusterIP": "rnnlm-headless.yaml"}.get(old.split(":")[0], "rnnlm.yaml")
    text = (K8S / name).read_text()
    assert old in text, f"the broken copy's anchor {old!r} is gone from {name}"
    broken = tmp_path / name
    broken.write_text(text.replace(old, new))
    result = kubernetes_validate([broken], None)
    assert result.returncode != 0 and error in result.stdout, result.stdout + result.stderr


def test_kustomization_lists_every_manifest():
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS]


# -- what the manifests promise ------------------------------------------------------------


def load_all() -> dict[str, dict]:
    """Every resource of docker/k8s, by ``Kind/name``."""
    resources = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            resources[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return resources


def dockerfile_facts() -> dict:
    final = image((DOCKER / "Dockerfile").read_text(), "cpu")
    return {
        "ports": sorted(int(p) for p in (last(final, "EXPOSE") or "").split()),
        "uid": int((last(final, "USER") or "0").split(":")[0]),
        "env": env_of(final),
    }


def compose_images() -> dict[str, str]:
    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    return {
        n: str(s.get("image", "")).replace("${RNNLM_VARIANT:-cpu}", "cpu")
        for n, s in services.items()
    }


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def server_problems(resources: dict) -> list[str]:
    """The Deployment of the rnnlm servers."""
    deployment = resources.get("Deployment/rnnlm")
    if deployment is None:
        return ["no Deployment rnnlm"]
    problems = []
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    facts = dockerfile_facts()
    if container["image"] != compose_images()["rnnlm"]:
        problems.append(f"image {container['image']} is not compose's {compose_images()['rnnlm']}")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if sorted(ports.values()) != facts["ports"]:
        problems.append(f"ports {sorted(ports.values())} are not the image's {facts['ports']}")
    env = {e["name"]: e for e in container.get("env", [])}
    values = {name: e.get("value") for name, e in env.items()}
    problems += [f"nothing reads {n}" for n in unknown_rnnlm_names(env)]
    referenced = " ".join(str(v) for v in values.values())
    problems += [
        f"{n} is neither a setting nor used by one"
        for n in env
        if not n.startswith("RNNLM_") and f"$({n})" not in referenced
    ]
    if "RNNLM_API_KEY" in values:
        problems.append("the API key belongs in a file (RNNLM_API_KEY_FILE), not a variable")
    settings = {**facts["env"], **{k: v for k, v in values.items() if v is not None}}
    if port_of(settings.get("RNNLM_ADDRESS", ":0")) != ports.get("grpc"):
        problems.append("RNNLM_ADDRESS does not listen on the grpc port")
    http = settings.get("RNNLM_HTTP_ADDRESS")  # the HTTP API, where the image serves it
    if http and port_of(http) != ports.get("http"):
        problems.append("RNNLM_HTTP_ADDRESS does not listen on the http port")
    metrics = port_of(settings.get("RNNLM_METRICS_ADDRESS", ":0"))
    annotations = pod["metadata"].get("annotations", {})
    if not metrics == ports.get("metrics") == int(annotations.get("prometheus.io/port", 0)):
        problems.append("metrics: RNNLM_METRICS_ADDRESS, the port and the annotation disagree")
    url = str(values.get("RNNLM_REDIS_URL", ""))
    if not url.startswith(("redis://", "rediss://", "redis+sentinel://")):
        problems.append("no RNNLM_REDIS_URL: replicas must share Redis")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if container.get(kind, {}).get("grpc", {}).get("port") != ports.get("grpc"):
            problems.append(f"{kind} is not a gRPC health probe on the grpc port")
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    drain = float(settings.get("RNNLM_SHUTDOWN_GRACE_S", ServerConfig.shutdown_grace_s))
    needed = (float(sleep[1]) if sleep[:1] == ["sleep"] else 0.0) + drain + JOB_STOP_EXTRA_S
    if not spec.get("terminationGracePeriodSeconds", 30) > needed:
        problems.append(f"terminationGracePeriodSeconds is not above preStop + drain ({needed})")
    resources_ = container.get("resources", {})
    for need in ("requests.cpu", "requests.memory", "limits.memory"):
        group, _, name = need.partition(".")
        if name not in resources_.get(group, {}):
            problems.append(f"no resources.{need}")
    cpu_limit = str(resources_.get("limits", {}).get("cpu", "0"))
    threads = int(values.get("RNNLM_TORCH_THREADS") or 0)
    if cpu_limit.isdigit() and not 0 < threads <= int(cpu_limit):
        problems.append("RNNLM_TORCH_THREADS must be set, at most the CPU limit")
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or security.get("runAsUser") != facts["uid"]:
        problems.append(f"must run as non-root uid {facts['uid']}, the image's user")
    if not selects(deployment["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
        problems.append("the Deployment's selector does not select its pods")
    return problems


def service_problems(resources: dict) -> list[str]:
    """The headless Service and the PodDisruptionBudget, against the Deployment's pods."""
    pod = resources["Deployment/rnnlm"]["spec"]["template"]["metadata"]["labels"]
    replicas = resources["Deployment/rnnlm"]["spec"].get("replicas", 1)
    problems = []
    headless = [
        r
        for r in resources.values()
        if r["kind"] == "Service" and selects(r["spec"].get("selector", {}), pod)
    ]
    if [r["spec"].get("clusterIP") for r in headless] != ["None"]:
        problems.append("the servers need exactly one Service, headless (clusterIP: None)")
    elif not any(p.get("targetPort") in ("grpc", 50051) for p in headless[0]["spec"]["ports"]):
        problems.append("the headless Service has no port to grpc")
    budgets = [r for r in resources.values() if r["kind"] == "PodDisruptionBudget"]
    if len(budgets) != 1 or not selects(budgets[0]["spec"]["selector"]["matchLabels"], pod):
        problems.append("no PodDisruptionBudget selects the servers")
    elif budgets[0]["spec"].get("minAvailable", 0) >= replicas:
        problems.append("the PodDisruptionBudget lets no server go")
    return problems


def redis_problems(resources: dict) -> list[str]:
    """Redis keeps its data (append-only, on a volume) and is the one the servers use."""
    redis = resources.get("StatefulSet/rnnlm-redis")
    if redis is None:
        return ["no StatefulSet rnnlm-redis"]
    problems = []
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    if container["image"] != compose_images()["redis"]:
        problems.append(f"redis image {container['image']} is not compose's")
    args = container.get("args", [])
    if "--appendonly" not in args or args[args.index("--appendonly") + 1] != "yes":
        problems.append("redis: append-only persistence (--appendonly yes) is off")
    if "noeviction" not in args or "--maxmemory" not in args:
        problems.append("redis: needs --maxmemory under its limit with noeviction")
    claims = [c["metadata"]["name"] for c in redis["spec"].get("volumeClaimTemplates", [])]
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    if not any(mounts.get(c) == "/data" for c in claims):
        problems.append("redis: /data is not on a persistent volume claim")
    labels = redis["spec"]["template"]["metadata"]["labels"]
    service = resources.get("Service/rnnlm-redis", {}).get("spec", {})
    if not selects(service.get("selector", {}), labels):
        problems.append("the Service rnnlm-redis does not select Redis")
    env = {
        e["name"]: e.get("value", "")
        for e in resources["Deployment/rnnlm"]["spec"]["template"]["spec"]["containers"][0].get(
            "env", []
        )
    }
    if "@rnnlm-redis:6379/" not in env.get("RNNLM_REDIS_URL", ""):
        problems.append("the servers do not use the Redis of these manifests")
    policy = resources.get("NetworkPolicy/rnnlm-redis", {}).get("spec", {})
    sources = [
        f.get("podSelector", {}).get("matchLabels", {})
        for i in policy.get("ingress", [])
        for f in i.get("from", [])
    ]
    pod = resources["Deployment/rnnlm"]["spec"]["template"]["metadata"]["labels"]
    if not selects(policy.get("podSelector", {}).get("matchLabels", {}), labels) or not any(
        selects(s, pod) for s in sources
    ):
        problems.append("the NetworkPolicy does not let (only) the servers reach Redis")
    return problems


def all_problems(resources: dict) -> list[str]:
    return server_problems(resources) + service_problems(resources) + redis_problems(resources)


def test_manifests_keep_their_promises():
    assert all_problems(load_all()) == []


def test_distributed_training_job_is_not_here_yet():
    """A torchrun Job needs a torch.distributed entry point; there is none yet (issue 14, 2)."""
    root = DOCKER.parent
    sources = [p for d in ("model", "server") for p in (root / d).rglob("*.py")]
    has_entry_point = any("torch.distributed" in p.read_text() for p in sources)
    has_job = any(r["kind"] == "Job" for r in load_all().values())
    assert has_job == has_entry_point, "add (or remove) the torchrun Job in docker/k8s"


def breakages() -> dict:
    def server(r):
        return r["Deployment/rnnlm"]["spec"]["template"]["spec"]["containers"][0]

    def env(r, name, value):
        for e in server(r)["env"]:
            if e["name"] == name:
                e["value"] = value

    def redis(r):
        return r["StatefulSet/rnnlm-redis"]["spec"]["template"]["spec"]["containers"][0]

    return {
        "probe on the metrics port": lambda r: server(r)["readinessProbe"]["grpc"].update(
            port=9100
        ),
        "liveness probe removed": lambda r: server(r).pop("livenessProbe"),
        "exec probe instead of gRPC": lambda r: server(r).update(
            readinessProbe={"exec": {"command": ["rnnlm", "health"]}}
        ),
        "listens elsewhere": lambda r: env(r, "RNNLM_ADDRESS", "0.0.0.0:50052"),
        "HTTP elsewhere": lambda r: env(r, "RNNLM_HTTP_ADDRESS", "0.0.0.0:8081"),
        "unknown setting": lambda r: server(r)["env"].append({"name": "RNNLM_STORE", "value": "x"}),
        "stray variable": lambda r: server(r)["env"].append({"name": "DEBUG", "value": "1"}),
        "API key as a value": lambda r: server(r)["env"].append(
            {"name": "RNNLM_API_KEY", "value": "k" * 16}
        ),
        "drain above the kill": lambda r: env(r, "RNNLM_SHUTDOWN_GRACE_S", "40"),
        "short termination grace": lambda r: r["Deployment/rnnlm"]["spec"]["template"][
            "spec"
        ].update(terminationGracePeriodSeconds=20),
        "no memory limit": lambda r: server(r)["resources"]["limits"].pop("memory"),
        "threads above the CPU limit": lambda r: env(r, "RNNLM_TORCH_THREADS", "8"),
        "another image": lambda r: server(r).update(image="rnnlm:latest"),
        "another port": lambda r: server(r)["ports"][0].update(containerPort=8080),
        "metrics annotation off": lambda r: r["Deployment/rnnlm"]["spec"]["template"]["metadata"][
            "annotations"
        ].update({"prometheus.io/port": "9090"}),
        "root user": lambda r: r["Deployment/rnnlm"]["spec"]["template"]["spec"][
            "securityContext"
        ].update(runAsUser=0),
        "service with a cluster IP": lambda r: r["Service/rnnlm-headless"]["spec"].pop("clusterIP"),
        "budget on other pods": lambda r: r["PodDisruptionBudget/rnnlm"]["spec"]["selector"][
            "matchLabels"
        ].update({"app.kubernetes.io/component": "worker"}),
        "budget that blocks every drain": lambda r: r["PodDisruptionBudget/rnnlm"]["spec"].update(
            minAvailable=2
        ),
        "redis without append-only": lambda r: redis(r).update(args=["redis-server"]),
        "redis without volume": lambda r: r["StatefulSet/rnnlm-redis"]["spec"].pop(
            "volumeClaimTemplates"
        ),
        "another redis": lambda r: env(r, "RNNLM_REDIS_URL", "redis://:x@other:6379/0"),
        "redis open to all": lambda r: r["NetworkPolicy/rnnlm-redis"]["spec"].update(ingress=[{}]),
    }


@pytest.mark.parametrize("name", breakages())
def test_promise_checks_catch(name):
    resources = copy.deepcopy(load_all())
    breakages()[name](resources)
    assert all_problems(resources)

"""The Kubernetes manifests (docker/k8s/), checked without a cluster: kubernetes-validate
against the Kubernetes schema (strict: an unknown field fails), at the oldest version the
manifests claim (1.27, where native gRPC probes became stable) and at the newest it knows;
then what the files promise: gRPC probes on the port the server listens on, a headless
Service, a PodDisruptionBudget over the Deployment's pods, a termination grace above the
server's drain, Redis with an append-only file on a volume, and image, ports, user and
settings that agree with docker/Dockerfile and docker/compose.yaml; and a torchrun training
Job whose command torch's own launcher and ``rnnlm.server.torchrun`` accept, whose pods
meet at pod 0 and run on the servers' image and store. Each check also runs on a
deliberately broken copy, so that it is known to be able to fail."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from rnnlm.server.app import JOB_STOP_EXTRA_S
from rnnlm.server.config import ServerConfig
from tests.deploy.common import DOCKER, unknown_rnnlm_names
from tests.deploy.test_docker import env_of, image, last

K8S = DOCKER / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"
# Applied by itself (kubectl apply -f), never with the stack: it starts a training run.
TRAIN_JOB = K8S / "train-job.yaml"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION)
# Native gRPC probes (probe.grpc) are stable from 1.27; the newest is the validator's own.
KUBERNETES_VERSIONS = ("1.27.0", None)
SERVER = {"app.kubernetes.io/name": "rnnlm", "app.kubernetes.io/component": "server"}
# The store settings rank 0 of a training Job must share with the servers.
STORE_SETTINGS = ("RNNLM_REDIS_URL", "RNNLM_REDIS_PREFIX", "RNNLM_STORE_DIR")


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


def test_kustomization_lists_every_manifest_but_the_training_job():
    listed = yaml.safe_load(KUSTOMIZATION.read_text())["resources"]
    assert sorted(listed) == [p.name for p in MANIFESTS if p != TRAIN_JOB]
    kinds = {d["kind"] for n in listed for d in yaml.safe_load_all((K8S / n).read_text())}
    assert "Job" not in kinds, "kubectl apply -k must not start a training run"


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


def expand(text: str, values: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` in a container's args and env values: a variable it defines is
    replaced, any other reference stays as written, ``$$`` is a ``$``."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        return "$" if name is None else values.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def container_values(container: dict, **given: str) -> dict[str, str]:
    """The container's variables as its process sees them: a secret's as "secret", then
    ``given`` (what Kubernetes adds, such as JOB_COMPLETION_INDEX) over them."""
    values: dict[str, str] = {}
    for e in container.get("env", []):
        values[e["name"]] = expand(str(e.get("value", "secret")), values)
    return {**values, **given}


def launch(container: dict, values: dict[str, str]):
    """The container's command as torchrun parses it (torch's own parser): its options, the
    module and the module's arguments."""
    from torch.distributed.run import get_args_parser

    command = [expand(a, values) for a in [*container.get("command", []), *container["args"]]]
    if command[:1] != ["torchrun"]:
        raise ValueError(f"the container runs {command[:1]}, not torchrun")
    try:
        return get_args_parser().parse_args(command[1:])
    except SystemExit:
        raise ValueError(f"torchrun refuses its arguments {command[1:]}") from None


def entry_point(arguments: list[str], values: dict[str, str]):
    """``rnnlm.server.torchrun``'s reading of its arguments in the container's environment
    (the image's variables, then the container's): the job's flags and the store."""
    from rnnlm.server import torchrun

    environment = {**dockerfile_facts()["env"], **values}
    with mock.patch.dict(os.environ, environment, clear=True):
        try:
            return torchrun.parse(arguments)
        except SystemExit:
            raise ValueError(f"rnnlm.server.torchrun refuses {arguments}") from None


def rendezvous_host(launched) -> str:
    """Where the pods meet: --master-addr (static), or --rdzv-endpoint's host (c10d)."""
    if launched.rdzv_backend == "static":
        return launched.master_addr
    return launched.rdzv_endpoint.rpartition(":")[0] or launched.rdzv_endpoint


def training_job_problems(resources: dict) -> list[str]:
    """The torchrun Job (train-job.yaml): one pod per node, each torchrun with its node rank
    and rnnlm's entry point, meeting at pod 0, on the servers' image, user and store."""
    job = resources.get("Job/rnnlm-train")
    if job is None:
        return ["no Job rnnlm-train"]
    problems = []
    spec = job["spec"]
    pod = spec["template"]
    pod_spec = pod["spec"]
    (container,) = pod_spec["containers"]
    server_pod = resources["Deployment/rnnlm"]["spec"]["template"]["spec"]
    (server,) = server_pod["containers"]
    nodes = spec.get("completions", 1)
    if spec.get("completionMode") != "Indexed":
        problems.append("the Job is not Indexed: its pods have no JOB_COMPLETION_INDEX")
    if spec.get("parallelism", 1) != nodes:
        problems.append(f"parallelism is not completions ({nodes}): every node runs at once")
    if pod_spec.get("restartPolicy") != "Never" or spec.get("backoffLimit") != 0:
        problems.append("a failed run must end the Job (restartPolicy Never, backoffLimit 0)")
    if container["image"] != server["image"]:
        problems.append(f"image {container['image']} is not the servers' {server['image']}")
    if pod_spec.get("securityContext") != server_pod.get("securityContext"):
        problems.append("the pods do not run as the servers' (non-root) user")
    env = {e["name"]: e for e in container.get("env", [])}
    server_env = {e["name"]: e for e in server.get("env", [])}
    problems += [f"nothing reads {n}" for n in unknown_rnnlm_names(env)]
    url = str(server_env.get("RNNLM_REDIS_URL", {}).get("value", ""))
    shared = {*STORE_SETTINGS, *re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", url)}
    for name in sorted(n for n in shared if n in env or n in server_env):
        if env.get(name) != server_env.get(name):
            problems.append(f"{name} is not the servers' (the same store, from the same source)")
    try:
        ranks = [
            launch(container, container_values(container, JOB_COMPLETION_INDEX=str(i))).node_rank
            for i in range(nodes)
        ]
        if ranks != list(range(nodes)):
            problems.append(f"the pods 0 to {nodes - 1} run as node ranks {ranks}")
        values = container_values(container, JOB_COMPLETION_INDEX="0")
        launched = launch(container, values)  # pod 0: its rank 0 runs the job on the store
        if not (launched.module and launched.training_script == "rnnlm.server.torchrun"):
            problems.append("torchrun does not run -m rnnlm.server.torchrun")
        if str(launched.nnodes) != str(nodes):
            problems.append(f"torchrun --nnodes {launched.nnodes} is not the Job's {nodes} pods")
        host = rendezvous_host(launched).split(".")
        service = resources.get(f"Service/{pod_spec.get('subdomain')}", {}).get("spec", {})
        if host[:2] != [f"{job['metadata']['name']}-0", pod_spec.get("subdomain")]:
            problems.append(f"the rendezvous {'.'.join(host)} is not pod 0's name")
        elif service.get("clusterIP") != "None" or not selects(
            service.get("selector", {}), pod["metadata"]["labels"]
        ):
            problems.append("no headless Service of the pods' subdomain gives pod 0 its name")
        grace = pod_spec.get("terminationGracePeriodSeconds", 30)
        if not grace > (launched.shutdown_timeout or 30):
            problems.append("terminationGracePeriodSeconds is not above torchrun's shutdown")
        cpus = str(container.get("resources", {}).get("limits", {}).get("cpu", "0"))
        threads = int(values.get("OMP_NUM_THREADS", "1"))
        if cpus.isdigit() and int(launched.nproc_per_node) * threads > int(cpus):
            problems.append("processes per pod x OMP_NUM_THREADS is above the CPU limit")
        args, config = entry_point(launched.training_script_args, values)
        if config.redis_url != expand(url, values):
            problems.append("rank 0 would not use the servers' Redis")
        if args.resume or not args.model:
            problems.append("with TRAIN_RESUME empty the Job does not train a new job")
        resume = container_values(container, JOB_COMPLETION_INDEX="0", TRAIN_RESUME="j-1")
        args, _ = entry_point(launch(container, resume).training_script_args, resume)
        if args.resume != "j-1":
            problems.append("TRAIN_RESUME does not reach --resume")
    except ValueError as err:
        problems.append(str(err))
    policy = resources.get("NetworkPolicy/rnnlm-redis")
    if policy is not None and not any(
        selects(f.get("podSelector", {}).get("matchLabels", {}), pod["metadata"]["labels"])
        for i in policy["spec"].get("ingress", [])
        for f in i.get("from", [])
    ):
        problems.append("the NetworkPolicy keeps the training pods (rank 0) from Redis")
    return problems


def all_problems(resources: dict) -> list[str]:
    return (
        server_problems(resources)
        + service_problems(resources)
        + redis_problems(resources)
        + training_job_problems(resources)
    )


def test_manifests_keep_their_promises():
    assert all_problems(load_all()) == []


def breakages() -> dict:
    def server(r):
        return r["Deployment/rnnlm"]["spec"]["template"]["spec"]["containers"][0]

    def env(r, name, value):
        for e in server(r)["env"]:
            if e["name"] == name:
                e["value"] = value

    def redis(r):
        return r["StatefulSet/rnnlm-redis"]["spec"]["template"]["spec"]["containers"][0]

    def job(r):
        return r["Job/rnnlm-train"]["spec"]

    def trainer(r):
        return job(r)["template"]["spec"]["containers"][0]

    def arg(r, old, new):
        args = trainer(r)["args"]
        args[args.index(old)] = new

    def job_env(r, name, value):
        for e in trainer(r)["env"]:
            if e["name"] == name:
                e.pop("valueFrom", None)
                e["value"] = value

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
        "job not indexed": lambda r: job(r).update(completionMode="NonIndexed"),
        "more pods than nodes": lambda r: job(r).update(completions=3, parallelism=3),
        "pods one at a time": lambda r: job(r).update(parallelism=1),
        "job retried": lambda r: job(r).update(backoffLimit=6),
        "pod restarted": lambda r: job(r)["template"]["spec"].update(restartPolicy="OnFailure"),
        "node rank fixed": lambda r: arg(r, "--node-rank=$(JOB_COMPLETION_INDEX)", "--node-rank=0"),
        "another module": lambda r: arg(r, "rnnlm.server.torchrun", "rnnlm.model.distributed"),
        "a script, not -m": lambda r: trainer(r)["args"].remove("-m"),
        "not torchrun": lambda r: trainer(r).update(command=["python"]),
        "corpus flag gone": lambda r: trainer(r)["args"].remove("--corpus-id=$(TRAIN_CORPUS_ID)"),
        "resume not passed on": lambda r: trainer(r)["args"].remove("--resume=$(TRAIN_RESUME)"),
        "rendezvous at pod 1": lambda r: arg(
            r, "--master-addr=rnnlm-train-0.rnnlm-train", "--master-addr=rnnlm-train-1.rnnlm-train"
        ),
        "no subdomain": lambda r: job(r)["template"]["spec"].pop("subdomain"),
        "rendezvous service with a cluster IP": lambda r: r["Service/rnnlm-train"]["spec"].pop(
            "clusterIP"
        ),
        "rendezvous service selects no pod": lambda r: r["Service/rnnlm-train"]["spec"].update(
            selector={"app.kubernetes.io/component": "trainer"}
        ),
        "job on another image": lambda r: trainer(r).update(image="rnnlm:cuda"),
        "job as root": lambda r: job(r)["template"]["spec"]["securityContext"].update(runAsUser=0),
        "job on another redis": lambda r: job_env(r, "RNNLM_REDIS_URL", "redis://other:6379/0"),
        "job's password from another secret": lambda r: trainer(r)["env"][
            [e["name"] for e in trainer(r)["env"]].index("REDIS_PASSWORD")
        ]["valueFrom"]["secretKeyRef"].update(name="other"),
        "job on the directory store": lambda r: trainer(r)["env"].remove(
            next(e for e in trainer(r)["env"] if e["name"] == "RNNLM_REDIS_URL")
        ),
        "job with a misspelt setting": lambda r: trainer(r)["env"].append(
            {"name": "RNNLM_REDIS_PREFX", "value": "x"}
        ),
        "job killed before its checkpoint": lambda r: job(r)["template"]["spec"].update(
            terminationGracePeriodSeconds=30
        ),
        "job threads above its CPU limit": lambda r: job_env(r, "OMP_NUM_THREADS", "2"),
        "redis closed to the job": lambda r: r["NetworkPolicy/rnnlm-redis"]["spec"]["ingress"][0][
            "from"
        ].pop(),
    }


@pytest.mark.parametrize("name", breakages())
def test_promise_checks_catch(name):
    resources = copy.deepcopy(load_all())
    breakages()[name](resources)
    assert all_problems(resources)

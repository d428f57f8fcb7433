"""What the deployment tests share: the repo's deployment files, the manifests as
`kubectl kustomize k8s/` renders them, the pinned validators run as CI runs them, and
what a service process really reads from its environment.

    problems = kubernetes_validate_problems([rendered_k8s_file(tmp)], "1.37")  # [] if valid
    reads = process_reads(service("tickets"), "web", env={...})    # names it looked up

Every validator is a binary or console script from the root pyproject's dev group
(pinned there), run from this virtualenv: nothing is fetched at test time.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from ticketing_devtools.catalog import REPO_ROOT, DjangoService

BIN = Path(sys.executable).parent
K8S_DIR = REPO_ROOT / "k8s"
DEV_OVERLAY = REPO_ROOT / "deploy" / "dev"
SERVICE_OVERLAYS = K8S_DIR / "services"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SKAFFOLD_FILE = REPO_ROOT / "skaffold.yaml"
SKAFFOLD_SCHEMA = REPO_ROOT / "deploy" / "schemas" / "skaffold-v4beta13.json"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"

# The Kubernetes versions the manifests are validated against: the oldest docs/deploy.md
# promises (every API and field used is GA there) and the newest the pinned
# kubernetes-validate knows, so an API a new release deprecates or removes shows up.
KUBERNETES_VERSIONS = ("1.30", "1.37")

NAMESPACE = "ticketing"
# The images this repository builds; anything else (postgres, rabbitmq, ...) is upstream.
IMAGE_PREFIX = "ticketing-"
BASE_IMAGE = "ticketing-base"
BASE_DOCKERFILE = REPO_ROOT / "Dockerfile.base"
SERVICE_DOCKERFILE = REPO_ROOT / "Dockerfile.service"


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: it is pinned in the root pyproject's dev group"
    return str(path)


def load_script(path: Path) -> ModuleType:
    """Import a script that is not in a package (deploy/*.py) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


# --- the files ----------------------------------------------------------------------


def kustomize(directory: Path) -> subprocess.CompletedProcess[str]:
    """`kubectl kustomize` of a directory, with the pinned kubectl's kustomize."""
    return run([tool("kubectl"), "kustomize", str(directory)])


@functools.cache
def rendered_k8s() -> str:
    """Every object `kubectl apply -k k8s/` applies, as YAML."""
    result = kustomize(K8S_DIR)
    assert result.returncode == 0, result.stderr
    return result.stdout


def rendered_k8s_file(directory: Path) -> Path:
    """The rendered objects written to a file in `directory`, for the file-based tools."""
    path = directory / "k8s.yaml"
    path.write_text(rendered_k8s())
    return path


@dataclass(frozen=True)
class Manifest:
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]


def load_manifests(text: str | None = None) -> list[Manifest]:
    """The objects in `text` (YAML documents), by default those k8s/ renders to."""
    return [
        Manifest(doc) for doc in yaml.safe_load_all(rendered_k8s() if text is None else text) if doc
    ]


def by_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m.name: m for m in manifests if m.kind == kind}


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    return manifest.doc["spec"]["template"]["spec"]


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    spec = pod_spec(manifest)
    return [*spec.get("initContainers", []), *spec["containers"]]


def dockerfiles() -> list[Path]:
    """Every Dockerfile in the tree that git would track (ignored paths left out)."""
    listed = run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT
    ).stdout.splitlines()
    names = [p for p in listed if Path(p).name.startswith("Dockerfile")]
    return sorted({REPO_ROOT / p for p in names if (REPO_ROOT / p).exists()})


def compose_model(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as Compose itself resolves it (anchors merged, paths absolute)."""
    result = run(
        [tool("docker-compose"), "-f", str(path), "config", "--format", "json"],
        cwd=path.parent,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass(frozen=True)
class ImageBuild:
    """How skaffold.yaml builds one image: its Dockerfile, build arguments and target."""

    image: str
    dockerfile: Path
    args: dict[str, str]
    target: str | None


def skaffold_builds() -> dict[str, ImageBuild]:
    config = yaml.safe_load(SKAFFOLD_FILE.read_text())
    builds = {}
    for artifact in config["build"]["artifacts"]:
        docker = artifact["docker"]
        builds[artifact["image"]] = ImageBuild(
            image=artifact["image"],
            dockerfile=REPO_ROOT / docker["dockerfile"],
            args=dict(docker.get("buildArgs", {})),
            target=docker.get("target"),
        )
    return builds


def service_build(service: DjangoService) -> ImageBuild:
    return skaffold_builds()[f"{IMAGE_PREFIX}{service.name}"]


@dataclass(frozen=True)
class DockerfileFacts:
    path: Path
    stages: list[str]  # each FROM line's image, from the base to the target
    env: dict[str, str]
    cmd: list[str] | None
    expose: list[int]
    run_lines: list[str] = field(default_factory=list)

    @property
    def command(self) -> list[str] | None:
        """The command the image runs: its CMD, or for `sh -c "exec ..."` (a CMD that
        needs the image's environment) what sh executes, with that environment."""
        if self.cmd is None or self.cmd[:2] != ["sh", "-c"]:
            return self.cmd
        script = self.cmd[2]
        assert script.startswith("exec "), script
        return shlex.split(_expand(script.removeprefix("exec "), self.env, quote=True))


_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def _expand(text: str, values: dict[str, str], *, quote: bool = False, strict: bool = True) -> str:
    """$NAME and ${NAME} replaced from `values`. An unknown name fails (a typo would) unless
    not `strict`, where it stays as written (an ENV reading its parent image's PATH)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            assert not strict, f"${name} is not set in {text!r}"
            return match.group(0)
        return shlex.quote(values[name]) if quote else values[name]

    return _VARIABLE.sub(value, text)


def _logical_lines(path: Path) -> list[str]:
    """The instructions, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not pending and not line):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return logical


def dockerfile_facts(
    path: Path, args: dict[str, str] | None = None, target: str | None = None
) -> DockerfileFacts:
    """The instructions the tests care about in the stages that build `target` (default:
    the last stage), with the build arguments `args` (or the ARG defaults) filled in."""
    stages: dict[str, list[str]] = {}  # stage name -> its lines, FROM first
    order: list[str] = []
    preamble: list[str] = []
    for line in _logical_lines(path):
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(order))
            stages[name] = [line]
            order.append(name)
        elif order:
            stages[order[-1]].append(line)
        else:
            preamble.append(line)
    chain = [target or order[-1]]
    while (parent := stages[chain[0]][0].split()[1]) in stages:
        chain.insert(0, parent)
    given = dict(args or {})
    values: dict[str, str] = {}

    def declare(rest: str) -> None:
        name, _, default = rest.partition("=")
        values[name] = given.get(name, values.get(name, default))

    for line in preamble:
        word, _, rest = line.partition(" ")
        if word.upper() == "ARG":
            declare(rest)
    global_args = dict(values)
    froms, env, expose, runs = [], {}, [], []
    cmd = None
    for stage in chain:
        values = {**global_args, **env}
        for line in stages[stage]:
            word, _, rest = line.partition(" ")
            word = word.upper()
            if word == "FROM":
                froms.append(_expand(rest.split()[0], global_args))
            elif word == "ARG":
                declare(rest)
            elif word == "ENV":
                for pair in rest.split():
                    key, _, value = pair.partition("=")
                    env[key] = _expand(value, values, strict=False)
                    values[key] = env[key]
            elif word == "CMD":
                cmd = json.loads(rest)
            elif word == "EXPOSE":
                expose = [int(p) for p in rest.split()]
            elif word == "RUN":
                runs.append(rest)
    return DockerfileFacts(path, froms, env, cmd, expose, runs)


def image_facts(build: ImageBuild) -> DockerfileFacts:
    return dockerfile_facts(build.dockerfile, build.args, build.target)


# --- the validators -----------------------------------------------------------------


def kubernetes_validate_problems(paths: list[Path], version: str) -> list[str]:
    """kubernetes-validate --strict; any line but an INFO pass is a problem.

    Its warnings (no schema for a kind or API version: an API the version removed, or a
    typo in apiVersion) do not change its exit code, so they are caught here.
    """
    result = run(
        [tool("kubernetes-validate"), "--strict", "-k", version, *map(str, paths)],
    )
    problems = [line for line in result.stdout.splitlines() if not line.startswith("INFO ")]
    if result.returncode != 0 and not problems:
        problems.append(f"exit {result.returncode}: {result.stderr.strip()}")
    return problems


def hadolint_problems(path: Path) -> str:
    """hadolint with its default threshold (info): any finding fails; '' when clean."""
    result = run([tool("hadolint"), "--no-color", str(path)])
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def compose_problems(path: Path) -> str:
    result = run([tool("docker-compose"), "-f", str(path), "config", "-q"], cwd=path.parent)
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def skaffold_schema_problems(path: Path) -> str:
    result = run(
        [tool("check-jsonschema"), "--schemafile", str(SKAFFOLD_SCHEMA), str(path)],
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def render_dev_overlay() -> tuple[int, str, str]:
    """`kubectl kustomize` of deploy/dev, as skaffold's dev profile renders it."""
    result = kustomize(DEV_OVERLAY)
    return result.returncode, result.stdout, result.stderr


# --- what a process reads -----------------------------------------------------------

# Runs in a fresh interpreter with the environment a container would get, replaces
# os.environ with a mapping that records every name looked up, then does what the
# process does at start-up: load the settings and Django, then (web) the WSGI app, its
# URLconf and gunicorn's config, or (worker) the Celery app, its handlers and the
# heartbeat path the liveness probe checks. shared_lib.conf reads NAME, then NAME_FILE.
# It also notes where the process would serve Prometheus metrics, if it does: a web
# process whose MIDDLEWARE has MetricsMiddleware on gunicorn's bind, a worker whose
# Celery app runs MetricsServerStep (and whose settings do not turn it off) on
# METRICS_ADDRESS:METRICS_PORT.
_RECORDER = r"""
import importlib, json, os, sys

class RecordingEnviron(dict):
    def __init__(self, data):
        super().__init__(data)
        self.names = set()

def recording(lookup):
    def recorded(self, key, *args):
        self.names.add(key)
        return lookup(self, key, *args)
    return recorded

for lookup in (dict.__getitem__, dict.get, dict.__contains__, dict.setdefault, dict.pop):
    setattr(RecordingEnviron, lookup.__name__, recording(lookup))

environ = RecordingEnviron(os.environ)
os.environ = environ
kind, project = sys.argv[1:3]
result = {"error": None}
try:
    import django
    from django.conf import settings
    settings.INSTALLED_APPS
    django.setup()
    if kind == "web":
        importlib.import_module(project + ".wsgi")
        from django.urls import get_resolver
        get_resolver().url_patterns
        from shared_lib import gunicorn_conf, metrics
        result["bind"] = gunicorn_conf.bind
        middleware = metrics.MetricsMiddleware
        if middleware.__module__ + "." + middleware.__qualname__ in settings.MIDDLEWARE:
            address, _, port = gunicorn_conf.bind.rpartition(":")
            result["metrics"] = {"address": address, "port": int(port),
                                 "path": metrics.METRICS_PATH}
    elif kind == "worker":
        app = importlib.import_module(project + ".celery").app
        from shared_lib import metrics
        from shared_lib.events.registry import discover_handlers
        from shared_lib.events.worker import MetricsServerStep, heartbeat_path
        discover_handlers()
        result["heartbeat"] = str(heartbeat_path())
        step = MetricsServerStep
        if step in app.steps["worker"] and step.include_if(step.__new__(step), None):
            result["metrics"] = {"address": settings.METRICS_ADDRESS,
                                 "port": settings.METRICS_PORT, "path": metrics.METRICS_PATH}
except Exception as exc:
    result["error"] = type(exc).__name__ + ": " + str(exc)
result["read"] = sorted(environ.names)
print("RECORDED " + json.dumps(result))
"""

# What kubelet would put in a variable that comes from a Secret: a value of the right
# shape, so settings that parse it (dj-database-url, kombu) load.
SECRET_PLACEHOLDERS = {
    "DATABASE_URL": "postgresql://role:password@database:5432/name",
    "RABBITMQ_URL": "amqp://user:password@rabbitmq:5672/ticketing",
}


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where a process serves Prometheus metrics: http://<address>:<port><path>."""

    address: str
    port: int
    path: str


@dataclass(frozen=True)
class ProcessReads:
    read: frozenset[str]
    error: str | None
    bind: str | None
    heartbeat: str | None
    metrics: MetricsEndpoint | None = None  # None: this process serves no metrics


def process_reads(service: DjangoService, kind: str, env: dict[str, str]) -> ProcessReads:
    """Start `kind` ("web", "worker" or "migrate") of `service` far enough to see what it
    reads, with exactly `env` (plus PATH and the image's DJANGO_SETTINGS_MODULE)."""
    facts = image_facts(service_build(service))
    full_env = {
        "PATH": str(BIN) + ":/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": facts.env["DJANGO_SETTINGS_MODULE"],
        **env,
    }
    result = run(
        [sys.executable, "-c", _RECORDER, kind, service.project],
        cwd=service.directory,
        env=full_env,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RECORDED ")]
    assert lines, f"recorder failed for {service.name} {kind}:\n{result.stderr[-3000:]}"
    data = json.loads(lines[-1].removeprefix("RECORDED "))
    return ProcessReads(
        read=frozenset(data["read"]),
        error=data["error"],
        bind=data.get("bind"),
        heartbeat=data.get("heartbeat"),
        metrics=MetricsEndpoint(**data["metrics"]) if data.get("metrics") else None,
    )


# --- NetworkPolicy, as a plugin that enforces it would ---------------------------------

EVERY_PORT = "*"


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a set of labels."""
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        matched = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not matched:
            return False
    return True


def namespace_labels(namespace: str) -> dict[str, str]:
    """The label every namespace carries (set by the API server since Kubernetes 1.22)."""
    return {"kubernetes.io/metadata.name": namespace}


@dataclass(frozen=True)
class Peer:
    """A pod that opens a connection: its namespace and labels."""

    namespace: str
    labels: dict[str, str]


def _peer_matches(rule_peer: dict[str, Any], policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        return False  # for addresses outside the cluster; these peers are pods
    namespace_selector = rule_peer.get("namespaceSelector")
    if namespace_selector is None:
        in_namespace = peer.namespace == policy_namespace
    else:
        in_namespace = selects(namespace_selector, namespace_labels(peer.namespace))
    pod_selector = rule_peer.get("podSelector")
    return in_namespace and (pod_selector is None or selects(pod_selector, peer.labels))


def admitted_ports(policies: list[Manifest], workload: Manifest, peer: Peer) -> set[int | str]:
    """The container ports of `workload`'s pods that `peer` may connect to: the union over
    every policy selecting the pod (EVERY_PORT for a rule without ports). A named port
    counts only where the pod declares it. Empty when policies select the pod and none
    admits the peer (default deny); kubelet's probes are outside this."""
    template = workload.doc["spec"]["template"]
    labels = template["metadata"]["labels"]
    named = {
        p["name"]: p["containerPort"] for c in containers(workload) for p in c.get("ports", [])
    }
    admitted: set[int | str] = set()
    for policy in policies:
        spec = policy.doc["spec"]
        namespace = policy.doc["metadata"]["namespace"]
        if namespace != workload.doc["metadata"]["namespace"]:
            continue
        if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            continue
        if not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            peers = rule.get("from") or []
            if peers and not any(_peer_matches(p, namespace, peer) for p in peers):
                continue
            if not rule.get("ports"):
                admitted.add(EVERY_PORT)
            for port in rule.get("ports", []):
                assert "endPort" not in port, f"{policy.name}: port ranges are not modelled"
                assert port.get("protocol", "TCP") == "TCP", policy.name
                value = port.get("port")
                if value is None:
                    admitted.add(EVERY_PORT)
                elif isinstance(value, int):
                    admitted.add(value)
                elif value in named:
                    admitted.add(named[value])
    return admitted

"""What the deployment tests share: the repo's deployment files, the pinned validators run
as CI runs them, and what a service process really reads from its environment.

    problems = kubernetes_validate_problems(k8s_files(), "1.37")   # [] when valid
    reads = process_reads(service("tickets"), "web", env={...})    # names it looked up

Every validator is a binary or console script from the root pyproject's dev group
(pinned there), run from this virtualenv: nothing is fetched at test time.
"""

from __future__ import annotations

import importlib.util
import json
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
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
SKAFFOLD_FILE = REPO_ROOT / "skaffold.yaml"
SKAFFOLD_SCHEMA = REPO_ROOT / "deploy" / "schemas" / "skaffold-v4beta13.json"
README = REPO_ROOT / "README.md"

# The Kubernetes versions the manifests are validated against: the oldest the README
# promises (every API and field used is GA there) and the newest the pinned
# kubernetes-validate knows, so an API a new release deprecates or removes shows up.
KUBERNETES_VERSIONS = ("1.30", "1.37")

NAMESPACE = "ticketing"
# The images this repository builds; anything else (postgres, rabbitmq, ...) is upstream.
IMAGE_PREFIX = "ticketing-"
BASE_IMAGE = "ticketing-base"


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


def k8s_files() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]


def load_manifests(paths: list[Path] | None = None) -> list[Manifest]:
    found = []
    for path in paths or k8s_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append(Manifest(path, doc))
    return found


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
class DockerfileFacts:
    path: Path
    stages: list[str]  # each FROM line's image
    env: dict[str, str]
    cmd: list[str] | None
    expose: list[int]
    run_lines: list[str] = field(default_factory=list)


def dockerfile_facts(path: Path) -> DockerfileFacts:
    """The instructions the tests care about, with line continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages, env, expose, runs = [], {}, [], []
    cmd = None
    for line in logical:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stages.append(rest.split()[0])
            cmd = None  # each stage starts with its base's command
        elif word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "EXPOSE":
            expose = [int(p) for p in rest.split()]
        elif word == "RUN":
            runs.append(rest)
    return DockerfileFacts(path, stages, env, cmd, expose, runs)


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
    result = run(
        [
            tool("kubectl"),
            "kustomize",
            "--load-restrictor",
            "LoadRestrictionsNone",
            str(DEV_OVERLAY),
        ]
    )
    return result.returncode, result.stdout, result.stderr


# --- what a process reads -----------------------------------------------------------

# Runs in a fresh interpreter with the environment a container would get, replaces
# os.environ with a mapping that records every name looked up, then does what the
# process does at start-up: load the settings and Django, then (web) the WSGI app, its
# URLconf and gunicorn's config, or (worker) the Celery app, its handlers and the
# heartbeat path the liveness probe checks. shared_lib.conf reads NAME, then NAME_FILE.
_RECORDER = r"""
import importlib, json, os, sys

class RecordingEnviron(dict):
    def __init__(self, data):
        super().__init__(data)
        self.names = set()
    def __getitem__(self, key):
        self.names.add(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)
    def __contains__(self, key):
        self.names.add(key)
        return super().__contains__(key)
    def setdefault(self, key, default=None):
        self.names.add(key)
        return super().setdefault(key, default)
    def pop(self, key, *default):
        self.names.add(key)
        return super().pop(key, *default)

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
        from shared_lib import gunicorn_conf
        result["bind"] = gunicorn_conf.bind
    elif kind == "worker":
        importlib.import_module(project + ".celery")
        from shared_lib.events.registry import discover_handlers
        from shared_lib.events.worker import heartbeat_path
        discover_handlers()
        result["heartbeat"] = str(heartbeat_path())
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
class ProcessReads:
    read: frozenset[str]
    error: str | None
    bind: str | None
    heartbeat: str | None


def process_reads(service: DjangoService, kind: str, env: dict[str, str]) -> ProcessReads:
    """Start `kind` ("web", "worker" or "migrate") of `service` far enough to see what it
    reads, with exactly `env` (plus PATH and the image's DJANGO_SETTINGS_MODULE)."""
    facts = dockerfile_facts(service.directory / "Dockerfile")
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
    )

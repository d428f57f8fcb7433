"""The deployment describes the system the code is, as `kubectl kustomize k8s/` renders it:
every image has its build (Dockerfile.service and its arguments) and a workload; every
container sets exactly variables its process reads (and all it needs), listens where
gunicorn binds, is probed where shared_lib answers; every Ingress path reaches a
Service; compose and Kubernetes run the same services on the same images.

What a process reads is not a list kept here: each container's environment is handed
to a real start-up of that process (tests/deploy.py, process_reads), which records
every name looked up. A manifest that misses a required variable fails the start-up;
one that sets a name nothing reads shows up as unread.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared_lib.health import LIVENESS_PATH, READINESS_PATH
from tests.deploy import (
    BASE_DOCKERFILE,
    BASE_IMAGE,
    COMPOSE_FILE,
    DEPLOY_DOC,
    DEV_OVERLAY,
    IMAGE_PREFIX,
    NAMESPACE,
    SECRET_PLACEHOLDERS,
    SERVICE_DOCKERFILE,
    SKAFFOLD_FILE,
    Manifest,
    Peer,
    ProcessReads,
    admitted_ports,
    by_kind,
    compose_model,
    containers,
    dockerfile_facts,
    image_facts,
    load_manifests,
    load_script,
    pod_spec,
    process_reads,
    render_dev_overlay,
    service_build,
    skaffold_builds,
)
from ticketing_devtools import gateway, ingress
from ticketing_devtools.catalog import REPO_ROOT, SERVICES, DjangoService, service

# The gunicorn config a web service gets unless its image names another (GUNICORN_CONF).
DEFAULT_GUNICORN_CONF = "shared_lib.gunicorn_conf"

make_secrets = load_script(REPO_ROOT / "deploy" / "compose" / "make_secrets.py")
MANIFESTS = load_manifests()
DEPLOYMENTS = by_kind(MANIFESTS, "Deployment")
STATEFULSETS = by_kind(MANIFESTS, "StatefulSet")
SERVICES_K8S = by_kind(MANIFESTS, "Service")
CONFIGMAPS = by_kind(MANIFESTS, "ConfigMap")
NETWORK_POLICIES = by_kind(MANIFESTS, "NetworkPolicy")
WORKLOADS = {**DEPLOYMENTS, **STATEFULSETS}

CHECK_ALIVE = ["python", "-m", "shared_lib.events.worker", "--check-alive"]
MIGRATE = ["python", "/app/bin/migrate_locked.py"]


def image_of(name: str) -> str:
    return f"{IMAGE_PREFIX}{name}"


def app_workloads() -> list[Manifest]:
    """Deployments running this repository's images (not Redis and the like)."""
    return [
        m
        for m in DEPLOYMENTS.values()
        if any(c["image"].startswith(IMAGE_PREFIX) for c in containers(m))
    ]


def service_of(manifest: Manifest) -> DjangoService:
    return service(manifest.doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"])


def process_kind(container_name: str) -> str:
    return {"web": "web", "worker": "worker", "migrate": "migrate"}[container_name]


def expected_worker_command(target: DjangoService) -> list[str]:
    # As ticketing_devtools.stack starts it for `make up` and the system tests.
    return [
        "celery",
        "-A",
        target.project,
        "worker",
        *target.worker_pool,
        "--hostname",
        f"{target.name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
    ]


def _probe_path(probe: dict[str, Any]) -> tuple[str, Any]:
    return probe["httpGet"]["path"], probe["httpGet"]["port"]


# --- images, Dockerfiles, skaffold ---------------------------------------------------


def skaffold_artifacts() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(SKAFFOLD_FILE.read_text())
    return {a["image"]: a for a in config["build"]["artifacts"]}


def test_every_skaffold_image_has_a_dockerfile_and_a_workload():
    artifacts = skaffold_artifacts()
    used = {c["image"] for m in WORKLOADS.values() for c in containers(m)}

    for image, artifact in artifacts.items():
        assert (REPO_ROOT / artifact["docker"]["dockerfile"]).is_file(), image
        if image != BASE_IMAGE:
            assert image in used, f"{image} is built but no Deployment runs it"
            assert artifact["requires"] == [{"image": BASE_IMAGE, "alias": "BASE_IMAGE"}]
    ours = {image for image in used if image.startswith(IMAGE_PREFIX)}
    assert ours <= set(artifacts), f"not built by skaffold: {ours - set(artifacts)}"


def test_every_service_in_the_catalog_has_its_image_and_workloads():
    for target in SERVICES:
        build = service_build(target)
        assert build.dockerfile == SERVICE_DOCKERFILE
        expected_args = {
            "SERVICE_DIR": str(target.directory.relative_to(REPO_ROOT)),
            "PACKAGE": _package_name(target),
            "DJANGO_PROJECT": target.project,
        }
        if target.web and target.gunicorn_conf != DEFAULT_GUNICORN_CONF:
            expected_args["GUNICORN_CONF"] = target.gunicorn_conf
        assert build.args == expected_args, target.name
        # The default target serves HTTP; a service without a web process is a worker.
        assert build.target == (None if target.web else "worker"), target.name
        if target.web:
            assert f"{target.name}-web" in DEPLOYMENTS
            assert target.name in SERVICES_K8S
        if target.events:
            assert f"{target.name}-worker" in DEPLOYMENTS
        if target.has_database:
            assert f"{target.name}-db" in STATEFULSETS
            assert f"{target.name}-db" in NETWORK_POLICIES
        for kind in ("web", "worker"):
            workload = DEPLOYMENTS.get(f"{target.name}-{kind}")
            if workload is not None:
                init = pod_spec(workload).get("initContainers", [])
                expected = [MIGRATE] if target.has_database else []
                assert [c["command"] for c in init] == expected, workload.name


def test_compose_builds_every_image_as_skaffold_does():
    builds = {
        spec["image"]: spec["build"]
        for spec in compose_model()["services"].values()
        if "build" in spec and spec["image"] != "ticketing-localstripe"
    }

    assert set(builds) == set(skaffold_builds())
    for image, build in skaffold_builds().items():
        compose = builds[image]
        assert REPO_ROOT / compose["dockerfile"] == build.dockerfile, image
        assert compose.get("args", {}) == build.args, image
        assert compose.get("target") == build.target, image
        if image != BASE_IMAGE:
            # The base image is the `base` service's, under the name the Dockerfile's
            # default BASE_IMAGE gives it.
            assert compose["additional_contexts"] == {BASE_IMAGE: "service:base"}, image


def test_dockerfiles_build_on_the_base_and_run_what_the_stack_runs():
    base = dockerfile_facts(BASE_DOCKERFILE)
    assert "COPY deploy/migrate_locked.py /app/bin/migrate_locked.py" in BASE_DOCKERFILE.read_text()
    assert base.env["UV_PROJECT_ENVIRONMENT"] == "/app/.venv"
    text = SERVICE_DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=ticketing-base" in text
    assert 'uv sync --frozen --no-dev --package "${PACKAGE}"' in text
    for target in SERVICES:
        facts = image_facts(service_build(target))
        assert facts.stages[0] == BASE_IMAGE, target.name
        assert facts.env["DJANGO_SETTINGS_MODULE"] == f"{target.project}.settings"
        if target.web:
            assert facts.command == [
                "gunicorn",
                "-c",
                f"python:{target.gunicorn_conf}",
                f"{target.project}.wsgi",
            ]
            assert facts.expose == [ingress.COMPOSE_UPSTREAM_PORT]
        else:
            # The deployments add the pool and the node name (expected_worker_command).
            assert facts.command[:4] == ["celery", "-A", target.project, "worker"]
            assert facts.expose == []


def test_dockerfile_service_refuses_to_build_without_its_arguments():
    (check,) = [r for r in dockerfile_facts(SERVICE_DOCKERFILE).run_lines if "required" in r]
    script = check.replace("${SERVICE_DIR}", "").replace("${PACKAGE}", "tickets-svc")
    script = script.replace("${DJANGO_PROJECT}", "tickets_svc")

    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=False)

    assert result.returncode == 1
    assert result.stderr == "the build argument SERVICE_DIR is required\n"


def _package_name(target: DjangoService) -> str:
    text = (target.directory / "pyproject.toml").read_text()
    return re.search(r'^name = "([^"]+)"', text, re.MULTILINE).group(1)


@pytest.mark.parametrize("target", [s for s in SERVICES if s.web], ids=lambda s: s.name)
def test_collectstatic_runs_with_the_dockerfiles_placeholders(target):
    build = service_build(target)
    facts = dockerfile_facts(build.dockerfile, build.args, target="static")
    (line,) = [r for r in facts.run_lines if "collectstatic" in r]
    placeholders = dict(re.findall(r"([A-Z_]+)=(\S+)", line.split("python manage.py")[0]))

    result = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--dry-run", "-v", "0"],
        cwd=target.directory,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": facts.env["DJANGO_SETTINGS_MODULE"],
            **placeholders,
        },
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]


# --- what each container sets, and what its process reads ----------------------------


def _k8s_environment(
    manifest: Manifest, container: dict[str, Any], files: Path
) -> tuple[set[str], dict[str, str]]:
    """(names the container declares, the environment kubelet would give it)."""
    volumes = {v["name"]: v for v in pod_spec(manifest).get("volumes", [])}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
    declared: set[str] = set()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in CONFIGMAPS, f"{manifest.name}: ConfigMap {name} is not in k8s/"
        data = CONFIGMAPS[name].doc["data"]
        declared |= set(data)
        env.update(data)
    for item in container.get("env", []):
        name = item["name"]
        declared.add(name)
        if "value" in item:
            value = item["value"]
        elif "configMapKeyRef" in item["valueFrom"]:
            ref = item["valueFrom"]["configMapKeyRef"]
            value = CONFIGMAPS[ref["name"]].doc["data"][ref["key"]]
        else:
            value = SECRET_PLACEHOLDERS.get(name, f"placeholder-{name.lower()}")
        if name.endswith("_FILE"):
            # A mounted Secret or ConfigMap: the file must be on a volume it mounts.
            mount = next((m for m in mounts if value.startswith(m + "/")), None)
            assert mount is not None, f"{manifest.name}: {name}={value} is on no volume"
            local = files / value.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(f"placeholder for {value}")
            value = str(local)
        env[name] = value
    return declared, env


def _container_cases() -> list[tuple[str, str]]:
    return [(m.name, c["name"]) for m in app_workloads() for c in containers(m)]


@functools.cache
def _started(workload: str, container_name: str) -> tuple[set[str], dict[str, str], ProcessReads]:
    """(names the container declares, its environment, what its process read at start-up):
    one start-up per container, shared by the tests below."""
    manifest = DEPLOYMENTS[workload]
    container = next(c for c in containers(manifest) if c["name"] == container_name)
    with tempfile.TemporaryDirectory() as files:
        declared, env = _k8s_environment(manifest, container, Path(files))
        reads = process_reads(service_of(manifest), process_kind(container_name), env)
    return declared, env, reads


def _writable_mounts(container: dict[str, Any]) -> list[str]:
    return [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]


@pytest.mark.parametrize(("workload", "container_name"), _container_cases())
def test_k8s_container_sets_what_its_process_reads_and_all_it_requires(workload, container_name):
    manifest = DEPLOYMENTS[workload]
    container = next(c for c in containers(manifest) if c["name"] == container_name)
    target = service_of(manifest)
    assert container["image"] == image_of(target.name)

    declared, env, reads = _started(workload, container_name)

    assert reads.error is None, f"{workload}/{container_name} does not start: {reads.error}"
    assert declared - reads.read == set(), "set, but nothing reads them"
    if container_name == "web":
        port = int(reads.bind.rsplit(":", 1)[1])
        assert container["ports"] == [{"name": "http", "containerPort": port}]
        assert port in image_facts(service_build(target)).expose
        assert port == ingress.COMPOSE_UPSTREAM_PORT
        # gunicorn's workers keep their metrics in PROMETHEUS_MULTIPROC_DIR, a temporary
        # directory unless set (shared_lib.gunicorn_conf): on a writable volume too.
        metrics_dir = env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("TMPDIR") or "/tmp"  # noqa: S108
        assert any(
            (metrics_dir + "/").startswith(path + "/") for path in _writable_mounts(container)
        ), f"{workload}: {metrics_dir} is on the read-only root filesystem"
    if container_name == "worker":
        # The root filesystem is read-only: the heartbeat must land on a writable volume.
        assert any(reads.heartbeat.startswith(path + "/") for path in _writable_mounts(container))
        # The worker's metrics port, where its process listens (METRICS_PORT) and nowhere
        # else; on every address, so that the pod's IP reaches it.
        expected = []
        if reads.metrics is not None:
            assert ipaddress.ip_address(reads.metrics.address).is_unspecified, reads.metrics
            expected = [{"name": "metrics", "containerPort": reads.metrics.port}]
        assert container.get("ports", []) == expected


def _compose_cases() -> list[str]:
    model = compose_model()
    return [
        name
        for name, spec in model["services"].items()
        if spec.get("image", "").startswith(IMAGE_PREFIX)
        and spec["image"] not in (BASE_IMAGE, "ticketing-localstripe")
        and name != "secrets"
    ]


@pytest.fixture(scope="module")
def compose_secrets(tmp_path_factory):
    root = tmp_path_factory.mktemp("compose-secrets")
    make_secrets.make_secrets(root)
    return root


@pytest.mark.parametrize("name", _compose_cases())
def test_compose_container_sets_what_its_process_reads_and_all_it_requires(name, compose_secrets):
    spec = compose_model()["services"][name]
    target = service(spec["image"].removeprefix(IMAGE_PREFIX))
    kind = "migrate" if name.endswith("-migrate") else "worker" if "worker" in name else "web"
    mounts = {
        v["target"]: compose_secrets / v["volume"]["subpath"]
        for v in spec.get("volumes", [])
        if v.get("source") == "secrets"
    }
    env = dict(spec.get("environment") or {})
    for key, value in list(env.items()):
        if key.endswith("_FILE"):
            mount = next((m for m in mounts if value.startswith(m + "/")), None)
            assert mount is not None, f"{name}: {key}={value} is on no mounted secret"
            local = mounts[mount] / value.removeprefix(mount + "/")
            assert local.is_file(), f"{name}: make_secrets.py makes no {local}"
            env[key] = str(local)

    reads = process_reads(target, kind, env)

    assert reads.error is None, f"{name} does not start: {reads.error}"
    assert set(env) - reads.read == set(), "set, but nothing reads them"
    if kind == "web":
        port = int(reads.bind.rsplit(":", 1)[1])
        assert spec["healthcheck"]["test"][-1].count(f":{port}{READINESS_PATH}") == 1
    if kind == "worker":
        assert spec["healthcheck"]["test"][1:] == CHECK_ALIVE
        assert spec["command"] == expected_worker_command(target)
    if kind == "migrate":
        assert spec["command"] == MIGRATE


# --- probes and commands ---------------------------------------------------------------


@pytest.mark.parametrize("workload", sorted(m.name for m in app_workloads()))
def test_probes_and_commands_match_what_the_process_serves(workload):
    manifest = DEPLOYMENTS[workload]
    target = service_of(manifest)
    (main,) = pod_spec(manifest)["containers"]
    if main["name"] == "web":
        assert "command" not in main  # the image's gunicorn command
        assert _probe_path(main["startupProbe"]) == (LIVENESS_PATH, "http")
        assert _probe_path(main["livenessProbe"]) == (LIVENESS_PATH, "http")
        assert _probe_path(main["readinessProbe"]) == (READINESS_PATH, "http")
    else:
        assert main["name"] == "worker"
        assert main["command"] == expected_worker_command(target)
        assert main["startupProbe"]["exec"]["command"] == CHECK_ALIVE
        assert main["livenessProbe"]["exec"]["command"] == CHECK_ALIVE


def test_the_worker_liveness_command_tells_a_fresh_heartbeat_from_a_stale_one(tmp_path):
    heartbeat = tmp_path / "heartbeat"
    env = {"PATH": os.environ["PATH"], "WORKER_HEARTBEAT_FILE": str(heartbeat)}

    def check() -> int:
        return subprocess.run([sys.executable, *CHECK_ALIVE[1:]], env=env, check=False).returncode

    assert check() == 1  # no heartbeat yet
    heartbeat.touch()
    assert check() == 0
    stale = time.time() - 3600
    os.utime(heartbeat, (stale, stale))
    assert check() == 1


# --- routing, naming, isolation ------------------------------------------------------


def test_every_ingress_path_reaches_a_service_serving_http():
    (manifest,) = by_kind(MANIFESTS, "Ingress").values()
    assert manifest.doc["spec"]["ingressClassName"] == "nginx"
    paths = manifest.doc["spec"]["rules"][0]["http"]["paths"]
    table = gateway.load_routes()
    assert {p["path"] for p in paths} == {r.prefix for r in table.routes} | {"/"}
    for path in paths:
        backend = path["backend"]["service"]
        target = SERVICES_K8S[backend["name"]].doc
        (port,) = [p for p in target["spec"]["ports"] if p["name"] == backend["port"]["name"]]
        selector = target["spec"]["selector"]
        pods = [
            m
            for m in DEPLOYMENTS.values()
            if selector.items() <= m.doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert pods, f"Service {backend['name']} selects no Deployment"
        for pod in pods:
            names = {p["name"] for c in pod_spec(pod)["containers"] for p in c.get("ports", [])}
            assert port["targetPort"] in names


def test_compose_and_kubernetes_run_the_same_services_on_the_same_images():
    compose = {name: spec.get("image") for name, spec in compose_model()["services"].items()}
    # k8s workload -> its compose counterpart: "<svc>-web" is plain "<svc>" in compose
    # (the gateway's upstream), everything else keeps its name.
    k8s = {
        (name.removesuffix("-web") if name.endswith("-web") else name): containers(m)[-1]["image"]
        for name, m in WORKLOADS.items()
    }
    # What compose runs that a cluster does differently, and why.
    compose_only = {
        "base": "builds the base image (skaffold's required artifact)",
        "secrets": "generates secrets (kubectl create secret in a cluster)",
        "gateway": "the Ingress and ingress-nginx",
        "localstripe": "Stripe itself",
    }
    migrations = {f"{s.name}-migrate" for s in SERVICES if s.has_database}

    assert set(compose) - set(compose_only) - migrations == set(k8s)
    assert {name: compose[name] for name in k8s} == k8s
    for name in migrations:
        assert compose[name] == image_of(name.removesuffix("-migrate"))


def test_the_stripe_secret_and_the_jwt_private_key_reach_only_their_service():
    def referenced_secrets(manifest: Manifest) -> set[str]:
        spec = pod_spec(manifest)
        names = {v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        for container in containers(manifest):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    names.add(ref["name"])
        return names

    holders = {"stripe": set(), "jwt-private-key": set()}
    for manifest in WORKLOADS.values():
        for secret in referenced_secrets(manifest) & set(holders):
            holders[secret].add(manifest.doc["metadata"]["labels"]["app.kubernetes.io/name"])

    assert holders == {"stripe": {"payments"}, "jwt-private-key": {"auth"}}
    compose = compose_model()["services"]
    private = {
        name
        for name, spec in compose.items()
        for v in spec.get("volumes", [])
        if v.get("volume", {}).get("subpath") == "jwt-private"
    }
    assert private == {"auth", "auth-migrate"}


def test_network_policies_admit_exactly_the_pods_that_need_each_backend():
    assert "default-deny-ingress" in NETWORK_POLICIES
    for target in (s for s in SERVICES if s.has_database):
        policy = NETWORK_POLICIES[f"{target.name}-db"].doc["spec"]
        assert policy["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": target.name,
            "app.kubernetes.io/component": "database",
        }
        (rule,) = policy["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": target.name}
    for manifest in app_workloads():
        labels = manifest.doc["spec"]["template"]["metadata"]["labels"]
        env_names = {e["name"] for c in containers(manifest) for e in c.get("env", [])}
        # A pod that talks to RabbitMQ must carry the label its policy admits.
        assert ("RABBITMQ_URL" in env_names) == (labels.get("ticketing/event-bus") == "true")
        # And a pod that keeps rate limits in Redis, the label the Redis policy admits.
        redis_peer = NETWORK_POLICIES["redis"].doc["spec"]["ingress"][0]["from"][0]
        admitted = redis_peer["podSelector"]["matchLabels"].items() <= labels.items()
        assert ("REDIS_URL" in env_names) == admitted, manifest.name


def test_every_pod_is_hardened_and_sized():
    for manifest in WORKLOADS.values():
        spec = pod_spec(manifest)
        assert spec["automountServiceAccountToken"] is False, manifest.name
        assert spec["securityContext"]["runAsNonRoot"] is True, manifest.name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in containers(manifest):
            where = f"{manifest.name}/{container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
            assert "memory" in container["resources"]["limits"], where
        assert manifest.doc["metadata"]["namespace"] == NAMESPACE


def test_web_deployments_roll_without_losing_capacity_and_autoscale():
    hpas = by_kind(MANIFESTS, "HorizontalPodAutoscaler")
    pdbs = by_kind(MANIFESTS, "PodDisruptionBudget")
    for target in (s for s in SERVICES if s.web):
        name = f"{target.name}-web"
        spec = DEPLOYMENTS[name].doc["spec"]
        assert "replicas" not in spec  # the HPA owns it
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert hpas[name].doc["spec"]["scaleTargetRef"]["name"] == name
        assert hpas[name].doc["spec"]["minReplicas"] >= 2
        assert pdbs[name].doc["spec"]["selector"] == spec["selector"]


def test_the_namespace_is_applied_first():
    assert MANIFESTS[0].kind == "Namespace"
    assert MANIFESTS[0].name == NAMESPACE


def test_the_dev_overlay_is_k8s_with_a_writable_root_for_the_app_containers():
    overlay = yaml.safe_load((DEV_OVERLAY / "kustomization.yaml").read_text())
    code, rendered, stderr = render_dev_overlay()
    assert code == 0, stderr

    assert overlay["resources"] == ["../../k8s"]
    dev = {(m.kind, m.name): m.doc for m in load_manifests(rendered)}
    expected = {(m.kind, m.name): copy.deepcopy(m.doc) for m in MANIFESTS}
    for manifest in app_workloads():
        (main,) = pod_spec(Manifest(expected[(manifest.kind, manifest.name)]))["containers"]
        main["securityContext"]["readOnlyRootFilesystem"] = False
    assert dev == expected


def test_compose_runs_rabbitmq_with_the_clusters_settings():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())

    assert (
        compose["configs"]["rabbitmq"]["content"]
        == CONFIGMAPS["rabbitmq-config"].doc["data"]["ticketing.conf"]
    )


def test_the_brokers_definitions_are_shared_libs_least_privilege_users():
    import json

    from shared_lib.events.broker import definitions

    k8s = json.loads(CONFIGMAPS["rabbitmq-definitions"].doc["data"]["definitions.json"])
    assert k8s == definitions(vhost="ticketing", password_hashes={})


def test_compose_gives_each_bus_service_its_own_broker_user(tmp_path):
    import json
    from urllib.parse import urlsplit

    from shared_lib.events.broker import BUS_SERVICES, definitions

    make_secrets.make_secrets(tmp_path)
    written = json.loads((tmp_path / "rabbitmq" / "definitions.json").read_text())
    hashes = {user["name"]: user["password_hash"] for user in written["users"]}
    assert written == definitions(vhost="ticketing", password_hashes=hashes)
    for name in BUS_SERVICES:
        url = urlsplit((tmp_path / name / "rabbitmq_url").read_text())
        assert (url.username, url.hostname, url.path) == (name, "rabbitmq", "/ticketing")
        assert url.password == (tmp_path / "rabbitmq-users" / name).read_text()
        assert hashes[name] == make_secrets.rabbitmq_password_hash(url.password)
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, spec in compose["services"].items():
        env = spec.get("environment") or {}
        assert "RABBITMQ_URL" not in env, f"{name}: the shared broker URL is gone"
        if "RABBITMQ_URL_FILE" in env:
            own = name.split("-")[0]
            mounts = {v.get("volume", {}).get("subpath") for v in spec.get("volumes", [])}
            assert own in BUS_SERVICES, name
            assert own in mounts, name


def test_each_bus_pod_connects_as_its_own_broker_user():
    from shared_lib.events.broker import BUS_SERVICES

    users = STATEFULSETS["rabbitmq"].doc["spec"]["template"]["spec"]["volumes"]
    projected = next(v for v in users if v["name"] == "service-users")["projected"]["sources"]
    assert sorted(source["secret"]["name"] for source in projected) == [
        f"rabbitmq-{name}" for name in BUS_SERVICES
    ]
    for manifest in app_workloads():
        for container in containers(manifest):
            for item in container.get("env", []):
                if item["name"] == "RABBITMQ_URL":
                    owner = manifest.doc["metadata"]["labels"]["app.kubernetes.io/name"]
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert (ref["name"], ref["key"]) == (f"rabbitmq-{owner}", "url")


# --- metrics: where Prometheus scrapes, and who may -------------------------------------

# Where docs/deploy.md tells operators to run Prometheus: the namespace `monitoring`,
# with the label its server's pods carry in the prometheus-community charts and the
# Prometheus Operator.
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
SCRAPE_ANNOTATION_PREFIX = "prometheus.io/"


def _main_container(manifest: Manifest) -> dict[str, Any]:
    (main,) = pod_spec(manifest)["containers"]
    return main


def _served_metrics(manifest: Manifest):
    """Where the pod's process serves metrics (None: it serves none), as it starts up."""
    if manifest not in app_workloads():
        return None  # upstream images: PostgreSQL, RabbitMQ, Redis
    _, _, reads = _started(manifest.name, _main_container(manifest)["name"])
    assert reads.error is None, f"{manifest.name} does not start: {reads.error}"
    return reads.metrics


def test_web_and_worker_processes_serve_metrics():
    # What the tests below rely on: the start-up finds the metrics every process serves.
    for manifest in app_workloads():
        assert _served_metrics(manifest) is not None, manifest.name


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_pods_that_serve_metrics_are_annotated_with_their_port_and_path(workload):
    manifest = WORKLOADS[workload]
    metadata = manifest.doc["spec"]["template"]["metadata"]
    scrape = {
        key: value
        for key, value in metadata.get("annotations", {}).items()
        if key.startswith(SCRAPE_ANNOTATION_PREFIX)
    }

    served = _served_metrics(manifest)

    if served is None:
        assert scrape == {}, f"{workload} serves no metrics"
        return
    assert scrape == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(served.port),
        "prometheus.io/path": served.path,
    }
    declared = {p["containerPort"] for p in _main_container(manifest).get("ports", [])}
    assert served.port in declared, f"{workload} does not declare port {served.port}"


@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_network_policies_admit_prometheus_to_exactly_the_metrics_ports(workload):
    manifest = WORKLOADS[workload]
    policies = list(NETWORK_POLICIES.values())
    served = _served_metrics(manifest)
    component = manifest.doc["spec"]["template"]["metadata"]["labels"].get(
        "app.kubernetes.io/component"
    )

    assert admitted_ports(policies, manifest, PROMETHEUS) == (
        set() if served is None else {served.port}
    )
    # Nothing else in the monitoring namespace, and no pod in this one, gets a metrics or
    # web port: a direct connection to a web pod could claim any X-Forwarded-For.
    others = [
        Peer(PROMETHEUS.namespace, {"app.kubernetes.io/name": "grafana"}),
        Peer("default", PROMETHEUS.labels),
        Peer(NAMESPACE, {"app.kubernetes.io/name": "prometheus"}),
    ]
    for other in others:
        assert admitted_ports(policies, manifest, other) == set(), other
    # The ingress controller still reaches the web pods' http port, and nothing more.
    controller = Peer("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
    web_port = {p["containerPort"] for p in _main_container(manifest).get("ports", [])}
    expected = web_port if component == "web" else set()
    assert admitted_ports(policies, manifest, controller) == expected


def test_the_readme_says_where_prometheus_runs():
    section = DEPLOY_DOC.read_text().split("## Deploy", 1)[1].split("\n## ", 1)[0]

    assert f"Prometheus in namespace `{PROMETHEUS.namespace}` scrapes pods by annotation" in section
    for key, value in PROMETHEUS.labels.items():
        assert f"{key}: {value}" in section


def _rate_limited() -> set[str]:
    """Services whose own code counts requests in Redis (shared_lib.ratelimit)."""
    return {
        s.name
        for s in SERVICES
        if any(
            "shared_lib.ratelimit" in path.read_text()
            for path in s.directory.rglob("*.py")
            if not {"tests", "migrations"} & set(path.relative_to(s.directory).parts)
        )
    }


def test_every_service_that_rate_limits_reaches_redis():
    # Without REDIS_URL each web process would count the limits alone, for good (as in an
    # outage): a payments pod's card attempts limited per process, not per buyer.
    limited = _rate_limited()
    compose = compose_model()["services"]

    assert {"auth", "orders", "payments"} <= limited
    for name in limited:
        env_names = {
            e["name"] for c in containers(DEPLOYMENTS[f"{name}-web"]) for e in c.get("env", [])
        }
        assert "REDIS_URL" in env_names, name
        assert "REDIS_URL" in compose[name]["environment"], name

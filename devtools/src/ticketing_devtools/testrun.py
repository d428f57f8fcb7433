"""`make test`: every test suite of the repo, each in its own pytest process.

    python -m ticketing_devtools.cli test            # all suites
    python -m ticketing_devtools.cli test auth -k signup

Each Django service has its own settings, so each suite runs on its own; the totals are
summed from their JUnit reports into one closing line. A suite that collects no tests
fails the run: a silently empty suite is a broken suite.

Suites run TEST_JOBS at a time (default 2), longest first. They share nothing a run
beside them could disturb: each has its own test databases, throw-away RabbitMQ vhosts,
Redis key prefix and free ports, and the broker users they create get this checkout's
passwords. A suite's output is kept in var/test-reports/<suite>.log and printed whole
when it ends, so suites never interleave.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
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
# The longest suites first, so the last to start are short and the lanes end together.
LONGEST_FIRST = ("devtools", "shared_lib", "client", "expiration")

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


def test_jobs() -> int:
    """How many suites run at once (TEST_JOBS, at least 1)."""
    return max(1, int(os.environ.get("TEST_JOBS", "2")))


def _longest_first(chosen: list[Suite]) -> list[Suite]:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    return sorted(chosen, key=lambda suite: rank.get(suite.name, len(rank)))


@dataclass(frozen=True)
class Outcome:
    suite: Suite
    code: int
    counts: tuple[int, int, int]
    seconds: float


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
    chosen = _longest_first([s for s in suites() if not selected or s.name in selected])
    jobs = min(test_jobs(), len(chosen))
    printing = threading.Lock()
    # Static files are served through the same manifest storage as in production, so a
    # template naming a missing static file fails a suite rather than a deploy. Collected
    # before any suite starts: two suites beside each other (a service's and devtools'
    # stacks) would otherwise collect into one directory at once; later calls find the
    # fingerprint current and collect nothing.
    for service in SERVICES:
        if (service.directory / "manage.py").exists() and any(
            suite.name in (service.name, "devtools") for suite in chosen
        ):
            collect_static(
                service.directory, _suite_env(Suite(service.name, service.directory), secrets)
            )

    def run_suite(suite: Suite) -> Outcome:
        report, log = reports / f"{suite.name}.xml", reports / f"{suite.name}.log"
        report.unlink(missing_ok=True)
        started = time.monotonic()
        env = _suite_env(suite, secrets)
        env["TEST_DATABASE_SUFFIX"] = run_id
        with log.open("w") as out:
            code = subprocess.call(
                [sys.executable, "-m", "pytest", f"--junitxml={report}", *pytest_args],
                cwd=suite.directory,
                env=env,
                stdout=out if jobs > 1 else None,
                stderr=subprocess.STDOUT if jobs > 1 else None,
            )
        outcome = Outcome(suite, code, _counts(report), time.monotonic() - started)
        with printing:
            if jobs > 1:
                print(f"\n=== {suite.name} ===", flush=True)
                print(log.read_text(), end="", flush=True)
            if code == PYTEST_NO_TESTS:
                print(f"{suite.name}: no tests were collected; that is a failure", flush=True)
        return outcome

    if jobs == 1:
        outcomes = []
        for suite in chosen:
            print(f"\n=== {suite.name} ===", flush=True)
            outcomes.append(run_suite(suite))
    else:
        print(
            f"Running {len(chosen)} suites, {jobs} at a time: {', '.join(s.name for s in chosen)}"
        )
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            outcomes = list(pool.map(run_suite, chosen))
    broken = [o.suite.name for o in outcomes if o.code != 0]
    passed, failed, skipped = (sum(o.counts[i] for o in outcomes) for i in range(3))
    times = ", ".join(f"{o.suite.name} {o.seconds:.0f}s" for o in outcomes)
    print(f"\nsuite times: {times}")
    print(f"{'FAILED' if broken else 'OK'}: suites {', '.join(broken) or 'all green'}")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 1 if broken else 0

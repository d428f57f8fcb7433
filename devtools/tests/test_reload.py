"""`make up`'s code reload: a real Supervisor, real children, real files changing."""

import io
import sys
import textwrap
import threading

import requests
import watchfiles

from shared_lib.testing.processes import free_port
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.catalog import REPO_ROOT, SERVICES
from ticketing_devtools.stack import code_roots
from ticketing_devtools.supervisor import Supervisor, _CodeFilter

# Comfortably over the watcher's debounce (RELOAD_STEP_MS, RELOAD_DEBOUNCE_MS).
CHANGE_SECONDS = 10

APP = """
from version import VERSION

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VERSION.encode()]
"""

WORKER = """
import signal, sys, time
from version import VERSION

def stop(signum, frame):
    print(f"{VERSION} stopped on SIGTERM", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print(f"{VERSION} started", flush=True)
while True:
    time.sleep(0.1)
"""


def _code(directory, app, version):
    directory.mkdir(exist_ok=True)
    (directory / "app.py").write_text(textwrap.dedent(app))
    (directory / "version.py").write_text(f"VERSION = {version!r}\n")
    return directory


def _gunicorn(supervisor, code, port):
    supervisor.start(
        "app-web",
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "app:application"],
        cwd=code,
        env={"PATH": "/usr/bin:/bin"},
        reload_on=(code,),
    )
    supervisor.wait_http("app-web", f"http://127.0.0.1:{port}/")


def test_a_changed_py_file_restarts_the_web_process_and_the_new_code_is_served(tmp_path):
    code = _code(tmp_path / "svc", APP, "one")
    port = free_port()
    log = io.StringIO()
    with Supervisor(log=log) as supervisor:
        _gunicorn(supervisor, code, port)
        before = supervisor.children[0].process.pid
        supervisor.reload_on_change()

        # when
        # The same size, and likely the same second, as the .pyc gunicorn just wrote.
        (code / "version.py").write_text("VERSION = 'two'\n")
        restarted = supervisor.reload_changed(wait=CHANGE_SECONDS)

        # then
        assert restarted == ["app-web"]
        supervisor.wait_http("app-web", f"http://127.0.0.1:{port}/")
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).text == "two"
        assert supervisor.children[0].process.pid != before
        assert [child.name for child in supervisor.children] == ["app-web"]
    reload_lines = [line for line in log.getvalue().splitlines() if line.startswith("reload")]
    assert len(reload_lines) == 1
    assert reload_lines[0].endswith("/svc/version.py changed; restarting app-web")


def test_only_py_files_outside_tests_reload_and_only_the_children_under_them(tmp_path):
    first = _code(tmp_path / "first", WORKER, "one")
    second = _code(tmp_path / "second", WORKER, "one")
    (first / "tests").mkdir()
    log = io.StringIO()
    with Supervisor(log=log) as supervisor:
        for name, code in (("first", first), ("second", second)):
            supervisor.start(name, [sys.executable, "app.py"], cwd=code, env={}, reload_on=(code,))
        supervisor.reload_on_change()
        first_pid = supervisor.children[0].process.pid

        (first / "notes.txt").write_text("not code")
        (first / "tests" / "test_app.py").write_text("def test_app(): pass\n")
        assert supervisor.reload_changed(wait=3) == []

        (second / "version.py").write_text("VERSION = 'version two'\n")
        assert supervisor.reload_changed(wait=CHANGE_SECONDS) == ["second"]
        wait_for(lambda: "version two started" in log.getvalue(), timeout=CHANGE_SECONDS)
        assert supervisor.children[0].process.pid == first_pid
    lines = log.getvalue().splitlines()
    # The worker was stopped as any shutdown stops it (SIGTERM), not killed mid-work.
    assert any(line.startswith("second") and "one stopped on SIGTERM" in line for line in lines)
    assert any(line.startswith("second") and "version two started" in line for line in lines)
    assert not any("did not stop in time" in line for line in lines)


def test_a_child_broken_by_a_change_waits_for_the_next_one_instead_of_stopping_all(tmp_path):
    code = _code(tmp_path / "svc", WORKER, "one")
    log = io.StringIO()
    exited = []
    with Supervisor(log=log) as supervisor:
        supervisor.start("worker", [sys.executable, "app.py"], cwd=code, env={}, reload_on=(code,))
        supervisor.reload_on_change()
        waiter = threading.Thread(target=lambda: exited.append(supervisor.wait_any()))
        waiter.start()

        # when: a typo, then its fix
        (code / "version.py").write_text("VERSION = 'two\n")
        wait_for(
            lambda: "exited (1); restarting on the next change" in log.getvalue(),
            timeout=CHANGE_SECONDS,
        )
        (code / "version.py").write_text("VERSION = 'three'\n")
        wait_for(lambda: "three started" in log.getvalue(), timeout=CHANGE_SECONDS)
        still_waiting = waiter.is_alive()

    waiter.join(timeout=5)
    assert still_waiting
    # wait_any never returned the broken child; it returned None once stop_all ran.
    assert exited == [None]


def test_a_change_to_the_shared_settings_restarts_every_service():
    shared_settings = REPO_ROOT / "shared_lib" / "src" / "shared_lib" / "settings"
    modules = sorted(path.name for path in shared_settings.glob("*.py"))

    assert {"base.py", "events.py", "logs.py"} <= set(modules)
    for name in modules:
        path = shared_settings / name
        assert _CodeFilter()(watchfiles.Change.modified, str(path))
        for service in SERVICES:
            assert any(path.is_relative_to(root) for root in code_roots(service)), service.name

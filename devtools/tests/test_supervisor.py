"""The Supervisor's waits and stops (shared_lib.testing.processes'): real children, one
error type (RuntimeError) whichever way a wait fails."""

import io
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest

from shared_lib.testing.processes import ServerThread, free_port
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.supervisor import Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM: only a SIGKILL stops it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True)"
    "; time.sleep(60)",
]


class _Unavailable(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"checks": {"database": "unreachable"}}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_child_that_exits_fails_the_wait_at_once_naming_it(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/readyz"
    with Supervisor(log=io.StringIO()) as supervisor:
        supervisor.start("web", [sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path, env={})
        started = time.monotonic()

        with pytest.raises(RuntimeError) as raised:
            supervisor.wait_http("web", url, timeout=30)

    assert str(raised.value) == f"web exited (3) while waiting for a 200 from {url}"
    assert time.monotonic() - started < 10


def test_a_wait_that_times_out_says_what_the_server_answered_last(tmp_path):
    with (
        ServerThread(_Unavailable) as server,
        Supervisor(log=io.StringIO()) as supervisor,
    ):
        supervisor.start("web", SLEEPER, cwd=tmp_path, env={})

        with pytest.raises(RuntimeError) as raised:
            supervisor.wait_http("web", f"{server.url}/readyz", timeout=0.5)

    assert str(raised.value) == (
        f"web: timed out after 0.5 s waiting for a 200 from {server.url}/readyz"
        ' (last: 503 {"checks": {"database": "unreachable"}})'
    )


def test_the_waits_fail_alike_for_a_port_and_a_file(tmp_path):
    port = free_port()
    with Supervisor(log=io.StringIO()) as supervisor:
        supervisor.start("worker", SLEEPER, cwd=tmp_path, env={})

        with pytest.raises(RuntimeError) as port_wait:
            supervisor.wait_tcp("worker", "127.0.0.1", port, timeout=0.2)
        with pytest.raises(RuntimeError) as file_wait:
            supervisor.wait_file("worker", tmp_path / "alive", timeout=0.2)

    assert str(port_wait.value) == (
        f"worker: timed out after 0.2 s waiting for a listener on 127.0.0.1:{port}"
    )
    assert str(file_wait.value) == (
        f"worker: timed out after 0.2 s waiting for {tmp_path / 'alive'}"
    )


def test_a_child_that_ignores_sigterm_is_killed_once_its_time_is_up(tmp_path):
    log = io.StringIO()
    supervisor = Supervisor(log=log)
    stubborn = supervisor.start("stubborn", STUBBORN, cwd=tmp_path, env={})
    polite = supervisor.start("polite", SLEEPER, cwd=tmp_path, env={})
    # It ignores SIGTERM only from the moment it says so.
    wait_for(lambda: "stubborn    | up" in log.getvalue(), timeout=10)

    supervisor.stop_all(timeout=1)

    assert (polite.returncode, stubborn.returncode) == (-15, -9)
    lines = log.getvalue().splitlines()
    assert [line for line in lines if "did not stop in time" in line] == [
        "stubborn    | did not stop in time; killed (SIGKILL)"
    ]

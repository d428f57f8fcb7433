"""Processes that tests and local tools start and stop: gunicorn, Celery workers, fakes.

    web = gunicorn("tests.wsgi", cwd=project_dir, env=env, log_path=tmp_path / "web.log")
    web.start().wait_http("/healthz")    # 200, or RuntimeError with the end of its log
    web.stop()                           # SIGTERM to its group; SIGKILL after a timeout

Each process runs in a process group of its own, so stopping it stops its children too
(gunicorn's workers, a Celery pool), and its output goes to a log file: a pipe that the
starting process had to read would cost the measured servers CPU, and fill and block
when nobody reads it. A wait fails at once, with that log, when the process exits
instead of getting ready. The command lines are built here once (gunicorn_command,
celery_worker_command), whoever supervises the process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Self, TypeVar

from shared_lib.testing.waiting import wait_for

T = TypeVar("T")

# Long enough for a cold Django start (imports, checks, the first connection) on a busy
# CI machine; a process that takes longer is broken.
START_TIMEOUT_SECONDS = 60.0
# gunicorn finishes in-flight requests on SIGTERM (its graceful timeout is 30 s, but
# these servers hold none that long); a Celery worker finishes its current delivery.
STOP_TIMEOUT_SECONDS = 20.0
# How much of a log a failure quotes: the traceback that explains it, not the whole run.
LOG_TAIL_CHARS = 4000


def free_port() -> int:
    """A local TCP port nothing listens on: one the kernel picks, bound, then released
    for the caller to hand to a server (which must bind it before anyone else does)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], output: IO[bytes] | int
) -> subprocess.Popen[bytes]:
    """`argv` in a session (and process group) of its own, with no stdin, its stdout and
    stderr to `output` (a file, or subprocess.PIPE for a caller that reads it)."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Send `signum` to the process's whole group (a master and its workers); nothing
    when the group is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def stop_group(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_SECONDS) -> bool:
    """SIGTERM the group and wait; SIGKILL it when the process outlives `timeout`. True
    when it stopped on SIGTERM."""
    if process.poll() is not None:
        return True
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        signal_group(process, signal.SIGKILL)
        process.wait()
        return False


def gunicorn_command(
    wsgi: str, *, port: int, config_module: str = "shared_lib.gunicorn_conf"
) -> list[str]:
    """gunicorn serving the WSGI module `wsgi` on 127.0.0.1:`port` with the production
    configuration (`config_module`, shared_lib.gunicorn_conf for every API service)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        f"python:{config_module}",
        "--bind",
        f"127.0.0.1:{port}",
        wsgi,
    ]


def celery_worker_command(
    app: str, *, hostname: str, pool: Sequence[str], extra: Sequence[str] = ()
) -> list[str]:
    """A Celery worker of `app` named `hostname` (unique per live worker: two workers
    named alike fight over one remote-control queue, and the second dies with
    RESOURCE_LOCKED). Gossip and mingle are off: the workers never coordinate, and both
    would only slow the start down."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        *pool,
        "--hostname",
        hostname,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        *extra,
    ]


class Process:
    """One command in a process group of its own, its output appended to `log_path`."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        name: str = "",
        port: int | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.name = name or log_path.stem
        self.port = port  # where it serves, if it does (url, wait_http)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Process:
        with self.log_path.open("ab") as log:
            self.process = spawn(self.argv, cwd=self.cwd, env=self.env, output=log)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARS:]

    def wait_until(
        self, condition: Callable[[], T], *, timeout: float = START_TIMEOUT_SECONDS, what: str
    ) -> T:
        """wait_for(condition), failing at once when the process exits meanwhile; either
        failure is a RuntimeError that quotes the end of its log."""

        def alive_and(check: Callable[[], T]) -> T:
            if not self.running:
                code = self.process.returncode if self.process is not None else None
                tail = self.log_tail()
                raise RuntimeError(f"{self.name} exited ({code}) while waiting for {what}:\n{tail}")
            return check()

        try:
            return wait_for(lambda: alive_and(condition), timeout=timeout, what=what)
        except AssertionError as exc:
            raise RuntimeError(f"{self.name}: {exc}:\n{self.log_tail()}") from None

    def wait_http(self, path: str = "/", *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until GET `path` answers 200."""
        self.wait_until(
            lambda: _http_status(self.url + path) == 200,
            timeout=timeout,
            what=f"a 200 from {self.url}{path}",
        )

    def wait_listening(self, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until something accepts connections on its port."""
        self.wait_until(
            lambda: is_listening("127.0.0.1", self.port or 0),
            timeout=timeout,
            what=f"a listener on port {self.port}",
        )

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown (what a crash or an OOM kill does)."""
        if self.process is not None:
            signal_group(self.process, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL what outlives `timeout`."""
        if self.process is not None:
            stop_group(self.process, timeout)

    def __enter__(self) -> Process:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gunicorn(
    wsgi: str,
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    config_module: str = "shared_lib.gunicorn_conf",
) -> Process:
    """gunicorn (gunicorn_command) on a free port, not started yet."""
    port = free_port()
    return Process(
        gunicorn_command(wsgi, port=port, config_module=config_module),
        cwd=cwd,
        env=env,
        log_path=log_path,
        port=port,
    )


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (our own server)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):  # not listening yet, or reset while booting
        return None


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class ServerThread:
    """An http.server on 127.0.0.1 (a port the kernel picks) answering from a daemon
    thread: the base of in-process fakes a test points a process at.

        fake = ServerThread(Handler).start()    # fake.url == "http://127.0.0.1:<port>"
        fake.stop()                             # or: with ServerThread(Handler) as fake:
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, name: str | None = None) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A request still being handled (a client that hung) never holds up stop().
        self._server.daemon_threads = True
        # A short poll, so stop() (shutdown) returns at once rather than after 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name=name,
            daemon=True,
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

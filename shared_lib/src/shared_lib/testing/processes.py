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

The waits and stops also take a bare Popen (wait_while_running, wait_http,
wait_listening, stop_groups), for a supervisor that starts its processes itself
(ticketing_devtools.supervisor): one error type (RuntimeError) and wording for all.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Self, TypeVar

from shared_lib.testing.waiting import wait_for

T = TypeVar("T")

# Long enough for a cold Django start (imports, checks, the first connection) on a CI
# machine running two suites at half its usual speed (a worker once took over 30 s
# there); a process that takes longer is broken.
START_TIMEOUT_SECONDS = 120.0
# gunicorn finishes in-flight requests on SIGTERM (its graceful timeout is 30 s, but
# these servers hold none that long); a Celery worker finishes its current delivery.
STOP_TIMEOUT_SECONDS = 20.0
# How much of a log a failure quotes: the traceback that explains it, not the whole run.
LOG_TAIL_CHARS = 4000


# Ports handed to servers come from below Linux's ephemeral range (32768-60999 by
# default), where the kernel picks the source ports of outgoing connections: a port handed
# out there could be taken by a connection to PostgreSQL or RabbitMQ before its server
# binds it. Chosen at random, so test runs beside each other rarely pick alike.
_PORTS = range(20000, 32768)
_handed_out: set[int] = set()
_random = random.SystemRandom()


def free_port() -> int:
    """A local TCP port nothing listens on, bound then released for the caller to hand to
    a server (which must bind it before anyone else does); never the same twice in one
    process."""
    for _ in range(100):
        port = _random.choice(_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # that range is busy: the kernel's choice
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


def group_running(process: subprocess.Popen[bytes]) -> bool:
    """Whether any process of the group is left (a worker can outlive its master)."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # there, as another user (nginx's workers, when it drops root)
        return True
    return True


def stop_groups(
    processes: Sequence[subprocess.Popen[bytes]],
    timeout: float = STOP_TIMEOUT_SECONDS,
    *,
    signum: int = signal.SIGTERM,
) -> list[subprocess.Popen[bytes]]:
    """Send `signum` (a clean shutdown) to every group, in the order given, before waiting
    on any, so they shut down side by side; then SIGKILL the group of each process that
    outlives `timeout` (one deadline for all). Returns those killed."""
    for process in processes:
        if process.poll() is None:
            signal_group(process, signum)
    deadline = time.monotonic() + timeout
    killed = []
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)  # the whole group: workers too
            process.wait()
            killed.append(process)
    return killed


def stop_group(
    process: subprocess.Popen[bytes],
    timeout: float = STOP_TIMEOUT_SECONDS,
    *,
    signum: int = signal.SIGTERM,
) -> bool:
    """stop_groups of one process: True when it stopped on `signum` (SIGTERM), False when
    it outlived `timeout` and was killed."""
    return not stop_groups([process], timeout, signum=signum)


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

    def _started(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.process

    def wait_until(
        self, condition: Callable[[], T], *, timeout: float = START_TIMEOUT_SECONDS, what: str
    ) -> T:
        """wait_while_running(condition): either failure is a RuntimeError that quotes the
        end of its log."""
        return wait_while_running(
            self._started(),
            condition,
            name=self.name,
            what=what,
            timeout=timeout,
            log_tail=self.log_tail,
        )

    def wait_http(self, path: str = "/", *, timeout: float = START_TIMEOUT_SECONDS) -> bytes:
        """Until GET `path` answers 200; that answer's body."""
        return wait_http(
            self._started(),
            self.url + path,
            name=self.name,
            timeout=timeout,
            log_tail=self.log_tail,
        )

    def wait_listening(self, *, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Until something accepts connections on its port."""
        wait_listening(
            self._started(),
            "127.0.0.1",
            self.port or 0,
            name=self.name,
            timeout=timeout,
            log_tail=self.log_tail,
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


def _no_log() -> str:
    return ""


def _with_log(message: str, tail: str) -> str:
    return f"{message}:\n{tail}" if tail else message


def wait_while_running(
    process: subprocess.Popen[bytes],
    condition: Callable[[], T],
    *,
    name: str,
    what: str,
    timeout: float = START_TIMEOUT_SECONDS,
    log_tail: Callable[[], str] = _no_log,
    last: Callable[[], str] = _no_log,
) -> T:
    """wait_for(condition) while `process` (called `name`) runs. A RuntimeError either way
    it fails: at once when the process exits meanwhile, or when `timeout` passes, then
    with `last()` (what the condition saw last, if it says); each quotes `log_tail()`,
    the end of the process's log, when there is one."""

    def running_and() -> T:
        if process.poll() is not None:
            exited = f"{name} exited ({process.returncode}) while waiting for {what}"
            raise RuntimeError(_with_log(exited, log_tail()))
        return condition()

    try:
        return wait_for(running_and, timeout=timeout, what=what)
    except AssertionError as exc:
        seen = last()
        message = f"{name}: {exc}" + (f" (last: {seen})" if seen else "")
        raise RuntimeError(_with_log(message, log_tail())) from None


def wait_http(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    name: str,
    timeout: float = START_TIMEOUT_SECONDS,
    log_tail: Callable[[], str] = _no_log,
) -> bytes:
    """wait_while_running until GET `url` answers 200; that answer's body. A timeout says
    the last answer (its status and the start of its body, or why none came)."""
    last: list[str] = []

    def answered() -> list[bytes] | None:
        status, body = _http_get(url)
        if status == 200:
            return [body]  # in a list: an empty body is an answer too
        last[:] = [f"{status} {body[:200].decode(errors='replace')}" if status else body.decode()]
        return None

    return wait_while_running(
        process,
        answered,
        name=name,
        what=f"a 200 from {url}",
        timeout=timeout,
        log_tail=log_tail,
        last=lambda: last[0] if last else "",
    )[0]


def wait_listening(
    process: subprocess.Popen[bytes],
    host: str,
    port: int,
    *,
    name: str,
    timeout: float = START_TIMEOUT_SECONDS,
    log_tail: Callable[[], str] = _no_log,
) -> None:
    """wait_while_running until something accepts connections on host:port."""
    wait_while_running(
        process,
        lambda: is_listening(host, port),
        name=name,
        what=f"a listener on {host}:{port}",
        timeout=timeout,
        log_tail=log_tail,
    )


# Per attempt: a server that is up answers a health check within this; one that does not
# is tried again until the wait's own timeout.
HTTP_ATTEMPT_TIMEOUT_SECONDS = 5


def _http_get(url: str) -> tuple[int | None, bytes]:
    """GET `url`: its status and body, or None and why nothing answered."""
    timeout = HTTP_ATTEMPT_TIMEOUT_SECONDS
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our server)
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    # Not listening yet, or reset or cut short while booting.
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, repr(reason).encode()


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

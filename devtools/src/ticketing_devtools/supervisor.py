"""Run several processes as one: prefixed logs, readiness waits, clean shutdown.

    with Supervisor() as sup:
        sup.start("auth-web", ["gunicorn", ...], cwd=..., env=...)
        sup.wait_http("auth-web", "http://127.0.0.1:8001/readyz")
        sup.wait_any()          # returns when a child exits (or Ctrl-C)

Each child gets its own process group, so stopping it stops its workers too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

_COLORS = itertools.cycle(["36", "33", "35", "32", "34", "91", "96", "93"])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    color: str
    pump: threading.Thread | None = field(default=None)


class Supervisor:
    def __init__(self, *, log: IO[str] | None = None, color: bool | None = None) -> None:
        self.log = log or sys.stdout
        self.color = self.log.isatty() if color is None else color
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._width = 12

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def say(self, name: str, line: str, color: str = "0") -> None:
        label = f"{name:<{self._width}}|"
        if self.color:
            label = f"\x1b[{color}m{label}\x1b[0m"
        with self._lock:
            self.log.write(f"{label} {line.rstrip()}\n")
            self.log.flush()

    def start(
        self, name: str, argv: list[str], *, cwd: Path, env: Mapping[str, str]
    ) -> subprocess.Popen[bytes]:
        self._width = max(self._width, len(name))
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        child = Child(name=name, process=process, color=next(_COLORS))
        child.pump = threading.Thread(target=self._pump, args=(child,), daemon=True)
        child.pump.start()
        self.children.append(child)
        return process

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        for raw in child.process.stdout:
            self.say(child.name, raw.decode(errors="replace"), child.color)

    def _child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def wait_http(self, name: str, url: str, *, timeout: float = 60.0) -> requests.Response:
        """Until `url` answers 200 (returned); fails early, naming the child, if it exits."""
        child = self._child(name)
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {child.process.returncode} while starting")
            try:
                response = requests.get(url, timeout=2)
                if response.status_code == 200:
                    return response
                last = f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready at {url} after {timeout:.0f}s (last: {last})")

    def wait_tcp(self, name: str, host: str, port: int, *, timeout: float = 30.0) -> None:
        """Until something accepts connections on host:port; fails early if the child exits."""
        child = self._child(name)
        deadline = time.monotonic() + timeout
        while True:
            if child.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {child.process.returncode} while starting")
            try:
                with socket.create_connection((host, port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} not listening on {host}:{port}") from None
                time.sleep(0.1)

    def wait_file(self, name: str, path: Path, *, timeout: float = 60.0) -> None:
        """Until `path` exists (a worker's heartbeat); fails early if the child exits."""
        child = self._child(name)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if child.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {child.process.returncode} while starting")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout:.0f}s (no {path})")
            time.sleep(0.2)

    def wait_any(self) -> Child | None:
        """Block until some child exits (return it) or our own parent is gone (None).

        Checking the parent matters when `make up` is killed outright: its SIGKILL is not
        forwarded, and the stack must not linger as orphans holding the ports.
        """
        parent = os.getppid()
        while True:
            for child in self.children:
                if child.process.poll() is not None:
                    return child
            if os.getppid() != parent:
                return None
            time.sleep(0.3)

    def kill(self, name: str) -> None:
        """SIGKILL one child's whole process group (fault tests) and forget it."""
        child = self._child(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGKILL)
        child.process.wait()
        if child.pump is not None:
            child.pump.join(timeout=2)
        self.children.remove(child)
        self.say(name, "killed (SIGKILL)")

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every group (newest first), then SIGKILL what outlives `timeout`."""
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(child.name, "did not stop in time; killing")
                # The whole group: a worker can outlive its master.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            if child.pump is not None:
                child.pump.join(timeout=2)
        self.children.clear()

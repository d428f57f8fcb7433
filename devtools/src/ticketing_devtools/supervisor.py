"""Run several processes as one: prefixed logs, readiness waits, clean shutdown.

    with Supervisor() as sup:
        sup.start("auth-web", ["gunicorn", ...], cwd=..., env=...)
        sup.wait_http("auth-web", "http://127.0.0.1:8001/readyz")   # its body
        sup.wait_any()          # returns when a child exits (or Ctrl-C)

Each child gets its own process group, so stopping it stops its workers too. Waits and
stops are shared_lib.testing.processes' (a RuntimeError when a child exits while being
waited on, or time runs out).

`make up` also calls sup.reload_on_change(): a child started with `reload_on` roots is
restarted (SIGTERM, then the same command afresh) when a .py file under them changes, and
one that exits meanwhile (a typo) waits for the next change instead of stopping the rest.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import watchfiles

from shared_lib.testing import processes
from shared_lib.testing.processes import signal_group, spawn, stop_groups

_COLORS = itertools.cycle(["36", "33", "35", "32", "34", "91", "96", "93"])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    color: str
    pump: threading.Thread | None = field(default=None)
    argv: list[str] = field(default_factory=list)
    cwd: Path = Path()
    env: dict[str, str] = field(default_factory=dict)
    # Restarted when a .py file under one of these changes (only after reload_on_change).
    reload_on: tuple[Path, ...] = ()


# A save is often several writes (editor, then a format-on-save): changes closer together
# than STEP are one reload, and a stream of them is cut at DEBOUNCE (watchfiles' default).
RELOAD_STEP_MS = 300
RELOAD_DEBOUNCE_MS = 1_600
# The watcher wakes this often with no change, so it notices a stop without a change.
RELOAD_IDLE_MS = 500


class _CodeFilter(watchfiles.PythonFilter):
    # Tests are never imported by the running processes.
    ignore_dirs = (*watchfiles.PythonFilter.ignore_dirs, "tests")


class Supervisor:
    def __init__(self, *, log: IO[str] | None = None, color: bool | None = None) -> None:
        self.log = log or sys.stdout
        self.color = self.log.isatty() if color is None else color
        self.children: list[Child] = []
        self._lock = threading.Lock()
        self._width = 12
        self._changes: queue.Queue[set[Path]] | None = None
        self._stop_watching = threading.Event()
        self._stops = 0  # stop_all calls so far: a wait_any elsewhere returns on one
        # Children that exited while reloading is on, waiting for a change to their code.
        self._broken: set[str] = set()

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
        self,
        name: str,
        argv: list[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        reload_on: Sequence[Path] = (),
    ) -> subprocess.Popen[bytes]:
        self._width = max(self._width, len(name))
        child = Child(
            name=name,
            process=self._spawn(argv, cwd, env),
            color=next(_COLORS),
            argv=list(argv),
            cwd=cwd,
            env=dict(env),
            reload_on=tuple(reload_on),
        )
        self._pump_output(child)
        self.children.append(child)
        return child.process

    @staticmethod
    def _spawn(argv: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        # Piped: every child's lines go to one log, each with its name (_pump).
        return spawn(argv, cwd=cwd, env=env, output=subprocess.PIPE)

    def _pump_output(self, child: Child) -> None:
        child.pump = threading.Thread(target=self._pump, args=(child, child.process), daemon=True)
        child.pump.start()

    def _pump(self, child: Child, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.say(child.name, raw.decode(errors="replace"), child.color)

    def _child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def wait_http(self, name: str, url: str, *, timeout: float = 60.0) -> bytes:
        """Until `url` answers 200 (its body returned); fails early, naming the child, if
        it exits."""
        return processes.wait_http(self._child(name).process, url, name=name, timeout=timeout)

    def wait_tcp(self, name: str, host: str, port: int, *, timeout: float = 30.0) -> None:
        """Until something accepts connections on host:port; fails early if the child exits."""
        processes.wait_listening(self._child(name).process, host, port, name=name, timeout=timeout)

    def wait_file(self, name: str, path: Path, *, timeout: float = 60.0) -> None:
        """Until `path` exists (a worker's heartbeat); fails early if the child exits."""
        processes.wait_while_running(
            self._child(name).process, path.exists, name=name, what=f"{path}", timeout=timeout
        )

    def wait_any(self) -> Child | None:
        """Block until some child exits (return it), or our own parent is gone or stop_all
        was called meanwhile (None).

        Checking the parent matters when `make up` is killed outright: its SIGKILL is not
        forwarded, and the stack must not linger as orphans holding the ports. While
        reloading is on, this is also where changed code restarts children.
        """
        parent = os.getppid()
        stops = self._stops
        while True:
            for child in self.children:
                if child.process.poll() is None or child.name in self._broken:
                    continue
                if self._changes is None or not child.reload_on:
                    return child
                # As runserver does: a typo must not take the whole system down.
                self._broken.add(child.name)
                self.say(
                    child.name,
                    f"exited ({child.process.returncode}); restarting on the next change",
                )
            if os.getppid() != parent or self._stops != stops:
                return None
            self.reload_changed(wait=0.3)

    def reload_on_change(self) -> bool:
        """Watch the `reload_on` roots of the children started so far; changes are applied
        by wait_any (or reload_changed). Returns once the watcher sees changes: True, or
        False (said in the log) when it cannot watch, and everything runs on without it."""
        roots = sorted({root for child in self.children for root in child.reload_on})
        if not roots or self._changes is not None:
            return self._changes is not None
        changes: queue.Queue[set[Path]] = queue.Queue()
        watching = threading.Event()
        failed: list[BaseException] = []
        self._stop_watching = stop = threading.Event()

        def watch() -> None:
            try:
                for batch in watchfiles.watch(
                    *roots,
                    watch_filter=_CodeFilter(),
                    debounce=RELOAD_DEBOUNCE_MS,
                    step=RELOAD_STEP_MS,
                    rust_timeout=RELOAD_IDLE_MS,
                    yield_on_timeout=True,
                    stop_event=stop,
                    raise_interrupt=False,
                ):
                    # The first (empty) batch comes once the watches are in place.
                    watching.set()
                    if batch:
                        changes.put({Path(path) for _, path in batch})
            except Exception as exc:  # e.g. out of inotify watches: run on, unwatched
                failed.append(exc)
                watching.set()

        threading.Thread(target=watch, name="reload-watcher", daemon=True).start()
        watching.wait(timeout=30)
        if failed or not watching.is_set():
            reason = failed[0] if failed else "no answer in 30 s"
            self.say("reload", f"not watching code ({reason}); restart to run a change")
            stop.set()
            return False
        self._changes = changes
        return True

    def reload_changed(self, *, wait: float = 0.0) -> list[str]:
        """Restart the children whose code changed, waiting up to `wait` seconds for a
        change; returns their names."""
        if self._changes is None:
            time.sleep(wait)
            return []
        try:
            changed = self._changes.get(timeout=wait) if wait else self._changes.get_nowait()
        except queue.Empty:
            return []
        # Changes that came in meanwhile (a second save) are part of the same restart.
        while not self._changes.empty():
            changed |= self._changes.get_nowait()
        affected = [
            child
            for child in self.children
            if any(path.is_relative_to(root) for path in changed for root in child.reload_on)
        ]
        if not affected:
            return []
        first = min(changed)
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        names = [child.name for child in affected]
        self.say("reload", f"{_shown(first)}{more} changed; restarting {', '.join(names)}")
        self._stop(affected)
        for path in changed:
            # Python trusts a .pyc whose source mtime (whole seconds) and size match: an
            # edit that keeps the size (a formatter's quotes) within the second of the
            # last one would otherwise run the old code.
            for stale in path.parent.glob(f"__pycache__/{path.stem}.*.pyc"):
                stale.unlink(missing_ok=True)
        for child in affected:
            child.process = self._spawn(child.argv, child.cwd, child.env)
            self._pump_output(child)
            self._broken.discard(child.name)
        return names

    def kill(self, name: str) -> None:
        """SIGKILL one child's whole process group (fault tests) and forget it."""
        child = self._child(name)
        signal_group(child.process, signal.SIGKILL)
        child.process.wait()
        if child.pump is not None:
            child.pump.join(timeout=2)
        self.children.remove(child)
        self.say(name, "killed (SIGKILL)")

    def _stop(self, children: list[Child], timeout: float = 15.0) -> None:
        """SIGTERM each group (in the order given), then SIGKILL what outlives `timeout`."""
        killed = stop_groups([child.process for child in children], timeout)
        for child in children:
            if child.process in killed:
                self.say(child.name, "did not stop in time; killed (SIGKILL)")
            if child.pump is not None:
                child.pump.join(timeout=2)

    def stop_all(self, timeout: float = 15.0) -> None:
        """SIGTERM every group (newest first), then SIGKILL what outlives `timeout`."""
        self._stops += 1
        self._stop_watching.set()
        self._changes = None
        self._stop(list(reversed(self.children)), timeout)
        self.children.clear()
        self._broken.clear()


def _shown(path: Path) -> str:
    """A changed file as a person finds it: relative to the working directory if inside."""
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)

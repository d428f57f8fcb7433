"""What every benchmark here shares: progress lines, loopback checks, percentiles, and
the throw-away names a benchmark's own system runs under.

    from _common import progress, require_loopback, percentile, create_names
    require_loopback(os.environ["RABBITMQ_URL"], "RabbitMQ")
    progress("broker ceiling"); p99 = percentile(sorted(samples), 99)

(The benchmarks run as scripts, `python bench/<name>.py`, so bench/ is on sys.path.)
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from ticketing_devtools.backing import admin_url, ensure_backing_servers, rabbitmq_url
from ticketing_devtools.devkeys import DevSecrets, ensure_dev_secrets
from ticketing_devtools.provision import throwaway_databases

# Load, soak and benchmark traffic goes to this machine only.
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def require_loopback(url: str, what: str) -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS:
        raise SystemExit(f"{what} must be on loopback for this benchmark, not {host!r}")


@dataclass(frozen=True)
class Names:
    """Where one benchmark's own system lives: databases, vhost, work directory."""

    suffix: str
    db_prefix: str
    vhost: str
    vhost_url: str
    workdir: Path
    dev: DevSecrets


def create_names(stack: ExitStack, bench: str) -> Names:
    """Fresh names for `bench`'s system; `stack` removes the work directory, the vhost and
    the databases on exit (dropped even when Stack.start, which creates them, fails)."""
    dev = ensure_dev_secrets()
    require_loopback(admin_url(), "PG_ADMIN_URL")
    require_loopback(rabbitmq_url(), "RABBITMQ_URL")
    ensure_backing_servers()
    suffix = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"ticketing-bench-{bench}-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    db_prefix = stack.enter_context(throwaway_databases(f"ticketing_bench_{bench}_{suffix}"))
    vhost = stack.enter_context(throwaway_vhost(rabbitmq_url(), f"ticketing-bench-{bench}"))
    return Names(suffix, db_prefix, vhost, broker_url(rabbitmq_url(), vhost=vhost), workdir, dev)


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def busy_ticks() -> int:
    """Ticks every core spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def process_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (process group, CPU ticks, owner uid, command line), from /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            uid = entry.stat().st_uid
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[2]), int(fields[11]) + int(fields[12]), uid, cmdline)
    return table


OTHER_CPU = "other (not this run)"


class CpuMeter:
    """CPU seconds per category of process between start() and measure(); a benchmark
    subclasses it with its own category(). What ended in between, or cannot be seen per
    process, is counted as the rest of the machine (OTHER_CPU)."""

    def __init__(self) -> None:
        self._before: dict[int, tuple[int, int, int, str]] = {}
        self._busy = 0
        self._started = 0.0

    def start(self) -> None:
        self._before = process_table()
        self._busy = busy_ticks()
        self._started = time.monotonic()

    def category(self, pid: int, group: int, uid: int, cmdline: str) -> str:
        raise NotImplementedError

    def measure(
        self, known: dict[str, float] | None = None
    ) -> tuple[float, float, dict[str, float]]:
        """(wall seconds, the machine's busy CPU seconds, CPU seconds per category);
        `known` adds seconds measured elsewhere (a process that has exited)."""
        wall = time.monotonic() - self._started
        after = process_table()
        busy = (busy_ticks() - self._busy) / CLOCK_TICKS
        used: dict[str, float] = dict(known or {})
        for pid, (group, ticks, uid, cmdline) in after.items():
            before = self._before.get(pid)
            seconds = (ticks - (before[1] if before else 0)) / CLOCK_TICKS
            if seconds > 0:
                category = self.category(pid, group, uid, cmdline)
                used[category] = used.get(category, 0.0) + seconds
        seen = sum(seconds for name, seconds in used.items() if name != OTHER_CPU)
        used[OTHER_CPU] = max(0.0, busy - seen)
        return wall, busy, used

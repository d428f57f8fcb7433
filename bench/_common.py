"""What every benchmark here shares: its throw-away names and databases, the system it
starts, the machine it ran on, percentiles, CPU accounting, its command line and output.

    from _common import argument_parser, create_names, main_of, Percentiles, progress
    names = create_names(stack, "expiry")          # vhost, work directory; gone on exit
    progress("broker ceiling"); late = Percentiles.of(seconds)

(The benchmarks run as scripts, `python bench/<name>.py`, so bench/ is on sys.path.)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import pwd
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import psycopg

from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from shared_lib.testing.waiting import wait_for
from ticketing_devtools.backing import (
    admin_url,
    ensure_backing_servers,
    is_loopback,
    rabbitmq_url,
)
from ticketing_devtools.catalog import service
from ticketing_devtools.devkeys import DevSecrets, ensure_dev_secrets
from ticketing_devtools.provision import (
    database_url,
    drop_database,
    ensure_database,
    throwaway_databases,
)

if TYPE_CHECKING:
    from ticketing_devtools.stack import Stack


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def started_at() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def sleep_until(instant: float) -> None:
    """Until the wall-clock `instant` (time.time())."""
    delay = instant - time.time()
    if delay > 0:
        time.sleep(delay)


# ---------------------------------------------------------------------------------------
# Names, databases and the system a benchmark runs on
# ---------------------------------------------------------------------------------------


def require_loopback(url: str, what: str) -> None:
    # Load, soak and benchmark traffic goes to this machine only.
    host = urlsplit(url).hostname or ""
    if not is_loopback(host):
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

    @property
    def stack_log(self) -> Path:
        return self.workdir / "stack.log"

    def admin_db_url(self, service_name: str) -> str:
        """A service's database of this run (start_stack's), as PostgreSQL's admin."""
        return admin_url(service(service_name).database(self.db_prefix))

    def query(self, service_name: str, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One statement's rows from a service's database of this run."""
        with psycopg.connect(self.admin_db_url(service_name), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


def create_names(stack: ExitStack, bench: str) -> Names:
    """Fresh names for `bench`'s system, its vhost and work directory; `stack` removes
    them on exit."""
    dev = ensure_dev_secrets()
    require_loopback(admin_url(), "PG_ADMIN_URL")
    require_loopback(rabbitmq_url(), "RABBITMQ_URL")
    ensure_backing_servers()
    suffix = uuid.uuid4().hex[:8]
    workdir = Path(tempfile.mkdtemp(prefix=f"ticketing-bench-{bench}-"))
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    vhost = stack.enter_context(throwaway_vhost(rabbitmq_url(), f"ticketing-bench-{bench}"))
    db_prefix = f"ticketing_bench_{bench}_{suffix}"
    return Names(suffix, db_prefix, vhost, broker_url(rabbitmq_url(), vhost=vhost), workdir, dev)


def own_databases(stack: ExitStack, names: Names, role: str, keys: Iterable[str]) -> dict[str, str]:
    """A database `<db_prefix>_<key>` per key, owned by `role` (with a fresh password: a
    run stores none); key -> its URL. `stack` drops them on exit."""
    password = secrets.token_urlsafe(24)
    urls = {}
    for key in keys:
        database = f"{names.db_prefix}_{key}"
        stack.callback(drop_database, admin_url(), database=database)
        ensure_database(admin_url(), database=database, role=role, password=password)
        urls[key] = database_url(database=database, role=role, password=password)
    return urls


def start_stack(stack: ExitStack, names: Names, extra_env: dict[str, str]) -> Stack:
    """devtools' Stack (as `make up` runs it) on this run's databases and vhost, its log in
    names.stack_log; `stack` stops it and drops its databases on exit (also when starting
    it failed halfway)."""
    # Not at import: bench/locustfile.py imports this module inside Locust's process.
    from ticketing_devtools.stack import Stack

    stack.enter_context(throwaway_databases(names.db_prefix))
    log = stack.enter_context(names.stack_log.open("w"))
    system = Stack(
        gateway_port=0,
        db_prefix=names.db_prefix,
        log=log,
        run_dir=names.workdir / "run",
        extra_env={"RABBITMQ_URL": names.vhost_url, **extra_env},
    )
    try:
        system.start()  # stops what it started if it fails
    finally:
        log.flush()
    stack.callback(system.stop)
    return system


def wait_replicated(names: Names, ticket_ids: list[str], *, timeout: float) -> None:
    """Until every ticket is in orders_svc's replica (its ticket.created handled)."""
    with psycopg.connect(names.admin_db_url("orders"), autocommit=True) as conn:

        def replicated() -> bool:
            sql = "SELECT count(*) FROM orders_ticketreplica WHERE id = ANY(%s::uuid[])"
            return conn.execute(sql, [ticket_ids]).fetchone()[0] >= len(ticket_ids)

        wait_for(
            replicated,
            timeout=timeout,
            interval=0.1,
            what=f"{len(ticket_ids)} tickets in orders_svc's replica",
        )


def ready_messages(url: str, queues: Iterable[str]) -> dict[str, int]:
    """Ready messages per queue over AMQP (shared_lib.events.broker.ready_counts; a queue
    not declared yet holds 0): not rabbitmqctl, whose Erlang VM would take a second of CPU
    per look in windows where the CPU is what is measured."""
    from kombu import Connection

    from shared_lib.events.broker import ready_counts

    with Connection(url) as conn:
        return {name: count or 0 for name, count in ready_counts(conn, queues).items()}


def machine_summary(db_url: str, amqp_url: str | None = None, **versions: str) -> dict[str, Any]:
    """The machine, its load and the servers' versions; `versions` adds packages
    (name=version), shown in the summary line too."""
    with psycopg.connect(db_url) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    with Path("/proc/meminfo").open() as meminfo:
        total_kib = int(next(line for line in meminfo if line.startswith("MemTotal")).split()[1])
    machine: dict[str, Any] = {
        "loadavg_1min_start": os.getloadavg()[0],
        "cores": os.cpu_count() or 0,
        "ram_gib": round(total_kib / 2**20, 1),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "postgres": pg_version,
        "synchronous_commit": sync_commit,
    }
    shown = [
        f"{machine['cores']} cores, {machine['ram_gib']:.0f} GiB RAM, {machine['arch']}",
        f"Python {machine['python']}",
        f"PostgreSQL {pg_version} (synchronous_commit={sync_commit})",
    ]
    if amqp_url is not None:
        from kombu import Connection

        with Connection(amqp_url) as conn:
            conn.connect()
            machine["rabbitmq"] = conn.connection.server_properties.get("version", "?")
        shown.append(f"RabbitMQ {machine['rabbitmq']}")
    machine.update(versions)
    shown += [f"{name} {version}" for name, version in versions.items()]
    machine["summary"] = ", ".join(shown)
    return machine


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Percentiles:
    p50_ms: float
    p99_ms: float
    max_ms: float
    min_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Percentiles:
        """From durations in seconds; NaN (null in the JSON) without any."""
        ordered = sorted(seconds)
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        return cls(
            p50_ms=percentile(ordered, 50) * 1000,
            p99_ms=percentile(ordered, 99) * 1000,
            max_ms=ordered[-1] * 1000,
            min_ms=ordered[0] * 1000,
            samples=len(ordered),
        )


def _finite(value: Any) -> Any:
    """NaN (a figure without samples) as null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path | None, figures: dict[str, Any]) -> None:
    """`--json PATH`: the figures, when asked for."""
    if path is not None:
        path.write_text(json.dumps(_finite(figures), indent=2) + "\n")


def spread(data: dict[str, Any], key: str, names: dict[str, str]) -> dict[str, Any]:
    """`data` with the dict at `key` (None: not measured) spread in its place: those of its
    items `names` names, under those names. Figures grouped in code keep their flat,
    documented JSON keys."""
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if name == key:
            group = (value or {}).items()
            flat.update((names[item], figure) for item, figure in group if item in names)
        else:
            flat[name] = value
    return flat


class Figures(Protocol):
    """A bench's results, as report() takes them."""

    def as_json(self) -> dict[str, Any]: ...


F = TypeVar("F", bound=Figures)


def report(results: F, print_table: Callable[[F], None], json_path: Path | None) -> F:
    """The end of a run: its table printed, its figures written (`--json`), and returned."""
    print_table(results)
    write_json(json_path, results.as_json())
    return results


# ---------------------------------------------------------------------------------------
# CPU: /proc around a window
# ---------------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
OTHER_CPU = "other (not this run)"
# Other processes using more than this many cores while a figure is measured get a
# warning: the figure then says more about the machine than the code.
NOISY_CORES = 0.25
POSTGRES_BACKENDS = "postgres backends (this run)"
POSTGRES_SERVER = "postgres server (wal, checkpoints)"
RABBITMQ_CPU = "rabbitmq"


def busy_ticks() -> int:
    """Ticks every core spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return user + nice + system + irq + softirq + steal


def _group_and_ticks(stat: str) -> tuple[int, int]:
    """A /proc/<pid>/stat line's process group and user + system CPU ticks (all threads)."""
    fields = stat[stat.rindex(")") + 2 :].split()  # past the command, which may hold spaces
    return int(fields[2]), int(fields[11]) + int(fields[12])


def cpu_ticks(pid: int) -> int:
    """User + system CPU ticks of a process so far; 0 once it is gone."""
    try:
        return _group_and_ticks(Path(f"/proc/{pid}/stat").read_text())[1]
    except OSError:
        return 0


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
        table[int(entry.name)] = (*_group_and_ticks(stat), uid, cmdline)
    return table


_USER_NAMES: dict[int, str] = {}


def user_name(uid: int) -> str:
    if uid not in _USER_NAMES:
        try:
            _USER_NAMES[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _USER_NAMES[uid] = str(uid)
    return _USER_NAMES[uid]


def server_category(uid: int, cmdline: str, databases: Iterable[str]) -> str:
    """A process of PostgreSQL or RabbitMQ: this run's database backends (their process
    titles name the database), the servers' own processes, or OTHER_CPU (other runs'
    backends, anything else)."""
    owner = user_name(uid)
    if owner == "postgres":
        if any(database in cmdline for database in databases):
            return POSTGRES_BACKENDS
        # A backend's title names its client, "host(port)"; the server's helpers have none.
        if not (cmdline.startswith("postgres: ") and "(" in cmdline):
            return POSTGRES_SERVER
    elif owner == "rabbitmq" or "beam.smp" in cmdline:
        return RABBITMQ_CPU
    return OTHER_CPU


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


class StackCpuMeter(CpuMeter):
    """The Stack's processes by their supervisor's names (process_category), this run's
    PostgreSQL backends, the database and broker servers, and the rest."""

    def __init__(self, system: Stack, db_prefix: str) -> None:
        super().__init__()
        # Each supervised child leads its own process group: a gunicorn master and its
        # workers, nginx's master and workers, a Celery worker and its pool.
        self.groups = {child.process.pid: child.name for child in system.supervisor.children}
        self.databases = (f"{db_prefix}_",)

    def process_category(self, name: str) -> str:
        return name

    def category(self, pid: int, group: int, uid: int, cmdline: str) -> str:
        name = self.groups.get(group)
        if name is not None:
            return self.process_category(name)
        return server_category(uid, cmdline, self.databases)


# ---------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------


class BrokenRun(RuntimeError):
    """The run itself is broken (work lost, a consumer crashed): no figure stands."""


def argument_parser(
    doc: str, *, smoke: str, json_help: str = "also write figures here"
) -> argparse.ArgumentParser:
    """`--json PATH` and `--smoke` (`smoke`: what it does), as every benchmark takes them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help=json_help)
    parser.add_argument("--smoke", action="store_true", help=smoke)
    return parser


S = TypeVar("S")


def parse_scaled(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    full: S,
    smoke: S,
    *,
    option: str,
    minimum: int,
    help: str,
) -> tuple[argparse.Namespace, S]:
    """The command line, with `--<option> N` for one whole-number field of the bench's scale
    (a dataclass: `full`, or `smoke` with --smoke), at least `minimum`; its args and the
    scale they ask for."""
    parser.add_argument(
        f"--{option}",
        type=int,
        metavar="N",
        help=f"{help} (default {getattr(full, option)}; with --smoke {getattr(smoke, option)})",
    )
    args = parser.parse_args(argv)
    scale = smoke if args.smoke else full
    if getattr(args, option) is not None:
        scale = dataclasses.replace(scale, **{option: max(minimum, getattr(args, option))})
    return args, scale


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C, so the clean-up callbacks run.
    raise KeyboardInterrupt(f"signal {signum}")


def main_of(run: Callable[[], int]) -> int:
    """run()'s exit status; 1 on BrokenRun, 130 on Ctrl-C or SIGTERM, each after the
    clean-up that unwinding the run's ExitStack did."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run()
    except KeyboardInterrupt:
        print("interrupted; what the bench created is cleaned up", file=sys.stderr)
        return 130
    except BrokenRun as exc:
        print(f"BROKEN RUN: {exc}", file=sys.stderr)
        return 1

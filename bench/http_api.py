"""HTTP benchmark: the tickets and orders APIs through gunicorn, beside a bare Django view.

    .venv/bin/python bench/http_api.py                  # from the repo root, after `make test`
    .venv/bin/python bench/http_api.py --json out.json  # the same figures as JSON, too
    .venv/bin/python bench/http_api.py --smoke          # tiny tables, 1 s figures: does it run?

One run (about 90 s, bounded) starts four gunicorns with the production settings
(`-c python:shared_lib.gunicorn_conf`: sync workers, WEB_CONCURRENCY defaulting to cores + 1,
access log on; DEBUG off, LOG_LEVEL INFO) on free loopback ports, straight (no nginx
gateway in front), and drives each with wrk (Debian's; installed when missing and run as
root) at a fixed concurrency, on the same machine as the servers:

ceiling   GET /bare of a bare Django project (bench/bare: no database, no middleware, one
          view returning a small JSON body), measured right before each group of endpoints;
          its best run is the ceiling (other processes can only ever lower a run).
list      GET /api/tickets, a page of 20 (the first page or one at a random cursor depth),
          from two tickets_svc servers measured back to back: one on a table of 1k
          tickets, one on a table of 100k (10% of them reserved in both).
search    GET /api/tickets?q=&minPrice=&maxPrice=, first pages of searches (an act, its
          first letters, an act and a seat, a price band, an act in a band) at 100k
          tickets, beside the unfiltered first page measured right before it.
writes    POST /api/tickets (signed in, on the 100k table) and POST /api/orders (signed in,
          a different ticket every request, so each is a 201); both publish through the
          outbox: the service's relay, woken by the write's NOTIFY, sends the event to
          RabbitMQ with publisher confirms (its CPU counts as the app's).

Targets (printed, never asserted): list req/s >= 50% of the bare view's, each write >= 30%;
the list's p50 at 100k tickets <= 1.3 x its p50 at 1k; a search's first page p50 <= 1.3 x
the unfiltered first page's. Also printed: the CPU each request
cost the server, its database and wrk, and what other processes took meanwhile (the noise);
EXPLAIN ANALYZE of the list's own query at 100k tickets (is the partial index used, and how).
The run exits 1 when it is broken rather than slow: a measurement without a 2xx answer, any
error answer or socket error, a write answered 2xx whose row is missing.

The run creates its own three databases (role `ticketing_bench_http`) and RabbitMQ vhost and
drops them at the end, also on failure, Ctrl-C or SIGTERM; its servers stop with it.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import requests
from _common import (
    NOISY_CORES,
    OTHER_CPU,
    POSTGRES_BACKENDS,
    Names,
    argument_parser,
    create_names,
    machine_summary,
    main_of,
    own_databases,
    parse_scaled,
    progress,
    report,
    server_category,
    started_at,
    verdict,
)
from _common import CpuMeter as BaseCpuMeter

from shared_lib.testing.processes import Process, gunicorn
from ticketing_devtools.catalog import REPO_ROOT, service
from ticketing_devtools.environment import common_env

BENCH_DIR = REPO_ROOT / "bench"
BARE_DIR = BENCH_DIR / "bare"
LUA_SCRIPT = BENCH_DIR / "http_api.lua"
TICKETS_DIR = service("tickets").directory
ORDERS_DIR = service("orders").directory

# Its own role: bench/events.py sets a fresh password on `ticketing_bench` at every run,
# which would lock this run's servers out of their databases if both ran at once.
BENCH_ROLE = "ticketing_bench_http"

# The load: a fixed number of connections, each sending its next request as soon as the
# previous answer arrives (closed loop). 16 keeps every gunicorn worker busy with a queue
# behind it; 2 wrk threads, because the machine has 2 cores and the servers need them.
WRK_THREADS = 2
WRK_CONNECTIONS = 16
# A request slower than this is a wrk timeout (counted as an error), not a latency sample.
WRK_TIMEOUT = "10s"
WRK_EXTRA_SECONDS = 30  # on top of the duration, before wrk itself is given up on


@dataclass(frozen=True)
class Scale:
    """How big a run is: the two tables the list is measured on, and how long each figure
    and the warm-up before an endpoint's first figure last."""

    small_table: int
    large_table: int
    seconds: int
    # Before the first measurement of an endpoint: every worker connects to PostgreSQL (and,
    # for writes, RabbitMQ), imports what the first request needs and warms its caches.
    warmup_seconds: int


FULL = Scale(small_table=1_000, large_table=100_000, seconds=8, warmup_seconds=2)
# `--smoke` (run by `make test`): every code path of the full run in about 30 s, so a broken
# bench fails the tests; its figures say little (a 1k table hides what 100k shows).
SMOKE = Scale(small_table=100, large_table=1_000, seconds=1, warmup_seconds=1)

RESERVED_SHARE = 0.10  # tickets an order holds: in the table, not in the list
LISTING_WINDOW = timedelta(days=30)  # created_at spread over the last month
SELLERS = 500  # distinct sellers of the loaded tickets
CURSOR_PAGES = 255  # random-depth pages beside the first page
PAGE_SIZE = 20  # the API's default ?limit=
# POST /api/orders: a different ticket for every request, so replicas for well over any
# rate this machine reaches (a few hundred orders/s) per second of load, warm-up and
# measurement apart: past its pool wrk starts again, and those repeats answer 400.
ORDER_POOL_PER_SECOND = 4_000
# POST /api/orders comes from this many buyers, as a sale's orders do: the holding limit
# serialises one buyer's orders by design (an advisory lock per buyer, orders.services),
# so with a single buyer the 16 connections would measure that queue, not the order path.
BUYERS = 256

START_TIMEOUT_SECONDS = 60.0
# A hang detector, not a figure: three migrations at once on a busy 2-core machine have
# taken over a minute.
MIGRATE_TIMEOUT_SECONDS = 300.0

LIST_TARGET_RATIO = 0.50
WRITE_TARGET_RATIO = 0.30
LIST_GROWTH_TARGET = 1.30
# GET /api/tickets?q=&minPrice=&maxPrice=: a filtered first page's p50 at the large table
# <= this x the unfiltered first page's.
SEARCH_TARGET = 1.30


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class CpuUse:
    """Where the machine's CPU went during one measurement (from /proc).

    app, db and loadgen are per request: the gunicorn under test (master and workers, and
    for a write its service's outbox relay), this run's PostgreSQL backends, wrk. servers
    and foreign are in cores: PostgreSQL's and RabbitMQ's own processes (WAL writer,
    broker; shared with anything else using them), and everything else on the machine,
    e.g. another test run: the noise in the figures.
    """

    machine_cores: float = 0.0
    app_ms: float = 0.0
    db_ms: float = 0.0
    loadgen_ms: float = 0.0
    servers_cores: float = 0.0
    foreign_cores: float = 0.0

    @property
    def run_ms(self) -> float:
        """CPU per request of this run's own processes: what decides its req/s once they
        have the cores to themselves and are CPU-bound."""
        return self.app_ms + self.db_ms + self.loadgen_ms


@dataclass
class Measurement:
    """One wrk run: throughput, latency percentiles (ms), what went wrong, CPU used."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int  # HTTP status >= 400 (these routes answer no 1xx or 3xx)
    socket_errors: int  # connect, read, write errors and timeouts
    cpu: CpuUse = field(default_factory=CpuUse)

    @classmethod
    def from_wrk(cls, data: dict[str, Any]) -> Measurement:
        seconds = data["duration_us"] / 1e6
        errors = data["errors"]
        latency = data["latency_us"]
        return cls(
            requests=data["requests"],
            seconds=seconds,
            rps=data["requests"] / seconds,
            p50_ms=latency["p50"] / 1000,
            p90_ms=latency["p90"] / 1000,
            p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
            non_2xx=errors["status"],
            socket_errors=sum(errors[k] for k in ("connect", "read", "write", "timeout")),
        )


@dataclass
class Pair:
    """An endpoint's measurement and the bare view's, taken right before it."""

    endpoint: Measurement
    bare: Measurement


# name -> (label, kind of target or None); the order of the table. The names (JSON keys)
# are the full run's table sizes; a label shows the run's own ({small}, {large}).
ENDPOINTS = {
    "list_1k": ("GET  /api/tickets, {small} tickets", None),
    "list_100k": ("GET  /api/tickets, {large} tickets", "list"),
    "first_100k": ("GET  /api/tickets 1st page, {large}", None),
    "search_100k": ("GET  ...?q=&minPrice=&maxPrice=, {large}", None),
    "post_tickets": ("POST /api/tickets", "write"),
    "post_orders": ("POST /api/orders", "write"),
}
TARGETS = {"list": LIST_TARGET_RATIO, "write": WRITE_TARGET_RATIO}


def _size(count: int) -> str:
    return f"{count // 1000}k" if count >= 1000 and count % 1000 == 0 else str(count)


def _quotient(a: float, b: float) -> float:
    """a / b, or 0 when b is 0 (a server that answered nothing: broken() fails the run)."""
    return a / b if b > 0 else 0.0


@dataclass
class Results:
    started_at: str
    scale: Scale = FULL
    smoke: bool = False
    machine: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    pairs: dict[str, Pair] = field(default_factory=dict)
    rows_created: dict[str, int] = field(default_factory=dict)
    outbox_unsent: dict[str, int] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    list_index_used: bool = False
    broken: list[str] = field(default_factory=list)

    def label(self, name: str) -> str:
        """An endpoint's row label, with this run's table sizes."""
        small, large = _size(self.scale.small_table), _size(self.scale.large_table)
        return ENDPOINTS[name][0].format(small=small, large=large)

    @property
    def ceilings(self) -> list[Measurement]:
        """The bare view's runs, each once (the two lists share theirs)."""
        unique: dict[int, Measurement] = {}
        for pair in self.pairs.values():
            unique.setdefault(id(pair.bare), pair.bare)
        return list(unique.values())

    @property
    def ceiling_rps(self) -> float:
        """The bare view's best run: other processes can only ever lower a run, so the best
        of several, spread over the run, is the closest to what the machine does alone."""
        return max(b.rps for b in self.ceilings)

    def ratio(self, name: str) -> float:
        return _quotient(self.pairs[name].endpoint.rps, self.ceiling_rps)

    def cpu_ratio(self, name: str) -> float:
        """The ratio the CPU costs predict: the bare view's CPU per request (its cheapest
        run) / the endpoint's. Steadier than `ratio` when other processes take cores; it
        leaves out PostgreSQL's and RabbitMQ's own processes, so for writes it is a little
        optimistic."""
        bare = min(b.cpu.run_ms for b in self.ceilings)
        return _quotient(bare, self.pairs[name].endpoint.cpu.run_ms)

    def noisy(self, m: Measurement) -> bool:
        return m.cpu.foreign_cores > NOISY_CORES

    @property
    def list_growth(self) -> float:
        large, small = self.pairs["list_100k"].endpoint, self.pairs["list_1k"].endpoint
        return _quotient(large.p50_ms, small.p50_ms)

    @property
    def search_cost(self) -> float:
        search, first = self.pairs["search_100k"].endpoint, self.pairs["first_100k"].endpoint
        return _quotient(search.p50_ms, first.p50_ms)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ceiling_rps"] = self.ceiling_rps
        data["ratios"] = {name: self.ratio(name) for name in self.pairs}
        data["cpu_ratios"] = {name: self.cpu_ratio(name) for name in self.pairs}
        data["list_p50_100k_over_1k"] = self.list_growth
        data["search_p50_over_first_page"] = self.search_cost
        data["targets"] = {
            **{f"{kind}_ratio_min": ratio for kind, ratio in TARGETS.items()},
            "list_p50_growth_max": LIST_GROWTH_TARGET,
            "search_p50_over_first_page_max": SEARCH_TARGET,
        }
        return data


def _figures_table(r: Results) -> list[str]:
    lines = [
        f"{'':<32s}{'req/s':>7s}{'p50 ms':>8s}{'p99 ms':>8s}{'non-2xx':>8s}{'sock err':>9s}"
        f"{'ratio':>7s}{'cpu ratio':>11s}  target",
    ]
    for name, (_, kind) in ENDPOINTS.items():
        label = r.label(name)
        m = r.pairs[name].endpoint
        ratio = r.ratio(name)
        target = TARGETS.get(kind or "")
        outcome = ""
        if target:
            noisy = " (noisy: read the cpu ratio)" if r.noisy(m) else ""
            outcome = f">= {target:.2f}: {verdict(ratio >= target)}{noisy}"
        lines.append(
            f"{label:<32s}{m.rps:7.0f}{m.p50_ms:8.1f}{m.p99_ms:8.1f}{m.non_2xx:8d}"
            f"{m.socket_errors:9d}{ratio:7.2f}{r.cpu_ratio(name):11.2f}  {outcome}"
        )
    bares = r.ceilings
    best = max(bares, key=lambda b: b.rps)
    lines += [
        f"{'ceiling: bare Django view':<32s}{best.rps:7.0f}{best.p50_ms:8.1f}{best.p99_ms:8.1f}"
        f"{sum(b.non_2xx for b in bares):8d}{sum(b.socket_errors for b in bares):9d}"
        f"   (the best of its {len(bares)} runs: {', '.join(f'{b.rps:.0f}' for b in bares)})",
        "         ratio: req/s / the ceiling's (the verdict); cpu ratio: the bare view's CPU"
        " per request / the endpoint's (app + db + wrk below), steadier when other processes"
        " take cores",
    ]
    return lines


def _cpu_table(r: Results) -> list[str]:
    lines = [
        f"{'CPU, ms per request':<32s}{'app':>7s}{'db':>7s}{'wrk':>7s}{'cores busy:':>16s}"
        f"{'machine':>9s}{'pg+mq':>7s}{'other':>7s}",
    ]

    def row(label: str, c: CpuUse) -> str:
        return (
            f"{label:<32s}{c.app_ms:7.2f}{c.db_ms:7.2f}{c.loadgen_ms:7.2f}{'':16s}"
            f"{c.machine_cores:9.2f}{c.servers_cores:7.2f}{c.foreign_cores:7.2f}"
        )

    for name in ENDPOINTS:
        lines.append(row(r.label(name), r.pairs[name].endpoint.cpu))
    for index, bare in enumerate(r.ceilings, start=1):
        lines.append(row(f"bare view ({index})", bare.cpu))
    return lines


def _writes_line(r: Results) -> str:
    parts = []
    for name, noun in (("post_tickets", "tickets"), ("post_orders", "orders")):
        m = r.pairs[name].endpoint
        parts.append(
            f"{ENDPOINTS[name][0].split()[1]}: {m.requests - m.non_2xx} answered 2xx,"
            f" {r.rows_created.get(name, 0)} {noun} created"
        )
    unsent = sum(r.outbox_unsent.values())
    return f"writes   {'; '.join(parts)}; outbox rows left unsent: {unsent}"


def _search_line(r: Results) -> str:
    first, search = r.pairs["first_100k"].endpoint, r.pairs["search_100k"].endpoint
    cost = r.search_cost
    return (
        f"search p50 / first page p50 at {_size(r.scale.large_table)} tickets:"
        f" {search.p50_ms:.1f} ms / {first.p50_ms:.1f} ms = {cost:.2f}"
        f"  (target <= {SEARCH_TARGET:.2f}: {verdict(cost <= SEARCH_TARGET)}"
        f"{' (noisy)' if r.noisy(first) or r.noisy(search) else ''})"
    )


def print_table(r: Results) -> None:
    m, load = r.machine, r.load
    small, large = r.pairs["list_1k"].endpoint, r.pairs["list_100k"].endpoint
    growth = r.list_growth
    plan_lines = [
        f"{name.replace('_', ' '):<11s}{line}" for name, lines in r.plans.items() for line in lines
    ]
    measured = [*(p.endpoint for p in r.pairs.values()), *r.ceilings]
    busiest = max(x.cpu.foreign_cores for x in measured)
    warning = (
        [
            f"WARNING  other processes took up to {busiest:.2f} of the {m.get('cores')} cores"
            " while measuring: req/s and ratios understate this code on a quiet machine",
        ]
        if busiest > NOISY_CORES
        else []
    )
    small_size, large_size = _size(r.scale.small_table), _size(r.scale.large_table)
    scale = (
        [
            f"scale    smoke (--smoke): {small_size} and {large_size} tickets,"
            f" {r.scale.seconds} s per figure: proves the bench runs; not figures to quote",
        ]
        if r.smoke
        else []
    )
    lines = [
        "",
        f"http bench  {r.started_at}",
        f"machine  {m.get('summary', '')}",
        f"load     wrk {m.get('wrk', '?')}: {load['threads']} threads, {load['connections']}"
        f" connections, {load['seconds']} s per figure, after a {load['warmup_seconds']} s"
        " warm-up; on the same cores as the servers",
        f"servers  gunicorn {m.get('gunicorn', '?')} -c python:shared_lib.gunicorn_conf:"
        f" {load['workers']} sync workers each, access log on, DEBUG off, LOG_LEVEL INFO;"
        " straight on loopback, no nginx gateway in front",
        f"         1-min load average {m.get('loadavg_1min_start', 0):.2f} at start,"
        f" {m.get('loadavg_1min_end', 0):.2f} at end",
        *scale,
        *warning,
        "",
        *_figures_table(r),
        "",
        f"list p50 at {large_size} / {small_size} tickets:"
        f" {large.p50_ms:.1f} ms / {small.p50_ms:.1f} ms = {growth:.2f}"
        f"  (target <= {LIST_GROWTH_TARGET:.2f}: {verdict(growth <= LIST_GROWTH_TARGET)}"
        f"{' (noisy)' if r.noisy(small) or r.noisy(large) else ''})",
        _search_line(r),
        _writes_line(r),
        "",
        *_cpu_table(r),
        "         app: the gunicorn under test (+ its outbox relay); db: this run's PostgreSQL"
        " backends; pg+mq:"
        " the servers' own processes; other: everything else on the machine (noise)",
        "",
        f"plan     EXPLAIN ANALYZE of the list's query at {large_size} tickets"
        f" (tickets_available_idx used: {'yes' if r.list_index_used else 'NO'}):",
        *(f"         {line}" for line in plan_lines),
        "",
        *(f"BROKEN   {reason}" for reason in r.broken),
        *([""] if r.broken else []),
    ]
    print("\n".join(lines), flush=True)


def broken(r: Results) -> list[str]:
    """Why the run itself is broken, not slow: every request is meant to answer 2xx (the
    writes each on a fresh ticket), so a figure of nothing, or of errors, measured another
    path than the one it names; a 2xx write whose row is missing lost the write."""
    found = []
    runs = [(r.label(name), pair.endpoint) for name, pair in r.pairs.items()]
    runs += [(f"bare view ({index})", bare) for index, bare in enumerate(r.ceilings, start=1)]
    for label, m in runs:
        answered = m.requests - m.non_2xx
        if answered <= 0 or m.non_2xx or m.socket_errors:
            found.append(
                f"{label}: {answered} answered 2xx, {m.non_2xx} answered >= 400,"
                f" {m.socket_errors} socket errors (must be 0)"
            )
    for name in ("post_tickets", "post_orders"):
        m = r.pairs[name].endpoint
        answered, created = m.requests - m.non_2xx, r.rows_created.get(name, 0)
        if created < answered:
            found.append(f"{r.label(name)}: {answered} answered 2xx, only {created} rows created")
    return found


# ---------------------------------------------------------------------------------------
# CPU accounting: /proc snapshots around each measurement
# ---------------------------------------------------------------------------------------


class CpuMeter(BaseCpuMeter):
    """Attributes the CPU used between start() and stop() to this run's parts: the gunicorn
    under test and its outbox relay (app), this run's PostgreSQL backends (db), wrk and
    this script (loadgen), PostgreSQL's and RabbitMQ's own processes (servers)."""

    def __init__(self, server_group: int, relay_group: int, db_prefix: str) -> None:
        super().__init__()
        self.app_groups = {server_group, relay_group} - {0}  # 0: no relay
        self.databases = (f"{db_prefix}_",)
        self._children = 0.0

    def start(self) -> None:
        self._children = _children_cpu()
        super().start()

    def category(self, pid: int, group: int, uid: int, cmdline: str) -> str:
        if group in self.app_groups:
            return "app"
        if pid == os.getpid():
            return "loadgen"  # this script: idle while wrk runs, then reads /proc
        found = server_category(uid, cmdline, self.databases)
        return found if found in (OTHER_CPU, POSTGRES_BACKENDS) else "servers"

    def stop(self, requests: int) -> CpuUse:
        # wrk ran and was reaped in between: its CPU is in our children's rusage. A process
        # born in between (a backend replacing one past CONN_MAX_AGE) counts from zero; one
        # gone in between is unattributed, so "other".
        wall, busy, used = self.measure({"loadgen": _children_cpu() - self._children})
        per_request = 1000 / max(1, requests)
        return CpuUse(
            machine_cores=busy / wall,
            app_ms=used.get("app", 0.0) * per_request,
            db_ms=used.get(POSTGRES_BACKENDS, 0.0) * per_request,
            loadgen_ms=used["loadgen"] * per_request,
            servers_cores=used.get("servers", 0.0) / wall,
            foreign_cores=used[OTHER_CPU] / wall,
        )


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package first when it is missing (as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt_get:
        raise SystemExit("wrk is missing: install it (Debian: apt-get install -y wrk)")
    progress("installing wrk (Debian's package) for the load")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([apt_get, "update", "-qq"], check=True, env=env)  # noqa: S603 (fixed argv)
    subprocess.run(  # noqa: S603 (fixed argv)
        [apt_get, "install", "-y", "-qq", "--no-install-recommends", "wrk"], check=True, env=env
    )
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk still missing after apt-get install wrk")
    return found


def wrk_version(wrk: str) -> str:
    # `wrk -v` prints "wrk 4.1.0 [epoll] Copyright ..." and exits 1.
    out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603
    words = (out.stdout or out.stderr).split()
    return words[1] if len(words) > 1 else "?"


def run_wrk(wrk: str, base_url: str, args: list[str], *, seconds: int) -> Measurement:
    """wrk at the fixed concurrency with bench/http_api.lua in mode `args`."""
    command = [
        wrk,
        "-t",
        str(WRK_THREADS),
        "-c",
        str(WRK_CONNECTIONS),
        "-d",
        f"{seconds}s",
        "--timeout",
        WRK_TIMEOUT,
        "-s",
        str(LUA_SCRIPT),
        base_url,
        "--",
        *args,
    ]
    out = subprocess.run(  # noqa: S603 (our own wrk and arguments)
        command,
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds + WRK_EXTRA_SECONDS,
    )
    for line in out.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return Measurement.from_wrk(json.loads(line.removeprefix("WRK_JSON ")))
    raise RuntimeError(
        f"wrk gave no figures (exit {out.returncode}):\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
    )


# ---------------------------------------------------------------------------------------
# Set-up: throw-away databases and vhost, Django (for tokens and EXPLAIN), servers
# ---------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    names: Names
    db_urls: dict[str, str]  # tickets_1k, tickets_100k, orders
    envs: dict[str, dict[str, str]]  # the same keys, and bare

    @property
    def workdir(self) -> Path:
        return self.names.workdir


def create_sandbox(stack: ExitStack) -> Sandbox:
    """Three databases and a vhost; `stack` drops them all on exit."""
    names = create_names(stack, "http")
    urls = own_databases(stack, names, BENCH_ROLE, ("tickets_1k", "tickets_100k", "orders"))
    base_env = common_env(names.dev)  # os.environ as it was, plus the checkout's public key

    def env_for(project: str, db_url: str | None) -> dict[str, str]:
        env = {
            **base_env,
            "DJANGO_SETTINGS_MODULE": f"{project}.settings",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "RABBITMQ_URL": names.vhost_url,
            # The production defaults, whatever this shell exports.
            "DEBUG": "false",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
        }
        if db_url:
            env["DATABASE_URL"] = db_url
        return env

    return Sandbox(
        names=names,
        db_urls=urls,
        envs={
            "tickets_1k": env_for("tickets_svc", urls["tickets_1k"]),
            "tickets_100k": env_for("tickets_svc", urls["tickets_100k"]),
            "orders": {
                **env_for("orders_svc", urls["orders"]),
                # Each bench buyer stands for many real ones: without these its orders
                # would meet the per-buyer limits (429 / 400), not the order path.
                "RATE_LIMIT_ORDERS": "100000000/min",
                "ORDERS_MAX_ACTIVE_PER_USER": "100000000",
            },
            "bare": env_for("bare_site", None),
        },
    )


def migrate(sb: Sandbox) -> None:
    """Each service's own `manage.py migrate` on its bench databases, all at once."""
    running = []
    for name, cwd in (
        ("tickets_1k", TICKETS_DIR),
        ("tickets_100k", TICKETS_DIR),
        ("orders", ORDERS_DIR),
    ):
        env = sb.envs[name]
        log_path = sb.workdir / f"migrate-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "manage.py", "migrate", "--noinput"],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running.append((name, process, log_path))
    for name, process, log_path in running:
        try:
            code = process.wait(timeout=MIGRATE_TIMEOUT_SECONDS)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"migrate of {name} failed ({code}):\n{tail}")


def setup_django(sb: Sandbox) -> None:
    """tickets_svc's settings (on the 100k database) in this process: its ORM for the
    EXPLAIN."""
    os.environ.update({**sb.envs["tickets_100k"], "LOG_LEVEL": "WARNING"})
    import django

    django.setup()


def mint_token(sb: Sandbox, user_id: uuid.UUID, email: str) -> str:
    """A session token as auth_svc mints it, with the key the services verify against."""
    from shared_lib.auth import mint_session_token

    return mint_session_token(
        user_id=str(user_id), email=email, private_pem=sb.names.dev.jwt_private_key_file.read_text()
    )


def start_server(
    stack: ExitStack, sb: Sandbox, name: str, module: str, cwd: Path, env: dict[str, str]
) -> Process:
    """gunicorn with the production settings on a free loopback port; its access log and
    stderr go to a file (a pipe read by this process would take CPU from the servers)."""
    server = gunicorn(module, cwd=cwd, env=env, log_path=sb.workdir / f"{name}.log")
    return stack.enter_context(server.start())


# The service's outbox relay as its worker runs it (shared_lib.events.worker.relay_loop:
# woken by each write's NOTIFY), without the worker's event consumer, which has nothing
# to do with these requests.
RELAY_SCRIPT = """
import signal, threading
import django
django.setup()
from shared_lib.events.worker import relay_loop
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
relay_loop(stop)
"""


def start_relay(stack: ExitStack, sb: Sandbox, name: str, cwd: Path) -> Process:
    """The outbox relay of server `name`'s service (a process group of its own, whose CPU
    the measurements count as the app's: sending the events is part of a write)."""
    relay = Process(
        [sys.executable, "-c", RELAY_SCRIPT],
        cwd=cwd,
        env=sb.envs[name],
        log_path=sb.workdir / f"{name}-relay.log",
    )
    return stack.enter_context(relay.start())


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


SELLER = uuid.UUID("5e11e500-0000-4000-8000-000000000001")  # sells via POST /api/tickets


# Titles as sellers write them: an act, a kind of seat, a night. SEARCHED_ACTS of the
# acts are what the search figure asks for, each in about 1 title in len(ACTS).
_SYLLABLES = ["ka", "lo", "mi", "ra", "ven", "dor", "su", "tel", "bri", "no", "zan", "fe"]
ACTS = [f"{a}{b}{c}".title() for a in _SYLLABLES for b in _SYLLABLES for c in ("", "x")]
SEATS = ["floor", "balcony", "stalls", "box", "standing", "VIP", "front row", "gallery"]
SEARCHED_ACTS = 64
SEARCH_PRICE_BANDS = [(5, 50), (50, 150), (100, 300), (250, 500)]


def _title(rng: random.Random, index: int) -> str:
    return f"{rng.choice(ACTS)} - {rng.choice(SEATS)}, night {index % 90 + 1}"


def load_tickets(db_url: str, count: int, rng: random.Random) -> None:
    """`count` more tickets, laid out as a live table's are: listed over the last month
    and appended by COPY in the order they were listed (sellers' INSERTs append), from a
    few hundred sellers; then 10% reserved by an UPDATE, as an order's reservation is
    (each row's new version moves to the table's end, out of that order); then VACUUM
    ANALYZE, as autovacuum would do within a minute of such a load, so the planner knows
    the table's size."""
    now = datetime.now(UTC)
    sellers = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(SELLERS)]
    window = LISTING_WINDOW.total_seconds()
    listed = sorted(now - timedelta(seconds=rng.uniform(0, window)) for _ in range(count))
    reserved = []
    with psycopg.connect(db_url) as conn:
        with conn.cursor().copy(
            "COPY tickets_ticket (id, title, price, user_id, version, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for index, created in enumerate(listed):
                ticket_id = uuid.UUID(int=rng.getrandbits(128), version=4)
                if rng.random() < RESERVED_SHARE:
                    reserved.append(ticket_id)
                copy.write_row(
                    (
                        ticket_id,
                        _title(rng, index),
                        Decimal(rng.randint(500, 50_000)) / 100,
                        rng.choice(sellers),
                        0,
                        created,
                        created,
                    )
                )
        conn.execute(
            "UPDATE tickets_ticket SET order_id = gen_random_uuid(), version = 1"
            " WHERE id = ANY(%s)",
            [reserved],
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE tickets_ticket")


def load_replicas(db_url: str, count: int, rng: random.Random) -> list[uuid.UUID]:
    """orders_svc's replicas of `count` tickets of SELLER (as ticket.created would have
    put them there); the buyer is someone else, so each is buyable once."""
    ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]
    now = datetime.now(UTC)
    with psycopg.connect(db_url) as conn:
        with conn.cursor().copy(
            "COPY orders_ticketreplica (id, title, price, user_id, version, updated_at) FROM STDIN"
        ) as copy:
            for index, ticket_id in enumerate(ids):
                copy.write_row(
                    (ticket_id, f"Concert ticket {index}", Decimal("20.50"), SELLER, 0, now)
                )
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE orders_ticketreplica")
    return ids


@dataclass(frozen=True)
class _Row:
    pk: uuid.UUID
    created_at: datetime


def write_list_paths(path: Path, db_url: str, rng: random.Random) -> None:
    """The first page and CURSOR_PAGES pages at random depths (as many as a smaller table
    has), as a client paging through the list would ask for them (the cursor each page's
    Link rel=next names), each a full page."""
    from shared_lib.pagination import _encode  # the API's own cursor format

    with psycopg.connect(db_url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # as Django's connections: the same cursors
        rows = [
            _Row(pk, created_at)
            for pk, created_at in conn.execute(
                "SELECT id, created_at FROM tickets_ticket WHERE order_id IS NULL"
                " ORDER BY created_at DESC, id DESC"
            )
        ]
    full_pages = rows[: len(rows) - PAGE_SIZE]
    picks = rng.sample(full_pages, min(CURSOR_PAGES, len(full_pages)))
    lines = ["/api/tickets", *(f"/api/tickets?cursor={_encode(row)}" for row in picks)]
    path.write_text("\n".join(lines) + "\n")


def write_search_paths(path: Path, rng: random.Random) -> None:
    """First pages of searches as a buyer types them: an act (whole, or its first
    letters), a seat too, a price band, or an act within a band."""
    lines = []
    for act in rng.sample(ACTS, SEARCHED_ACTS):
        low, high = rng.choice(SEARCH_PRICE_BANDS)
        lines += [
            f"/api/tickets?q={act}",
            f"/api/tickets?q={act[:3].lower()}",
            f"/api/tickets?q={act}+{rng.choice(SEATS).split()[0]}",
            f"/api/tickets?minPrice={low}&maxPrice={high}",
            f"/api/tickets?q={act}&minPrice={low}&maxPrice={high}.99",
        ]
    path.write_text("\n".join(lines) + "\n")


def write_id_files(prefix: Path, ids: list[Any]) -> None:
    """One file per wrk thread (prefix.0, prefix.1, ...), the lines dealt round-robin."""
    for thread in range(WRK_THREADS):
        Path(f"{prefix}.{thread}").write_text("\n".join(str(i) for i in ids[thread::WRK_THREADS]))


def count_rows(db_url: str, table: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (ours)


def wait_outbox_sent(sb: Sandbox, timeout: float = 5.0) -> dict[str, int]:
    """Outbox rows still unsent once the last requests in flight have finished (a few
    seconds at most): each service's relay should have sent every row its writes left."""
    deadline = time.monotonic() + timeout
    while True:
        unsent = {}
        for name in ("tickets_100k", "orders"):
            with psycopg.connect(sb.db_urls[name]) as conn:
                unsent[name] = conn.execute(
                    "SELECT count(*) FROM shared_lib_outboxevent WHERE sent_at IS NULL"
                ).fetchone()[0]
        if not any(unsent.values()) or time.monotonic() > deadline:
            return unsent
        time.sleep(0.2)


def explain_list() -> tuple[dict[str, list[str]], bool]:
    """EXPLAIN ANALYZE of the very SQL paginate() runs for the first page and a deep page.

    Keeps each plan's first line (the LIMIT node and its actual time) and the scan below
    it with its conditions; `used` says whether every plan scans tickets_available_idx.
    """
    from django.db import connection
    from django.test.client import RequestFactory
    from django.test.utils import CaptureQueriesContext
    from rest_framework.request import Request

    from shared_lib.pagination import _encode, paginate
    from tickets import selectors

    rows = list(
        selectors.ticket_list_available().order_by("-created_at", "-pk").only("id", "created_at")
    )
    deep = rows[len(rows) // 2]
    factory = RequestFactory()
    plans: dict[str, list[str]] = {}
    used = True
    for name, query in (("first_page", {}), ("deep_page", {"cursor": _encode(deep)})):
        request = Request(factory.get("/api/tickets", query, SERVER_NAME="127.0.0.1"))
        with CaptureQueriesContext(connection) as captured:
            paginate(request, selectors.ticket_list_available())
        sql = captured.captured_queries[-1]["sql"]
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = [line for (line,) in cursor.fetchall()]
        # The first line (LIMIT, with the page's actual time), then the scan and how it
        # finds its rows: an Index Cond bounds the range; a Filter reads and drops rows.
        keep = ("Index", "Seq Scan", "Bitmap", "Filter", "Rows Removed", "Execution Time")
        detail = [line.strip() for line in plan[1:] if line.lstrip(" ->").startswith(keep)]
        used = used and "tickets_available_idx" in "\n".join(plan)
        plans[name] = [plan[0], *detail]
    return plans, used


def preflight(servers: dict[str, Process], cookies: dict[str, str], ticket_id: uuid.UUID) -> None:
    """One request of each kind, checked, before any load: a bench of 400s means nothing."""
    small, tickets = servers["tickets_1k"], servers["tickets_100k"]
    orders, bare = servers["orders"], servers["bare"]
    checks = [
        ("GET /bare", requests.get(f"{bare.url}/bare", timeout=10), 200),
        ("GET /api/tickets", requests.get(f"{tickets.url}/api/tickets", timeout=10), 200),
        ("GET /api/tickets (1k)", requests.get(f"{small.url}/api/tickets", timeout=10), 200),
        (
            "POST /api/tickets",
            requests.post(
                f"{tickets.url}/api/tickets",
                json={"title": "Preflight ticket", "price": "20.50"},
                cookies={"session": cookies["seller"]},
                timeout=10,
            ),
            201,
        ),
        (
            "POST /api/orders",
            requests.post(
                f"{orders.url}/api/orders",
                json={"ticketId": str(ticket_id)},
                cookies={"session": cookies["buyer"]},
                timeout=10,
            ),
            201,
        ),
    ]
    for what, response, expected in checks:
        if response.status_code != expected:
            raise RuntimeError(
                f"{what} answered {response.status_code}, not {expected}: {response.text[:500]}"
            )
    for _, response, _ in checks[1:3]:
        page = response.json()
        if not isinstance(page, list) or len(page) != PAGE_SIZE:
            raise RuntimeError(f"GET /api/tickets gave no page of {PAGE_SIZE}: {str(page)[:300]}")


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def run(json_path: Path | None, scale: Scale, *, smoke: bool = False) -> Results:
    results = Results(started_at=started_at(), scale=scale, smoke=smoke)
    seconds = scale.seconds
    warmup_pool = ORDER_POOL_PER_SECOND * scale.warmup_seconds
    measure_pool = ORDER_POOL_PER_SECOND * seconds
    rng = random.Random(20_240_601)  # noqa: S311 (test data, not secrets)
    wrk = ensure_wrk()
    with ExitStack() as stack:
        sb = create_sandbox(stack)
        setup_django(sb)
        import django
        import gunicorn as gunicorn_package
        from django.db import connections

        from shared_lib import gunicorn_conf

        stack.callback(connections.close_all)
        results.machine = machine_summary(
            sb.db_urls["orders"],
            sb.names.vhost_url,
            django=django.get_version(),
            gunicorn=gunicorn_package.__version__,
            wrk=wrk_version(wrk),
        )
        results.load = {
            "threads": WRK_THREADS,
            "connections": WRK_CONNECTIONS,
            "seconds": seconds,
            "warmup_seconds": scale.warmup_seconds,
            "workers": gunicorn_conf.workers,
            "gateway": "none (gunicorn straight on loopback)",
        }
        progress(f"databases and vhost ready under {sb.workdir}; migrating")
        migrate(sb)
        progress(
            f"loading {scale.small_table} and {scale.large_table} tickets,"
            f" {warmup_pool + measure_pool} ticket replicas"
        )
        load_tickets(sb.db_urls["tickets_1k"], scale.small_table, rng)
        load_tickets(sb.db_urls["tickets_100k"], scale.large_table, rng)
        pool = load_replicas(sb.db_urls["orders"], 1 + warmup_pool + measure_pool, rng)
        write_id_files(sb.workdir / "orders-warmup", pool[1 : 1 + warmup_pool])
        write_id_files(sb.workdir / "orders-measure", pool[1 + warmup_pool :])
        for name in ("tickets_1k", "tickets_100k"):
            write_list_paths(sb.workdir / f"{name}.paths", sb.db_urls[name], rng)
        (sb.workdir / "first.paths").write_text("/api/tickets\n")
        write_search_paths(sb.workdir / "search.paths", rng)
        (sb.workdir / "bare.paths").write_text("/bare\n")
        buyer_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(BUYERS)]
        buyers = [mint_token(sb, id_, f"buyer{n}@bench.example") for n, id_ in enumerate(buyer_ids)]
        write_id_files(sb.workdir / "buyers", buyers)
        cookies = {"seller": mint_token(sb, SELLER, "seller@bench.example"), "buyer": buyers[0]}

        progress(f"starting 4 gunicorns ({gunicorn_conf.workers} workers each)")
        servers = {
            name: start_server(stack, sb, name, f"{project}.wsgi", cwd, sb.envs[name])
            for name, project, cwd in (
                ("tickets_1k", "tickets_svc", TICKETS_DIR),
                ("tickets_100k", "tickets_svc", TICKETS_DIR),
                ("orders", "orders_svc", ORDERS_DIR),
                ("bare", "bare_site", BARE_DIR),
            )
        }
        for name, server in servers.items():
            server.wait_http(
                "/bare" if name == "bare" else "/readyz", timeout=START_TIMEOUT_SECONDS
            )
        relays = {
            "tickets_100k": start_relay(stack, sb, "tickets_100k", TICKETS_DIR),
            "orders": start_relay(stack, sb, "orders", ORDERS_DIR),
        }
        preflight(servers, cookies, pool[0])

        body = json.dumps({"title": "Bench ticket", "price": "20.50"})
        buyers_prefix = str(sb.workdir / "buyers")
        loads = {  # endpoint -> (server, wrk script arguments, warm-up arguments)
            "bare": ("bare", ["get", str(sb.workdir / "bare.paths")], None),
            "list_1k": ("tickets_1k", ["get", str(sb.workdir / "tickets_1k.paths")], None),
            "list_100k": ("tickets_100k", ["get", str(sb.workdir / "tickets_100k.paths")], None),
            "first_100k": ("tickets_100k", ["get", str(sb.workdir / "first.paths")], None),
            "search_100k": ("tickets_100k", ["get", str(sb.workdir / "search.paths")], None),
            "post_tickets": (
                "tickets_100k",
                ["post-json", "/api/tickets", body, cookies["seller"]],
                None,
            ),
            "post_orders": (
                "orders",
                ["post-each", "/api/orders", str(sb.workdir / "orders-measure"), buyers_prefix],
                ["post-each", "/api/orders", str(sb.workdir / "orders-warmup"), buyers_prefix],
            ),
        }

        def warm_up(name: str) -> None:
            server, args, warmup = loads[name]
            run_wrk(wrk, servers[server].url, warmup or args, seconds=scale.warmup_seconds)

        def measure(name: str) -> Measurement:
            server, args, _ = loads[name]
            progress(f"{results.label(name) if name in ENDPOINTS else 'bare view'}: {seconds} s")
            relay = relays.get(server)
            meter = CpuMeter(
                server_group=servers[server].process.pid,
                relay_group=relay.process.pid if relay else 0,
                db_prefix=sb.names.db_prefix,
            )
            meter.start()
            measured = run_wrk(wrk, servers[server].url, args, seconds=seconds)
            measured.cpu = meter.stop(measured.requests)
            return measured

        # The list: both tables back to back (their p50s make the 100k/1k ratio), right
        # after the ceiling they are compared with.
        for name in ("bare", "list_1k", "list_100k"):
            warm_up(name)
        ceiling = measure("bare")
        for name in ("list_1k", "list_100k"):
            results.pairs[name] = Pair(endpoint=measure(name), bare=ceiling)
        # Search: its first pages beside the unfiltered first page, back to back.
        warm_up("search_100k")
        for name in ("first_100k", "search_100k"):
            results.pairs[name] = Pair(endpoint=measure(name), bare=ceiling)
        results.plans, results.list_index_used = explain_list()

        # Each write right after its own ceiling; the rows it created, beside wrk's count.
        for name, table, db in (
            ("post_tickets", "tickets_ticket", "tickets_100k"),
            ("post_orders", "orders_order", "orders"),
        ):
            warm_up(name)
            ceiling = measure("bare")
            before = count_rows(sb.db_urls[db], table)
            results.pairs[name] = Pair(endpoint=measure(name), bare=ceiling)
            results.rows_created[name] = count_rows(sb.db_urls[db], table) - before

        results.outbox_unsent = wait_outbox_sent(sb)
        results.machine["loadavg_1min_end"] = os.getloadavg()[0]
        progress("cleaning up")
    results.broken = broken(results)
    return report(results, print_table, json_path)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__,
        smoke=f"the same run at {SMOKE.small_table} and {SMOKE.large_table} tickets, about 30 s:"
        " checks that the bench works (make test runs it)",
    )
    args, scale = parse_scaled(
        parser, argv, FULL, SMOKE, option="seconds", minimum=1, help="length of each measurement"
    )
    # Errors, not slowness: a missed target never fails the run.
    return main_of(lambda: 1 if run(args.json, scale, smoke=args.smoke).broken else 0)


if __name__ == "__main__":
    sys.exit(main())

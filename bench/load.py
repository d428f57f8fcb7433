"""Load benchmark: the whole journey (sign up, browse, sell, buy, pay) under Locust, headless.

    .venv/bin/python bench/load.py                  # from the repo root, after `make test`
    make bench-load                                 # the same
    .venv/bin/python bench/load.py --seconds 30     # a shorter run (default 60 s)
    .venv/bin/python bench/load.py --saturate       # more users step by step: the limit
    .venv/bin/python bench/load.py --smoke          # a few users for seconds: does it run?
    .venv/bin/python bench/load.py --json out.json  # summary.json's figures there, too

One run (about two minutes) starts the real system with devtools' Stack (a gunicorn per
service behind the nginx gateway, every Celery worker, expiration_worker, localstripe) on
throw-away databases and a throw-away RabbitMQ vhost, sells SEED_TICKETS tickets so the
first buyers find something, then runs bench/locustfile.py in `locust --headless` with
USERS users spawned at SPAWN_RATE for a fixed time. Meanwhile every process of the stack
(and this run's PostgreSQL backends, and Locust) is sampled from /proc for its resident
memory; CPU is accounted around the run.

It writes to var/bench/load/ (or --out DIR): summary.json (every figure below), load.png
(throughput and latency over the run) and locust.log; it prints:

- per endpoint: requests, req/s, p50/p95/p99/max in ms (exact, from every sample), errors;
- purchases completed per second (payments answered 201), each checked afterwards in
  orders_svc's database: the order must reach `complete` (payment.created handled);
- the retries the journey made while a replica caught up (404s, expected; see locustfile);
- peak RSS per process of the stack, and CPU per part of the machine during the run.

The exit status is 1 if there was any error: a failed request (wrong status, missing
field, timeout, connection error), a paid order not complete in orders_svc, or Locust
exiting non-zero. Everything it creates goes at the end, also on failure, Ctrl-C or SIGTERM.

--saturate raises the users step by step (bench/locustfile.py, SaturationSteps) until a
step's p95 passes P95_LIMIT_MS or any error appears, and prints each step and the highest
purchases/s a step sustained with zero errors. Errors in the step that stopped the run are
the finding, not a failure: it exits 1 only when no step passed or a paid order never
completed. --smoke runs the same code paths with a few users for a few
seconds (with or without --saturate) and exits 1 on any error.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests
from _common import (
    CLOCK_TICKS,
    NOISY_CORES,
    OTHER_CPU,
    Names,
    StackCpuMeter,
    argument_parser,
    busy_ticks,
    create_names,
    machine_summary,
    main_of,
    percentile,
    process_table,
    progress,
    start_stack,
    started_at,
    wait_replicated,
    write_json,
)

from ticketing_devtools.catalog import REPO_ROOT
from ticketing_devtools.stack import Stack

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_OUT = REPO_ROOT / "var" / "bench" / "load"

# Users and pacing are chosen for the 2-core machine (bench/README.md, "Load"): with the
# journey's 0.5-1.5 s think time (~4.5 s a journey), 60 users offer ~13 purchases a second,
# about what --saturate finds the machine sustains: a fixed run near the limit, in a minute.
USERS = 60
# A sign-up costs ~0.27 s of CPU (Argon2id, 100 MiB, 8 lanes): 2 a second is ~0.5 core,
# which the journeys of the users already running share during the ramp.
SPAWN_RATE = 2.0
RUN_SECONDS = 60  # ramp + ~30 s at full load: one minute keeps `make bench` short
# Tickets for sale before the run starts, by a seller who does not take part, so that the
# first users' first browse already finds something to buy.
SEED_TICKETS = 100
# Resident memory is sampled this often: a 60 s run gets ~240 samples per process, enough
# to catch a peak that lasts a second, for ~5 ms of CPU per pass over /proc.
RSS_INTERVAL_SECONDS = 0.25
# How long a paid order has to reach `complete` in orders_svc after the run (the
# payment.created event): a saturated machine drains its queues within seconds.
COMPLETE_TIMEOUT_SECONDS = 60.0
SEED_TIMEOUT_SECONDS = 60.0
# Locust stops users at the deadline; this bounds its own shutdown.
LOCUST_GRACE_SECONDS = 60.0
# Above this a sign-up is slower than a person waits; every rate limit stays out of the way
# (load from one IP is not what the limits are for) but is still evaluated on every request.
RATE_UNLIMITED = "1000000/min"
SEED_PASSWORD = "load-bench-Passw0rd!"  # noqa: S105 (throw-away user, throw-away database)

# --saturate. The limit is the p95 the target asks of the whole journey; 20 users a step
# moves the offered load by ~4 purchases/s (a user's journey takes ~4.5 s with its think
# time), fine enough to place the limit, coarse enough to reach it in a few minutes.
P95_LIMIT_MS = 500.0
SATURATE_START_USERS = 20
SATURATE_STEP_USERS = 20
# A bound on the run (~30 s a step), far above what two cores sustain.
SATURATE_MAX_USERS = 400
# Faster than SPAWN_RATE, as a step's sign-ups are over before its measurement starts:
# 20 sign-ups at 5/s are ~5 s of CPU spread over 4 s.
SATURATE_SPAWN_RATE = 5.0
# After a step's last sign-up: about one journey, so the new users' first pages (all at
# once) are behind them, then the window the step's figures come from.
SETTLE_SECONDS = 5.0
MEASURE_SECONDS = 20.0
# The longest a step waits for its sign-ups (locustfile.SIGNUP_TIMEOUT_SECONDS; not
# imported: importing Locust patches this process for gevent): with settle and measure, it
# bounds how long Locust may take per step.
SIGNUP_BOUND_SECONDS = 60.0


@dataclass(frozen=True)
class Plan:
    """What one run offers: a fixed load (users, seconds) or saturation steps."""

    users: int
    seconds: int
    spawn_rate: float
    seed_tickets: int
    steps: dict[str, float] | None = None  # saturation: bench/locustfile.py's LOAD_STEPS
    smoke: bool = False

    @property
    def locust_bound_seconds(self) -> float:
        if self.steps is None:
            return self.seconds + LOCUST_GRACE_SECONDS
        count = math.ceil((self.steps["max"] - self.steps["start"]) / self.steps["step"]) + 1
        per_step = SIGNUP_BOUND_SECONDS + self.steps["settle"] + self.steps["measure"]
        return count * per_step + LOCUST_GRACE_SECONDS


def saturation_steps(*, start: int, step: int, most: int, smoke: bool) -> dict[str, float]:
    if smoke:
        # Two tiny steps, whatever their latency (a smoke run checks the paths, the step
        # change and the table, not a limit), long enough for purchases in each.
        return {"start": 2, "step": 2, "max": 4, "spawn_rate": 10.0, "settle": 1.0,
                "measure": 7.0, "p95_ms": 30_000.0}  # fmt: skip
    return {
        "start": start,
        "step": step,
        "max": most,
        "spawn_rate": SATURATE_SPAWN_RATE,
        "settle": SETTLE_SECONDS,
        "measure": MEASURE_SECONDS,
        "p95_ms": P95_LIMIT_MS,
    }


# --smoke: every path (sign-up, browse, sell, buy, pay, the figures) with a few users in
# about 15 s of load; long enough for a user's first purchase (three think times).
SMOKE_USERS = 3
SMOKE_SECONDS = 15
SMOKE_SEED_TICKETS = 5


# ---------------------------------------------------------------------------------------
# Set-up: throw-away databases, vhost and work directory, then the Stack
# ---------------------------------------------------------------------------------------


def stack_env(names: Names) -> dict[str, str]:
    return {
        "RATE_LIMIT_SIGNUP": RATE_UNLIMITED,
        "RATE_LIMIT_SIGNIN": RATE_UNLIMITED,
        "RATE_LIMIT_EMAIL": RATE_UNLIMITED,
        # A simulated buyer retries its payment while payments_svc learns of the order.
        "RATE_LIMIT_PAYMENTS": RATE_UNLIMITED,
        "RATE_LIMIT_PAYMENT_CHECKS": RATE_UNLIMITED,
        "RATE_LIMIT_KEY_PREFIX": f"bench-load:{names.suffix}",
        "LOG_LEVEL": "INFO",  # as deployed: an access log line per request
    }


def seed_tickets(base_url: str, names: Names, count: int) -> None:
    """`count` tickets for sale by a seller outside the run, waited for in orders' replica."""
    with requests.Session() as seller:
        email = f"load-seed-{uuid.uuid4().hex[:12]}@example.com"
        signup = seller.post(
            f"{base_url}/api/users/signup",
            json={"email": email, "password": SEED_PASSWORD},
            timeout=30,
        )
        signup.raise_for_status()
        ids = []
        for index in range(count):
            response = seller.post(
                f"{base_url}/api/tickets",
                json={"title": f"Seed ticket {index}", "price": "25.00"},
                timeout=30,
            )
            response.raise_for_status()
            ids.append(response.json()["id"])
    wait_replicated(names, ids, timeout=SEED_TIMEOUT_SECONDS)


# ---------------------------------------------------------------------------------------
# Measuring: resident memory sampled through the run, CPU around it
# ---------------------------------------------------------------------------------------

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class MemorySampler:
    """Peak RSS of every process of the stack (by role), of Locust, and of this run's
    PostgreSQL backends together, sampled every RSS_INTERVAL_SECONDS on a thread."""

    def __init__(self, system: Stack, db_prefix: str, cpu: CpuMeter) -> None:
        # Each supervised child leads its own process group: a gunicorn master and its
        # workers, nginx's master and workers, a Celery worker.
        self.groups = {child.process.pid: child.name for child in system.supervisor.children}
        self.db_prefix = db_prefix
        self.cpu = cpu  # its categories, for the CPU of each saturation step
        self.locust_pid: int | None = None
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (role, peak bytes)
        self.pg_peak = 0
        self.samples = 0
        self.busy: list[tuple[float, int]] = []  # (wall time, busy ticks of all cores)
        self.loadavg: list[tuple[float, float]] = []  # (wall time, 1-min load average)
        # (wall time, pid -> (CPU category, ticks)) of every process but the rest's
        self.ticks: list[tuple[float, dict[int, tuple[str, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _role(self, pid: int, group: int, cmdline: str) -> str | None:
        if pid == self.locust_pid:
            return "locust (load generator)"
        name = self.groups.get(group)
        if name is None:
            return None
        if name.endswith("-web"):
            return f"{name} gunicorn {'master' if pid == group else 'worker'}"
        if name == "gateway":
            return f"nginx {'master' if pid == group else 'worker'}"
        return name

    def cores_between(self, start: float, end: float) -> float | None:
        """Cores the whole machine kept busy on average between two wall times."""
        inside = [(at, ticks) for at, ticks in self.busy if start <= at <= end]
        if len(inside) < 2:
            return None
        (t0, b0), (t1, b1) = inside[0], inside[-1]
        return (b1 - b0) / CLOCK_TICKS / (t1 - t0) if t1 > t0 else None

    def cores_by_category(self, start: float, end: float) -> dict[str, float]:
        """Cores each CPU category used on average between two wall times; the rest of the
        machine's busy time is OTHER_CPU."""
        inside = [(at, ticks) for at, ticks in self.ticks if start <= at <= end]
        busy = [(at, ticks) for at, ticks in self.busy if start <= at <= end]
        if len(inside) < 2 or len(busy) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        used: dict[str, float] = defaultdict(float)
        for pid, (category, ticks) in last.items():
            # A process that started in between counts from zero; one that ended, not at all.
            used[category] += max(0, ticks - first.get(pid, (category, 0))[1]) / CLOCK_TICKS
        machine = (busy[-1][1] - busy[0][1]) / CLOCK_TICKS
        used[OTHER_CPU] = max(0.0, machine - sum(used.values()))
        return {name: seconds / (t1 - t0) for name, seconds in sorted(used.items())}

    def loadavg_at(self, moment: float) -> float | None:
        """The 1-min load average last sampled at or before `moment`."""
        before = [value for at, value in self.loadavg if at <= moment]
        return before[-1] if before else None

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_SECONDS):
            now = time.time()
            self.busy.append((now, busy_ticks()))
            self.loadavg.append((now, os.getloadavg()[0]))
            pg_total = 0
            table = process_table()
            ticks = {}
            for pid, (group, cpu_ticks, uid, cmdline) in table.items():
                category = self.cpu.category(pid, group, uid, cmdline)
                if category != OTHER_CPU:
                    ticks[pid] = (category, cpu_ticks)
            self.ticks.append((now, ticks))
            for pid, (group, _ticks, _uid, cmdline) in table.items():
                rss = None
                role = self._role(pid, group, cmdline)
                if role is not None:
                    rss = _rss_bytes(pid)
                    if rss is not None and rss > self.peaks.get(pid, ("", 0))[1]:
                        self.peaks[pid] = (role, rss)
                elif cmdline.startswith("postgres: ") and f"{self.db_prefix}_" in cmdline:
                    pg_total += _rss_bytes(pid) or 0
            self.pg_peak = max(self.pg_peak, pg_total)
            self.samples += 1

    def summary(self) -> list[dict[str, Any]]:
        """Per role: processes, the largest peak of one of them, the sum of their peaks."""
        roles: dict[str, list[int]] = defaultdict(list)
        for role, peak in self.peaks.values():
            roles[role].append(peak)
        rows = [
            {
                "process": role,
                "count": len(peaks),
                "peak_rss_mib": max(peaks) / 2**20,
                "sum_of_peaks_mib": sum(peaks) / 2**20,
            }
            for role, peaks in sorted(roles.items())
        ]
        rows.append(
            {
                "process": "postgres backends of this run (together; shared buffers counted"
                " in each)",
                "count": None,
                "peak_rss_mib": self.pg_peak / 2**20,
                "sum_of_peaks_mib": self.pg_peak / 2**20,
            }
        )
        return rows


LOCUST_CPU = "locust (load generator)"


class CpuMeter(StackCpuMeter):
    """CPU used between start() and stop(): the stack, this run's PostgreSQL backends, the
    database and broker servers, Locust, and the rest of the machine."""

    def __init__(self, system: Stack, db_prefix: str) -> None:
        super().__init__(system, db_prefix)
        self.locust_pid: int | None = None

    def process_category(self, name: str) -> str:
        if name.endswith("-web"):
            return f"{name} (gunicorn)"
        if name == "gateway":
            return "nginx gateway"
        if name == "localstripe":
            return "localstripe (the Stripe fake)"
        return f"{name} (celery)"

    def category(self, pid: int, group: int, uid: int, cmdline: str) -> str:
        if pid == self.locust_pid:
            return LOCUST_CPU
        if "redis-server" in cmdline:
            return "redis (rate limits)"
        return super().category(pid, group, uid, cmdline)

    def stop(self, locust_seconds: float) -> dict[str, float]:
        """Cores used on average per category, plus "machine" (all busy CPU). Locust has
        exited by now, so its CPU seconds come from its rusage (`locust_seconds`)."""
        wall, busy, used = self.measure({LOCUST_CPU: locust_seconds})
        cores = {name: seconds / wall for name, seconds in sorted(used.items())}
        cores["machine"] = busy / wall
        return cores


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------


def run_locust(
    base_url: str, names: Names, plan: Plan, meters: list[Any]
) -> tuple[int, Path, Path]:
    """`locust --headless` over bench/locustfile.py: (exit code, samples file, its log)."""
    samples = names.workdir / "samples.json"
    log_path = names.workdir / "locust.log"
    # Saturation steps come from the locustfile's shape, which replaces these three.
    fixed_load = [
        *("--users", str(plan.users), "--spawn-rate", str(plan.spawn_rate)),
        *("--run-time", f"{plan.seconds}s"),
    ]
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        base_url,
        *(fixed_load if plan.steps is None else []),
        "--stop-timeout",
        "0",  # users stop mid-journey at the deadline; see "unpaid" in the summary
        "--loglevel",
        "WARNING",
    ]
    env = {**os.environ, "LOAD_SAMPLES_PATH": str(samples)}
    if plan.steps is not None:
        env["LOAD_STEPS"] = json.dumps(plan.steps)
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 (the virtualenv's locust, fixed args)
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        for meter in meters:
            meter.locust_pid = process.pid
        try:
            code = process.wait(timeout=plan.locust_bound_seconds)
        except BaseException:
            process.kill()
            process.wait()
            raise
    return code, samples, log_path


def wait_complete(names: Names, order_ids: list[str]) -> tuple[dict[str, int], set[str]]:
    """Statuses in orders_svc of the paid orders, once all are complete or at the bound,
    and the ids of those that are not complete."""
    deadline = time.monotonic() + COMPLETE_TIMEOUT_SECONDS
    with psycopg.connect(names.admin_db_url("orders"), autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT id::text, status FROM orders_order WHERE id = ANY(%s::uuid[])",
                [order_ids],
            ).fetchall()
            status_of = dict(rows)
            complete = sum(1 for status in status_of.values() if status == "complete")
            if complete == len(order_ids) or time.monotonic() > deadline:
                statuses: dict[str, int] = defaultdict(int)
                for status in status_of.values():
                    statuses[status] += 1
                statuses["missing"] = len(order_ids) - len(status_of)
                late = {o for o in order_ids if status_of.get(o) != "complete"}
                return dict(statuses), late
            time.sleep(0.5)


def order_statuses(names: Names) -> dict[str, int]:
    return dict(names.query("orders", "SELECT status, count(*) FROM orders_order GROUP BY status"))


# ---------------------------------------------------------------------------------------
# Figures, table and chart
# ---------------------------------------------------------------------------------------


def endpoint_figures(samples: list[list[Any]], seconds: float) -> list[dict[str, Any]]:
    by_name: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    for _end, name, ms, failed in samples:
        by_name[name].append((ms, failed))
    rows = []
    for name, values in sorted(by_name.items()):
        ordered = sorted(ms for ms, _failed in values)
        rows.append(
            {
                "endpoint": name,
                "requests": len(values),
                "rps": len(values) / seconds,
                "p50_ms": percentile(ordered, 50),
                "p95_ms": percentile(ordered, 95),
                "p99_ms": percentile(ordered, 99),
                "max_ms": ordered[-1],
                "errors": sum(1 for _ms, failed in values if failed),
            }
        )
    return rows


def timeline(samples: list[list[Any]], purchases: list[list[Any]], start: float) -> dict:
    """Per second of the run: requests, errors, purchases, p50/p95/p99 of all requests."""
    seconds = int(max([s[0] for s in samples] + [start]) - start) + 1
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    errors = [0] * seconds
    bought = [0] * seconds
    for end, _name, ms, failed in samples:
        index = min(seconds - 1, max(0, int(end - start)))
        latencies[index].append(ms)
        errors[index] += failed
    for at, _order in purchases:
        bought[min(seconds - 1, max(0, int(at - start)))] += 1

    def pct(values: list[float], p: float) -> float | None:
        return percentile(sorted(values), p) if values else None

    return {
        "second": list(range(seconds)),
        "rps": [len(v) for v in latencies],
        "errors": errors,
        "purchases": bought,
        "p50_ms": [pct(v, 50) for v in latencies],
        "p95_ms": [pct(v, 95) for v in latencies],
        "p99_ms": [pct(v, 99) for v in latencies],
    }


def draw_chart(line: dict, path: Path, title: str, ramp_seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, dpi=90)
    top.plot(line["second"], line["rps"], label="requests/s (all endpoints)", color="tab:blue")
    top.plot(line["second"], line["purchases"], label="purchases completed/s", color="tab:green")
    if any(line["errors"]):
        top.plot(line["second"], line["errors"], label="errors/s", color="tab:red")
    top.set_ylabel("per second")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    for key, color in (("p50_ms", "tab:blue"), ("p95_ms", "tab:orange"), ("p99_ms", "tab:red")):
        bottom.plot(line["second"], line[key], label=key.replace("_ms", ""), color=color)
    bottom.set_ylabel("latency, ms (all requests)")
    bottom.set_xlabel("seconds into the run")
    bottom.legend(loc="upper left")
    bottom.grid(alpha=0.3)
    for axis in (top, bottom):
        axis.axvspan(0, ramp_seconds, color="grey", alpha=0.12, lw=0)
    top.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _load_line(summary: dict[str, Any]) -> str:
    steps = summary.get("plan_steps")
    smoke = "  SMOKE (tiny sizes: figures not comparable)" if summary.get("smoke") else ""
    if steps is None:
        return (
            f"load     {summary['users']} users (spawned {summary['spawn_rate']}/s),"
            f" {summary['seconds']:.0f} s, think time 0.5-1.5 s between steps{smoke}"
        )
    return (
        f"load     saturation: {steps['start']:.0f} users, then {steps['step']:.0f} more a step"
        f" (spawned {steps['spawn_rate']}/s) until p95 > {steps['p95_ms']:.0f} ms or an error;"
        f" each step measured {steps['measure']:.0f} s, {steps['settle']:.0f} s after its"
        f" users had signed up; think time 0.5-1.5 s; {summary['seconds']:.0f} s in all{smoke}"
    )


def _steps_lines(summary: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"{'step':<6} {'users':>5} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7}"
        f" {'purchases/s':>11} {'nothing':>7} {'errors':>6} {'machine':>7} {'load':>5}  verdict",
    ]

    def ms(value: float | None) -> str:
        return f"{value:>7.1f}" if value is not None else f"{'-':>7}"

    for number, row in enumerate(summary["steps"], 1):
        cores, load = row.get("machine_cores"), row.get("loadavg")
        cores_text = "-" if cores is None else f"{cores:.2f}"
        load_text = "-" if load is None else f"{load:.1f}"
        lines.append(
            f"{number:<6} {row['users']:>5} {row['rps']:>7.1f} {ms(row['p50_ms'])}"
            f" {ms(row['p95_ms'])} {ms(row['p99_ms'])} {row['purchases_per_second']:>11.2f}"
            f" {row['nothing_to_buy']:>7} {row['errors']:>6} {cores_text:>7} {load_text:>5}"
            f"  {row.get('stopped') or 'passed'}"
        )
        lines += [f"{'':<8}{example}" for example in row.get("error_examples", [])]
    lines.append(
        "(each step's window: latency of every request, purchases completed per second,"
        " journeys with nothing to buy, machine cores busy, 1-min load average at its end;"
        " errors over the whole step, its sign-ups included)"
    )
    best = summary["saturation"]
    if best is None:
        lines.append("saturation  NO STEP PASSED: no figure (see the first step's verdict)")
    else:
        lines.append(
            f"saturation  highest purchases/s sustained with zero errors:"
            f" {best['purchases_per_second']:.2f}/s at {best['users']} users"
            f" (p95 {best['p95_ms']:.0f} ms, {best['rps']:.1f} req/s)"
        )
    last = summary["steps"][-1] if summary["steps"] else None
    if last is not None and last.get("stopped"):
        lines.append(f"            stopped at {last['users']} users: {last['stopped']}")
    for row in [best, last] if best is not last else [best]:
        if row and row.get("cpu_cores"):
            lines += _step_cpu_lines(row)
    return lines


def _step_cpu_lines(row: dict[str, Any]) -> list[str]:
    """Where a step's CPU went: cores per part, and CPU ms per purchase completed."""
    per_second = row["purchases_per_second"]
    lines = [
        f"cpu at {row['users']} users  cores used in the step's window, and CPU ms per"
        f" purchase ({per_second:.2f}/s; sign-ups are outside the window):"
    ]
    ours = {name: cores for name, cores in row["cpu_cores"].items() if name != OTHER_CPU}
    ranked = [("this run, all parts", sum(ours.values()))]
    ranked += sorted(ours.items(), key=lambda item: -item[1])
    for name, cores in ranked:
        if cores >= 0.005:
            per_purchase = f"{cores * 1000 / per_second:>7.1f} ms" if per_second else ""
            lines.append(f"            {name:<44} {cores:>5.2f} {per_purchase}")
    other = row["cpu_cores"].get(OTHER_CPU, 0.0)
    lines.append(f"            {OTHER_CPU:<44} {other:>5.2f}")
    return lines


def print_table(summary: dict[str, Any]) -> None:
    lines = [
        _load_line(summary),
        f"machine  {summary['machine']['summary']}; load average (1 min)"
        f" {summary['machine']['loadavg_1min_start']:.2f} at the start,"
        f" {summary['machine']['loadavg_1min_end']:.2f} at the end",
        "",
        f"{'endpoint':<52} {'requests':>8} {'req/s':>7} {'p50':>7} {'p95':>7} {'p99':>7}"
        f" {'max':>7} {'errors':>6}",
    ]
    for row in summary["endpoints"]:
        lines.append(
            f"{row['endpoint']:<52} {row['requests']:>8} {row['rps']:>7.1f}"
            f" {row['p50_ms']:>7.1f} {row['p95_ms']:>7.1f} {row['p99_ms']:>7.1f}"
            f" {row['max_ms']:>7.0f} {row['errors']:>6}"
        )
    t = summary["total"]
    lines += [
        f"{'all requests':<52} {t['requests']:>8} {t['rps']:>7.1f} {t['p50_ms']:>7.1f}"
        f" {t['p95_ms']:>7.1f} {t['p99_ms']:>7.1f} {t['max_ms']:>7.0f} {t['errors']:>6}",
        "(latency in ms, measured by Locust from request to full response; req/s over the"
        " whole run, ramp included)",
    ]
    if summary.get("steps") is not None:
        lines += _steps_lines(summary)
    full_load = summary["purchases_per_second_full_load"]
    lines += [
        "",
        f"purchases completed  {summary['purchases']} = {summary['purchases_per_second']:.2f}/s"
        " over the run"
        + (f", {full_load:.2f}/s once all users ran" if full_load is not None else "")
        + f"; in orders_svc afterwards: {summary['paid_orders_status']}",
        f"orders               every status in orders_svc: {summary['all_orders_status']}"
        " ('created': users stopped between buy and pay at the deadline)",
        f"replica retries      {summary['replica_retries']} (a 404 retried while the"
        " ticket's or order's event was on its way: expected, listed apart above)",
        f"nothing to buy       {summary['nothing_to_buy']} journeys found no free ticket"
        " of someone else's on the first page",
        "",
        f"memory   peak RSS sampled every {RSS_INTERVAL_SECONDS} s"
        f" ({summary['rss_samples']} samples)",
    ]
    for row in summary["memory"]:
        count = f"x{row['count']}" if row["count"] else ""
        lines.append(
            f"         {row['process']:<52} {count:>4} {row['peak_rss_mib']:>7.1f} MiB"
            + (f"  (sum {row['sum_of_peaks_mib']:.0f} MiB)" if (row["count"] or 0) > 1 else "")
        )
    lines.append(f"         {'all of the above':<57} {summary['memory_total_mib']:>7.0f} MiB")
    lines.append("cpu      cores used on average over the run:")
    for name, cores in summary["cpu_cores"].items():
        lines.append(f"         {name:<52} {cores:>5.2f}")
    lines += ["", f"errors   {summary['errors']}  ({summary['verdict']})"]
    lines += [f"WARNING  {w}" for w in summary["warnings"]]
    print("\n".join(lines), flush=True)


def summarise(data: dict[str, Any], seconds: float, plan: Plan, machine: dict[str, Any]) -> dict:
    samples = data["samples"]
    ordered = sorted(s[2] for s in samples)
    # The run starts with Locust's first request (its own start-up is not the system's).
    start = min((s[0] - s[2] / 1000 for s in samples), default=time.time())
    steps = data.get("steps") if plan.steps is not None else None
    users = max((row["users"] for row in steps), default=0) if steps is not None else plan.users
    ramp = users / plan.spawn_rate
    full_load = [p for p in data["purchases"] if p[0] - start >= ramp]
    return {
        "users": users,
        "spawn_rate": plan.spawn_rate,
        "seconds": seconds,
        "ramp_seconds": ramp,
        "smoke": plan.smoke,
        "plan_steps": plan.steps,
        "machine": machine,
        "endpoints": endpoint_figures(samples, seconds),
        "total": {
            "requests": len(samples),
            "rps": len(samples) / seconds,
            "p50_ms": percentile(ordered, 50) if ordered else None,
            "p95_ms": percentile(ordered, 95) if ordered else None,
            "p99_ms": percentile(ordered, 99) if ordered else None,
            "max_ms": ordered[-1] if ordered else None,
            "errors": sum(1 for s in samples if s[3]),
        },
        "purchases": len(data["purchases"]),
        "purchases_per_second": len(data["purchases"]) / seconds,
        # Steps have no single "full load": their own windows say it.
        "purchases_per_second_full_load": (
            len(full_load) / max(1.0, seconds - ramp) if steps is None else None
        ),
        "nothing_to_buy": data["counters"].get("nothing_to_buy", 0),
        "replica_retries": sum(1 for s in samples if "not yet replicated" in s[1]),
        "steps": steps,
        "timeline": timeline(samples, data["purchases"], start),
    }


def judge_steps(
    summary: dict[str, Any], purchases: list[list[Any]], late: set[str], memory: MemorySampler
) -> None:
    """Each step's machine load and paid orders left incomplete (which fail it), then the
    highest purchases/s of a step that passed."""
    best = None
    for row in summary["steps"]:
        if "settled" in row:
            row["machine_cores"] = memory.cores_between(row["settled"], row["end"])
            row["cpu_cores"] = memory.cores_by_category(row["settled"], row["end"])
            row["loadavg"] = memory.loadavg_at(row["end"])
            row["paid_not_complete"] = sum(
                1 for at, order in purchases if order in late and row["start"] <= at < row["end"]
            )
            if row["paid_not_complete"] and not row["past_limit"]:
                row["stopped"] = f"{row['paid_not_complete']} paid orders never completed"
                row["past_limit"] = True
        if row.get("past_limit"):
            break  # the limit: no later step counts
        if best is None or row["purchases_per_second"] > best["purchases_per_second"]:
            best = row
    summary["saturation"] = best


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def run(out_dir: Path, plan: Plan, json_path: Path | None = None) -> int:
    began = started_at()
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        names = create_names(stack, "load")
        progress(f"starting the system (databases {names.db_prefix}_*, vhost {names.vhost})")
        system = start_stack(stack, names, stack_env(names))
        # Not `import locust`: that monkey-patches this process for gevent (threads, sockets).
        machine = machine_summary(
            names.admin_db_url("orders"),
            names.vhost_url,
            locust=importlib.metadata.version("locust"),
        )
        progress(f"selling {plan.seed_tickets} seed tickets through {system.url}")
        seed_tickets(system.url, names, plan.seed_tickets)

        if plan.steps is None:
            progress(f"locust: {plan.users} users at {plan.spawn_rate}/s for {plan.seconds} s")
        else:
            progress(f"locust: saturation steps {plan.steps}")
        cpu = CpuMeter(system, names.db_prefix)
        memory = MemorySampler(system, names.db_prefix, cpu)
        memory.start()
        cpu.start()
        locust_started = time.monotonic()
        # Locust is the only child that exits meanwhile: the children's rusage is its CPU.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        try:
            code, samples_path, log_path = run_locust(system.url, names, plan, [memory, cpu])
        finally:
            memory.stop()
        seconds = plan.seconds if plan.steps is None else time.monotonic() - locust_started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cores = cpu.stop(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        shutil.copy(log_path, out_dir / "locust.log")
        # The services' log so far, kept beside the figures: what to read when a run fails.
        shutil.copy(names.stack_log, out_dir / "stack.log")
        if not samples_path.exists():
            print((out_dir / "locust.log").read_text()[-4000:], file=sys.stderr)
            raise SystemExit(f"locust exited with {code} and left no samples")
        data = json.loads(samples_path.read_text())

        summary = summarise(data, seconds, plan, machine)
        paid = [order_id for _at, order_id in data["purchases"]]
        progress(f"waiting for {len(paid)} paid orders to be complete in orders_svc")
        summary["paid_orders_status"], late = wait_complete(names, paid) if paid else ({}, set())
        summary["all_orders_status"] = order_statuses(names)
        summary["memory"] = memory.summary()
        summary["memory_total_mib"] = sum(
            row["sum_of_peaks_mib"] for row in summary["memory"] if "locust" not in row["process"]
        )
        summary["rss_samples"] = memory.samples
        summary["cpu_cores"] = cores
        summary["locust_exit_code"] = code
        summary["started_at"] = began
        machine["loadavg_1min_end"] = os.getloadavg()[0]

        summary["errors"] = summary["total"]["errors"] + len(late)
        if code != 0 and summary["total"]["errors"] == 0:
            summary["errors"] += 1  # Locust failed in a way no sample shows: see locust.log
        summary["warnings"] = []
        if plan.steps is not None:
            judge_steps(summary, data["purchases"], late, memory)
            # The step that found the limit may hold errors (that is how it ended): the run
            # fails when no step passed, or a payment never completed (a lost event is a
            # fault at any load, and a minute drains any backlog the last step left).
            passed = summary["saturation"] is not None
            summary["failed"] = not passed or bool(late)
            summary["verdict"] = (
                "the last step's errors are how it ended"
                if passed and summary["errors"]
                else ("zero errors" if passed else "NO STEP PASSED: the run does not count")
            )
        else:
            summary["failed"] = summary["errors"] > 0
            summary["verdict"] = (
                "zero errors" if summary["errors"] == 0 else "ERRORS: the run does not count"
            )
        if plan.smoke:
            summary["failed"] = summary["errors"] > 0
            if summary["errors"]:
                summary["verdict"] = "ERRORS: a smoke run must have none"
        other = cores.get(OTHER_CPU, 0.0)
        if other > NOISY_CORES:
            summary["warnings"].append(
                f"other processes took {other:.2f} cores during the run: the figures"
                " understate this code on a quiet machine"
            )
        if late:
            summary["warnings"].append(
                f"{len(late)} paid orders were not complete in orders_svc"
                f" {COMPLETE_TIMEOUT_SECONDS:.0f} s after the run"
            )
        if not paid:
            summary["warnings"].append("no purchase was completed")
            summary["errors"] = max(1, summary["errors"])
            summary["failed"] = True
        progress("cleaning up")

    users = summary["users"]
    title = (
        f"bench/load.py {began}: {users} users"
        + (f" (ramp {summary['ramp_seconds']:.0f} s, shaded)" if plan.steps is None else "")
        + f", {machine['cores']} cores, {summary['errors']} errors"
    )
    draw_chart(
        summary["timeline"],
        out_dir / "load.png",
        title,
        summary["ramp_seconds"] if plan.steps is None else 0.0,
    )
    write_json(out_dir / "summary.json", summary)
    write_json(json_path, summary)
    print_table(summary)
    print(f"\nwritten: {out_dir}/summary.json, load.png, locust.log", flush=True)
    return 1 if summary["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__,
        smoke="a few users for a few seconds (also with --saturate): checks the bench runs;"
        " exits 1 on any error; figures are noise",
        json_help="also write summary.json's figures here",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "--seconds", type=int, default=RUN_SECONDS, help=f"run time, default {RUN_SECONDS}"
    )
    parser.add_argument(
        "--users",
        type=int,
        default=USERS,
        help=f"concurrent users, default {USERS}",
    )
    parser.add_argument(
        "--saturate",
        action="store_true",
        help=f"raise users step by step until p95 > {P95_LIMIT_MS:.0f} ms or an error;"
        " prints the highest purchases/s sustained with zero errors",
    )
    parser.add_argument("--start-users", type=int, default=SATURATE_START_USERS)
    parser.add_argument("--step-users", type=int, default=SATURATE_STEP_USERS)
    parser.add_argument("--max-users", type=int, default=SATURATE_MAX_USERS)
    args = parser.parse_args(argv)
    users = max(1, SMOKE_USERS if args.smoke else args.users)
    steps = None
    if args.saturate:
        steps = saturation_steps(
            start=max(1, args.start_users),
            step=max(1, args.step_users),
            most=max(args.start_users, args.max_users),
            smoke=args.smoke,
        )
    spawn_rate = steps["spawn_rate"] if steps else (10.0 if args.smoke else SPAWN_RATE)
    plan = Plan(
        users=users,
        # At least 10 s past the ramp, so that some of the run is at full load.
        seconds=SMOKE_SECONDS if args.smoke else max(int(users / SPAWN_RATE) + 10, args.seconds),
        spawn_rate=spawn_rate,
        seed_tickets=SMOKE_SEED_TICKETS if args.smoke else SEED_TICKETS,
        steps=steps,
        smoke=args.smoke,
    )
    return main_of(lambda: run(args.out, plan, args.json))


if __name__ == "__main__":
    sys.exit(main())

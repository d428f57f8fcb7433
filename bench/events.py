"""Event bus benchmark: the broker and PostgreSQL ceilings, then the real pipeline beside
them and beside peers doing the same unit of work.

    .venv/bin/python bench/events.py                  # from the repo root, after `make test`
    .venv/bin/python bench/events.py --json out.json  # the same figures as JSON, too
    .venv/bin/python bench/events.py --smoke          # every path and table at tiny sizes

One run (about two minutes, bounded) measures, on the loopback PostgreSQL and RabbitMQ only:

ceilings   kombu publish with publisher confirms, one message at a time, to a quorum queue;
           consume + ack of those messages; a publish -> receive round trip of one message;
           a bare single-row PostgreSQL transaction loop (psycopg, INSERT + COMMIT).
pipeline   publish() in a transaction -> outbox row -> confirmed send -> exchange -> one
           real `celery worker` (shared_lib's demo app) -> inbox + handler updating a replica.
           Throughput: a backlog of events drained by one worker. Latency: events published
           at a steady rate, publisher commit -> handler commit.
peers      the backlog's events again, each consumer from its own quorum queue into its own
           tables, one process, prefetch 32, one transaction per event (inbox row, versioned
           replica upsert, effect row), ack after commit: a bare psycopg loop (no broker), a
           bare kombu consumer, a nameko 2.14 service, a FastStream 0.7 application
           (bench/peers/). Events/s and CPU per event of each, and ours as a ratio to each.

Targets (printed, never asserted): handled events/s per worker >= 50% of the bare one-row
transaction rate, and >= every peer's and the bare loop's rate; p99 publish ->
handled latency < 50 ms at 200 events/s. The exit status is 1 when the run is broken (a
consumer crashed or lost, duplicated or dead-lettered an event), never for a missed target.

The run creates its own database (role `ticketing_bench`) and RabbitMQ vhost and drops
both at the end, also on failure or Ctrl-C. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import importlib.metadata
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    CLOCK_TICKS,
    BrokenRun,
    Names,
    Percentiles,
    argument_parser,
    busy_ticks,
    cpu_ticks,
    create_names,
    machine_summary,
    main_of,
    own_databases,
    process_table,
    progress,
    ready_messages,
    report,
    spread,
    started_at,
    tail,
    verdict,
)
from peers.environments import isolated_python
from peers.work import PREFETCH, PeerConfig, Tables, create_tables

from ticketing_devtools.catalog import REPO_ROOT

SHARED_LIB_DIR = REPO_ROOT / "shared_lib"
# The demo app of shared_lib's own tests (tests.settings, tests.demo, tests.celery_app):
# a service with a ticket replica, the same handler shape orders_svc will have.
sys.path.insert(0, str(SHARED_LIB_DIR))

import psycopg  # noqa: E402 (after the sys.path set-up above, like the rest)
from kombu import Connection, Consumer, Exchange, Queue  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from shared_lib.testing.processes import Process, stop_group  # noqa: E402
from shared_lib.testing.waiting import wait_for  # noqa: E402
from ticketing_devtools.environment import common_env  # noqa: E402

BENCH_ROLE = "ticketing_bench"


@dataclass(frozen=True)
class Sizes:
    broker_messages: int
    round_trips: int
    pg_transactions: int
    backlog_events: int  # the pipeline's backlog, and what each peer consumes
    latency_seconds: float

    @classmethod
    def per_figure(cls, events: int, *, round_trips: int, latency_seconds: float) -> Sizes:
        """`events` for each throughput figure: the broker's, PostgreSQL's, the backlog's."""
        return cls(
            broker_messages=events,
            round_trips=round_trips,
            pg_transactions=events,
            backlog_events=events,
            latency_seconds=latency_seconds,
        )


# Each phase is long enough (a few seconds) that start-up and timer noise are a few percent
# of it, and short enough that the whole run stays around two minutes on a 2-core machine
# where the broker confirms ~1-2k msg/s and PostgreSQL commits ~1-3k tx/s (every commit
# waits for its WAL flush: synchronous_commit=on, as deployed).
FULL = Sizes.per_figure(3000, round_trips=500, latency_seconds=10.0)
# --smoke: the same code paths and tables at a size that runs in seconds (about 200
# events per figure), so a broken benchmark shows in CI; its figures are not comparable.
SMOKE = Sizes.per_figure(200, round_trips=50, latency_seconds=1.0)
# The rate the latency target is stated at: a busy peak for one service, below one
# worker's throughput, so the figure is the path plus the queueing such a load causes.
LATENCY_RATE = 200.0
# One publish (commit, then the confirmed after-commit send) takes 3-4 ms of a thread: one
# thread alone would run at 70-80% of its capacity at 200/s and slip behind the schedule.
# Two threads, like two request threads of a service, hold the rate.
PUBLISHERS = 2
# Bounds on waiting for a consumer, so a broken one ends the run instead of hanging. A
# drain is broken when no event has been handled for STALL_SECONDS (the slowest consumer
# on a busy machine handles dozens a second; start-up takes a few seconds).
DRAIN_TIMEOUT_SECONDS = 60.0
STALL_SECONDS = 30.0
WORKER_START_TIMEOUT_SECONDS = 30.0
PEER_STOP_TIMEOUT_SECONDS = 20.0
# How often a drain is sampled: 1% of the shortest full-size drain (~1.2 s at 2.5k/s).
DRAIN_POLL_SECONDS = 0.01

THROUGHPUT_TARGET_RATIO = 0.50
# The target: one worker at least as fast as every peer and the bare one-transaction loop.
PEER_TARGET_RATIO = 1.0
LATENCY_TARGET_P99_MS = 50.0

NOTIFY_CHANNEL = "bench_handled"


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class Drain:
    """One consumer draining a backlog: the events handled between the first and the last
    commit it was seen making, and the CPU its process and its PostgreSQL backends used
    in that same window."""

    events: int
    seconds: float
    cpu_seconds: float
    db_cpu_seconds: float
    broker_cpu_seconds: float  # RabbitMQ's (its work for this consumer, and anyone else's)
    # The machine's other busy cores meanwhile: PostgreSQL's own processes (WAL writer),
    # this bench's polling, and other load: the noise under the figures.
    other_cores: float

    @property
    def per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_ms_per_event(self) -> float:
        return self.cpu_seconds * 1000 / self.events

    @property
    def db_cpu_ms_per_event(self) -> float:
        return self.db_cpu_seconds * 1000 / self.events

    @property
    def broker_cpu_ms_per_event(self) -> float:
        return self.broker_cpu_seconds * 1000 / self.events


@dataclass
class ConsumerFigures:
    """One consumer's drain of the backlog, as reported: a peer's, or our worker's."""

    label: str
    version: str
    events_per_s: float
    cpu_ms_per_event: float
    db_cpu_ms_per_event: float
    broker_cpu_ms_per_event: float
    other_cores: float
    events: int  # handled in the measured window (the first commit's are before it)
    seconds: float  # the measured window
    wall_seconds: float  # process start to the last event handled

    @classmethod
    def of(cls, label: str, version: str, drain: Drain, wall_seconds: float) -> ConsumerFigures:
        return cls(
            label=label,
            version=version,
            events_per_s=drain.per_s,
            cpu_ms_per_event=drain.cpu_ms_per_event,
            db_cpu_ms_per_event=drain.db_cpu_ms_per_event,
            broker_cpu_ms_per_event=drain.broker_cpu_ms_per_event,
            other_cores=drain.other_cores,
            events=drain.events,
            seconds=drain.seconds,
            wall_seconds=wall_seconds,
        )


# The JSON keys of our worker's figures (Results.handled): flat, beside the ceilings'.
HANDLED_JSON = {
    "events_per_s": "handled_per_s_per_worker",
    "cpu_ms_per_event": "handled_cpu_ms_per_event",
    "db_cpu_ms_per_event": "handled_db_cpu_ms_per_event",
    "broker_cpu_ms_per_event": "handled_broker_cpu_ms_per_event",
    "other_cores": "handled_other_cores",
    "wall_seconds": "handled_wall_seconds",
}


@dataclass
class Results:
    started_at: str
    smoke: bool = False
    sizes: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    broker_publish_per_s: float = 0.0
    broker_consume_per_s: float = 0.0
    broker_round_trip: Percentiles | None = None
    postgres_tx_per_s: float = 0.0
    outbox_publish_per_s: float = 0.0
    outbox_relay_per_s: float = 0.0  # 0: publish() sent each event itself, after commit
    handled: ConsumerFigures | None = None  # our worker draining the backlog
    worker_settings: dict[str, Any] = field(default_factory=dict)
    latency: Percentiles | None = None
    latency_rate_achieved: float = 0.0
    latency_steps: dict[str, Percentiles] = field(default_factory=dict)
    peers: dict[str, ConsumerFigures] = field(default_factory=dict)

    @property
    def ours(self) -> ConsumerFigures:
        assert self.handled is not None
        return self.handled

    @property
    def throughput_ratio(self) -> float:
        return self.ours.events_per_s / self.postgres_tx_per_s

    @property
    def ours_to_peer(self) -> dict[str, float]:
        return {key: self.ours.events_per_s / peer.events_per_s for key, peer in self.peers.items()}

    def as_json(self) -> dict[str, Any]:
        data = spread(asdict(self), "handled", HANDLED_JSON)
        data["throughput_ratio"] = self.throughput_ratio
        data["ours_to_peer"] = self.ours_to_peer
        data["targets"] = {
            "throughput_ratio_min": THROUGHPUT_TARGET_RATIO,
            "ours_to_peer_min": PEER_TARGET_RATIO,
            "latency_p99_ms_max": LATENCY_TARGET_P99_MS,
            "latency_rate": LATENCY_RATE,
        }
        return data


def _consumer_row(label: str, figures: ConsumerFigures) -> str:
    """A row of the peers' table, ours included."""
    return (
        f"{label:49s}{figures.events_per_s:9.0f}{figures.cpu_ms_per_event:11.2f}"
        f"{figures.db_cpu_ms_per_event:10.2f}{figures.broker_cpu_ms_per_event:10.2f}"
        f"{figures.other_cores:13.2f}"
    )


def print_table(r: Results) -> None:
    rt = r.broker_round_trip
    lat = r.latency
    assert rt is not None
    assert lat is not None
    ratio = r.throughput_ratio
    backlog = r.sizes["backlog_events"]
    lines = [
        "",
        f"events bench  {r.started_at}"
        + ("  SMOKE (tiny sizes: figures not comparable)" if r.smoke else ""),
        f"machine  {r.machine.get('summary', '')}",
        f"load     1-min average {r.machine.get('loadavg_1min_start', 0):.2f} at start,"
        f" {r.machine.get('loadavg_1min_end', 0):.2f} at end"
        f" (anything else running on the {r.machine.get('cores')} cores skews the figures)",
        "",
        f"ceiling  broker publish (confirmed)   {r.broker_publish_per_s:8.0f} msg/s",
        f"ceiling  broker consume+ack           {r.broker_consume_per_s:8.0f} msg/s",
        f"ceiling  broker round trip            p50 {rt.p50_ms:.2f} ms  p99 {rt.p99_ms:.2f} ms"
        f"  (confirmed publish, then receive; {rt.samples} msgs one at a time)",
        f"ceiling  postgres 1-row transaction   {r.postgres_tx_per_s:8.0f} tx/s",
        f"pipeline outbox publish (1/tx)        {r.outbox_publish_per_s:8.0f} ev/s"
        + (
            "   (publisher side: commit; the relay sends)"
            if r.outbox_relay_per_s
            else "   (publisher side: commit + after-commit confirmed send)"
        ),
        *(
            [
                f"pipeline outbox relay (backlog)       {r.outbox_relay_per_s:8.0f} ev/s"
                "   (relay_pending in batches, confirmed sends)"
            ]
            if r.outbox_relay_per_s
            else []
        ),
        f"pipeline handled events/s/worker      {r.ours.events_per_s:8.0f} ev/s"
        f"   ratio to postgres tx/s: {ratio:.2f}  (target >= {THROUGHPUT_TARGET_RATIO:.2f}:"
        f" {verdict(ratio >= THROUGHPUT_TARGET_RATIO)})",
        f"         backlog of {backlog} drained by 1 worker in"
        f" {r.ours.wall_seconds:.1f} s (rate: first to last commit seen)",
        f"latency  publish->handled @{LATENCY_RATE:.0f}/s      p50 {lat.p50_ms:.1f} ms"
        f"  p99 {lat.p99_ms:.1f} ms  max {lat.max_ms:.1f} ms"
        f"  (target p99 < {LATENCY_TARGET_P99_MS:.0f} ms:"
        f" {verdict(lat.p99_ms < LATENCY_TARGET_P99_MS)})",
        f"         beside broker round trip     p50 x{lat.p50_ms / rt.p50_ms:.1f}"
        f"  p99 x{lat.p99_ms / rt.p99_ms:.1f}"
        f"   ({lat.samples} events at {r.latency_rate_achieved:.0f}/s achieved)",
        *(
            f"         step {name:<24s}p50 {step.p50_ms:5.1f} ms  p99 {step.p99_ms:5.1f} ms"
            f"  max {step.max_ms:5.1f} ms"
            for name, step in r.latency_steps.items()
        ),
        "",
        f"peers    the same {backlog} ticket.created, one process each, prefetch {PREFETCH},"
        " one transaction per event",
        "         (inbox row, versioned replica upsert, effect row), ack after commit",
        f"{'':49s}{'events/s':>9s}{'cpu ms/ev':>11s}{'db ms/ev':>10s}{'mq ms/ev':>10s}"
        f"{'other cores':>13s}{'ours/peer':>11s}",
        *(
            _consumer_row(f"peer     {peer.label}", peer) + f"{r.ours_to_peer[key]:11.2f}"
            for key, peer in r.peers.items()
        ),
        _consumer_row(f"ours: {r.ours.label}", r.ours),
        *peer_verdict(r),
        *(f"warning  {warning}" for warning in warnings(r)),
        "",
    ]
    print("\n".join(lines), flush=True)


def peer_verdict(r: Results) -> list[str]:
    if not r.peers:
        return []
    key, lowest = min(r.ours_to_peer.items(), key=lambda item: item[1])
    met = lowest >= PEER_TARGET_RATIO
    return [
        f"target   ours >= {PEER_TARGET_RATIO:.1f}x every peer and the bare postgres loop:"
        f" {verdict(met)}" + ("" if met else f" (lowest: {lowest:.2f}x, {key})")
    ]


def warnings(r: Results) -> list[str]:
    """Conditions under which the figures say more about the machine than the code."""
    found = []
    cores = r.machine.get("cores") or 1
    load = max(r.machine.get("loadavg_1min_start", 0), r.machine.get("loadavg_1min_end", 0))
    if load > cores:
        found.append(
            f"load average {load:.1f} > {cores} cores: other work competed for the CPU;"
            " every figure is low and noisy, run again on a quiet machine"
        )
    if r.latency_rate_achieved < 0.95 * LATENCY_RATE:
        found.append(
            f"the publisher reached only {r.latency_rate_achieved:.0f} of"
            f" {LATENCY_RATE:.0f} events/s: the latency was not measured at the target rate"
        )
    return found


# ---------------------------------------------------------------------------------------
# Set-up: a throw-away database, vhost and Django context
# ---------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    names: Names
    database_url: str
    worker_env: dict[str, str]

    @property
    def vhost_url(self) -> str:
        return self.names.vhost_url

    @property
    def workdir(self) -> Path:
        return self.names.workdir


def create_sandbox(stack: ExitStack) -> Sandbox:
    """Database, vhost, Django set up in this process; `stack` drops them all on exit."""
    names = create_names(stack, "events")
    db_url = own_databases(stack, names, BENCH_ROLE, ["demo"])["demo"]
    base_env = common_env(names.dev)  # os.environ as it was, plus the checkout's keys
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": db_url,
        "RABBITMQ_URL": names.vhost_url,
        "JWT_PUBLIC_KEY_FILE": base_env["JWT_PUBLIC_KEY_FILE"],
    }
    # The publisher logs one line per event; on the terminal that would bury the table.
    os.environ.update(env, LOG_LEVEL="WARNING")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from shared_lib.events import broker

    stack.callback(connections.close_all)
    # The pooled producer's connection, closed before the vhost goes.
    stack.callback(broker.forget_declarations)
    stack.callback(_release_kombu_pools)

    # The demo app has no migrations; shared_lib's tables come from its migration.
    call_command("migrate", "--run-syncdb", verbosity=0)
    worker_env = {
        **base_env,
        **env,
        "WORKER_HEARTBEAT_FILE": str(names.workdir / "worker.alive"),
    }
    return Sandbox(names=names, database_url=db_url, worker_env=worker_env)


def _release_kombu_pools() -> None:
    from kombu import pools

    pools.reset()


# ---------------------------------------------------------------------------------------
# Ceilings
# ---------------------------------------------------------------------------------------


def _envelope_like(index: int) -> dict[str, Any]:
    """A message the size and shape of a ticket.created envelope (~250 bytes of JSON)."""
    return {
        "id": str(uuid.uuid4()),
        "subject": "bench.raw",
        "occurredAt": datetime.now(UTC).isoformat(),
        "data": {
            "id": str(uuid.uuid4()),
            "version": 0,
            "title": f"Bench ticket {index}",
            "price": "20.50",
            "userId": str(uuid.uuid4()),
        },
    }


def broker_ceiling(url: str, sizes: Sizes, results: Results) -> None:
    """Publish N confirmed persistent messages one by one, consume + ack them, round trips.

    Same broker, vhost, queue type (quorum) and message shape as the pipeline; what is
    left out is everything shared_lib adds: outbox, transactions, validation, Celery.
    """
    exchange = Exchange("bench.raw", type="topic", durable=True)
    queue = Queue(
        "bench.raw",
        exchange=exchange,
        routing_key="bench.raw",
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )
    publisher = Connection(url, transport_options={"confirm_publish": True})
    consumer_conn = Connection(url)
    with publisher, consumer_conn:
        producer = publisher.Producer()
        queue(producer.channel).declare()

        def send(index: int) -> None:
            producer.publish(
                _envelope_like(index),
                exchange=exchange,
                routing_key="bench.raw",
                serializer="json",
                delivery_mode=2,
                message_id=str(index),
            )

        started = time.perf_counter()
        for index in range(sizes.broker_messages):
            send(index)
        results.broker_publish_per_s = sizes.broker_messages / (time.perf_counter() - started)

        received: list[float] = []

        def on_message(body: Any, message: Any) -> None:
            message.ack()
            received.append(time.perf_counter())

        channel = consumer_conn.channel()
        # The prefetch every peer's consumer uses (the comparison's).
        with Consumer(channel, queues=[queue], callbacks=[on_message], prefetch_count=PREFETCH):
            started = time.perf_counter()
            while len(received) < sizes.broker_messages:
                consumer_conn.drain_events(timeout=10)
            results.broker_consume_per_s = sizes.broker_messages / (time.perf_counter() - started)

            # One message in flight at a time: publish (confirmed), then wait for it on the
            # consumer connection. The floor under the pipeline's publish -> handled latency.
            samples: list[float] = []
            for index in range(sizes.round_trips):
                before = len(received)
                started = time.perf_counter()
                send(index)
                while len(received) == before:
                    consumer_conn.drain_events(timeout=10)
                samples.append(received[-1] - started)
            results.broker_round_trip = Percentiles.of(samples)
        queue(channel).delete()


def postgres_ceiling(db_url: str, sizes: Sizes, results: Results) -> None:
    """N single-row transactions (INSERT + COMMIT) straight through psycopg, one connection.

    The row is about the size of an outbox row; each COMMIT waits for its WAL flush, the
    cost every transaction of the pipeline (outbox write, send mark, handler) also pays.
    """
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, data jsonb NOT NULL,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.commit()
        rows = [_envelope_like(index) for index in range(sizes.pg_transactions)]
        started = time.perf_counter()
        for row in rows:
            conn.execute("INSERT INTO bench_raw (data) VALUES (%s)", [Jsonb(row)])
            conn.commit()
        results.postgres_tx_per_s = sizes.pg_transactions / (time.perf_counter() - started)


# ---------------------------------------------------------------------------------------
# Draining a backlog: one consumer's rate and CPU
# ---------------------------------------------------------------------------------------


def client_backends(db_url: str) -> set[int]:
    """The PostgreSQL backends connected to the bench database now."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return _client_backends(conn)


def _client_backends(conn: psycopg.Connection) -> set[int]:
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_type = 'client backend'"
    ).fetchall()
    return {row[0] for row in rows}


@dataclass(frozen=True)
class _Mark:
    """Where a drain stood at one poll."""

    at: float  # time.monotonic()
    count: int  # events handled
    consumer_ticks: int
    backend_ticks: dict[int, int]
    broker_ticks: int
    machine_ticks: int  # every core's busy ticks (_common.busy_ticks)


def watch_drain(
    *,
    db_url: str,
    table: str,
    expected: int,
    process: Callable[[], subprocess.Popen[bytes] | None],
    baseline: set[int],
    what: str,
    started: float,
) -> Drain:
    """Poll the count of `table` (one row per handled event, visible at its commit) until
    `expected`; the rate and CPU between the first and the last commit seen.

    CPU is the consumer's process group (its own session) and the database backends that
    were not connected before it started (`baseline`): the consumer's connections. The
    broker's CPU and the rest of the machine's busy time in the window are reported beside
    them. Raises
    BrokenRun when the consumer exits first or stops making progress. `started` is the
    consumer's start (time.monotonic()).
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        own = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        # The Erlang VM is RabbitMQ: all its work happens in that one process.
        broker = [pid for pid, row in process_table().items() if "beam.smp" in row[3]]
        at_start = busy_ticks()
        broker_at_start = sum(map(cpu_ticks, broker))
        members: list[int] = []
        first: _Mark | None = None
        seen, progressed = 0, time.monotonic()
        while True:
            count = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (ours)
            now = time.monotonic()
            if count > seen:
                seen, progressed = count, now
            consumer = process()
            if count and first is None and consumer is not None:
                members = [
                    pid for pid, (group, *_rest) in process_table().items() if group == consumer.pid
                ]
                if count >= expected:
                    # All of it between two polls: only the whole run can be measured,
                    # start-up included (a smoke size on a fast machine).
                    first = _Mark(started, 0, 0, {}, broker_at_start, at_start)
                else:
                    backends = _client_backends(conn) - baseline - {own}
                    first = _Mark(
                        now,
                        count,
                        sum(map(cpu_ticks, members)),
                        {pid: cpu_ticks(pid) for pid in backends},
                        sum(map(cpu_ticks, broker)),
                        busy_ticks(),
                    )
            if count >= expected and first is not None:
                break
            if consumer is not None and consumer.poll() is not None:
                raise BrokenRun(
                    f"{what} exited (status {consumer.returncode}) after handling"
                    f" {count} of {expected} events"
                )
            if now - progressed > STALL_SECONDS:
                raise BrokenRun(
                    f"{what} handled {count} of {expected} events, then none for"
                    f" {STALL_SECONDS:.0f} s: events lost or the consumer is stuck"
                )
            time.sleep(DRAIN_POLL_SECONDS)
        consumer_ticks = sum(map(cpu_ticks, members)) - first.consumer_ticks
        db_ticks = sum(
            cpu_ticks(pid) - first.backend_ticks.get(pid, 0)
            for pid in _client_backends(conn) - baseline - {own}
        )
        broker_ticks = sum(map(cpu_ticks, broker)) - first.broker_ticks
        machine_ticks = busy_ticks() - first.machine_ticks
    seconds = now - first.at
    # The machine's ticks are sampled, the processes' accounted: a little apart, never < 0.
    other = max(0, machine_ticks - consumer_ticks - db_ticks - broker_ticks)
    return Drain(
        events=count - first.count,
        seconds=seconds,
        cpu_seconds=consumer_ticks / CLOCK_TICKS,
        db_cpu_seconds=db_ticks / CLOCK_TICKS,
        broker_cpu_seconds=broker_ticks / CLOCK_TICKS,
        other_cores=other / CLOCK_TICKS / seconds,
    )


# ---------------------------------------------------------------------------------------
# Peers: the same events and unit of work through other consumers (bench/peers/)
# ---------------------------------------------------------------------------------------

PEERS_DIR = Path(__file__).resolve().parent / "peers"
# Fills every peer's queue with one publish per message.
PEER_EXCHANGE = "bench.peers"


@dataclass(frozen=True)
class Peer:
    key: str  # in the JSON output
    title: str  # with the version of `package`
    script: str  # in bench/peers/
    consumer: str  # its queue, and the inbox's consumer column
    package: str
    from_broker: bool = True
    # Runs in a virtualenv of its own (peers/environments.py), not the project's.
    isolated: bool = False

    def python(self) -> str:
        return str(isolated_python(self.key, REPO_ROOT)) if self.isolated else sys.executable

    def version(self, python: str) -> str:
        if not self.isolated:
            return importlib.metadata.version(self.package)
        return subprocess.run(  # noqa: S603 (our own interpreter, a fixed snippet)
            [python, "-c", f"import importlib.metadata as m; print(m.version({self.package!r}))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()


PEERS = (
    Peer(
        "postgres_loop",
        "bare postgres loop (psycopg {version})",
        "bare_postgres.py",
        "bench.peer.postgres",
        "psycopg",
        from_broker=False,
    ),
    Peer("kombu", "bare kombu consumer ({version})", "bare_kombu.py", "bench.peer.kombu", "kombu"),
    Peer(
        "nameko",
        "nameko {version}",
        "nameko_service.py",
        # nameko names an event handler's queue evt-<source>-<type>--<service>.<method>;
        # the service checks that it agrees.
        "evt-bench_tickets-ticket.created--bench_nameko.on_ticket_created",
        "nameko",
        isolated=True,
    ),
    Peer(
        "faststream",
        "faststream {version}",
        "faststream_app.py",
        "bench.peer.faststream",
        "faststream",
    ),
)


def fill_peer_queues(url: str, messages: list[dict[str, Any]], queues: list[str]) -> None:
    """Each peer's quorum queue gets every message, with the properties the project's
    publisher gives it (JSON, persistent, message and correlation ids, sender)."""
    exchange = Exchange(PEER_EXCHANGE, type="fanout", durable=True)
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        producer = conn.Producer()
        channel = producer.channel
        exchange(channel).declare()
        for name in queues:
            Queue(
                name, exchange=exchange, durable=True, queue_arguments={"x-queue-type": "quorum"}
            )(channel).declare()
        for message in messages:
            producer.publish(
                message["body"],
                exchange=exchange,
                routing_key="ticket.created",
                serializer="json",
                delivery_mode=2,
                user_id=conn.userid,
                message_id=message["body"]["id"],
                correlation_id=message["correlation_id"],
                headers={"correlation_id": message["correlation_id"]},
            )
        exchange(channel).delete()


def run_peer(
    sb: Sandbox, stack: ExitStack, peer: Peer, messages_path: Path, expected: int
) -> ConsumerFigures:
    """Start the peer on its filled queue (or the exported messages), watch it drain,
    stop it, and check it handled every event exactly once."""
    from tests.demo.models import Effect, TicketReplica

    from shared_lib.models import InboxMessage

    tables = Tables.named(f"bench_{peer.key}")
    project = Tables(
        inbox=InboxMessage._meta.db_table,
        replica=TicketReplica._meta.db_table,
        effect=Effect._meta.db_table,
    )
    with psycopg.connect(sb.database_url) as conn:
        create_tables(conn, tables, like=project)
    config = PeerConfig(
        database_url=sb.database_url,
        amqp_url=sb.vhost_url if peer.from_broker else "",
        queue=peer.consumer,
        prefix=f"bench_{peer.key}",
    )
    env = {**os.environ, **config.env(), "BENCH_MESSAGES": str(messages_path)}
    log_path = sb.workdir / f"peer-{peer.key}.log"
    python = peer.python()
    version = peer.version(python)
    title = peer.title.format(version=version)
    baseline = client_backends(sb.database_url)
    consumer = Process(
        [python, str(PEERS_DIR / peer.script)], cwd=PEERS_DIR, env=env, log_path=log_path
    ).start()
    stack.callback(consumer.kill)
    started = time.monotonic()
    try:
        drain = watch_drain(
            db_url=sb.database_url,
            table=tables.effect,
            expected=expected,
            process=lambda: consumer.process,
            baseline=baseline,
            what=title,
            started=started,
        )
        wall = time.monotonic() - started
        stop_consumer(consumer, title)
        verify_peer(sb, peer, tables, expected, title)
    except Exception:
        print(f"--- {log_path.name} (tail) ---\n{tail(log_path)}", file=sys.stderr)
        raise
    return ConsumerFigures.of(title, version, drain, wall)


def verify_peer(sb: Sandbox, peer: Peer, tables: Tables, expected: int, title: str) -> None:
    """Every event once in each table, and (for those on the broker) its queue empty."""
    problems = []
    with psycopg.connect(sb.database_url) as conn:
        for what, column, table in (
            ("inbox rows", "*", tables.inbox),
            ("replica rows", "*", tables.replica),
            ("effect rows", "*", tables.effect),
            ("events with an effect", "DISTINCT event_id", tables.effect),
        ):
            sql = f"SELECT count({column}) FROM {table}"  # noqa: S608 (our own names)
            count = conn.execute(sql).fetchone()[0]
            if count != expected:
                problems.append(f"{what} {count}")
    if peer.from_broker:
        if depth := ready_messages(sb.vhost_url, [peer.consumer])[peer.consumer]:
            problems.append(f"{depth} messages left in {peer.consumer}")
        with Connection(sb.vhost_url) as conn, conn.channel() as channel:
            channel.queue_delete(queue=peer.consumer)
    if problems:
        raise BrokenRun(f"{title}, {expected} events: " + ", ".join(problems))


def stop_consumer(consumer: Process, title: str) -> None:
    """SIGTERM, as a deployment stops a consumer; it must exit cleanly and in time."""
    assert consumer.process is not None
    if not stop_group(consumer.process, PEER_STOP_TIMEOUT_SECONDS):
        raise BrokenRun(f"{title} did not stop within {PEER_STOP_TIMEOUT_SECONDS:.0f} s of SIGTERM")
    if consumer.process.returncode != 0:
        raise BrokenRun(f"{title} exited with status {consumer.process.returncode} on SIGTERM")


def run_peers(
    sb: Sandbox, stack: ExitStack, messages: list[dict[str, Any]], results: Results
) -> None:
    messages_path = sb.workdir / "messages.json"
    messages_path.write_text(json.dumps(messages))
    fill_peer_queues(sb.vhost_url, messages, [peer.consumer for peer in PEERS if peer.from_broker])
    for peer in PEERS:
        progress(f"peer {peer.key}: {len(messages)} events")
        results.peers[peer.key] = run_peer(sb, stack, peer, messages_path, len(messages))


# ---------------------------------------------------------------------------------------
# The pipeline
# ---------------------------------------------------------------------------------------


def _ticket(index: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "version": 0,
        "title": f"Bench ticket {index}",
        "price": "20.50",
        "userId": str(uuid.uuid4()),
    }


def declare_demo_queues() -> None:
    """The demo service's queues, so events published before its worker starts wait there.

    (Publishers declare the queues of contracts.CONSUMERS; the demo service is not among them.)
    """
    from django.conf import settings

    from shared_lib.events import broker
    from shared_lib.events.consumer import Dispatcher
    from shared_lib.events.registry import discover_handlers

    dispatcher = Dispatcher(service=settings.EVENTS_SERVICE, handlers=discover_handlers())
    with broker.connection() as conn:
        dispatcher.declare(conn.channel())


def demo_worker(sb: Sandbox, stack: ExitStack) -> Any:
    from shared_lib.testing.events import Worker

    worker = Worker(
        app="tests.celery_app",
        cwd=SHARED_LIB_DIR,
        env=sb.worker_env,
        log_path=sb.workdir / "worker.log",
    )
    stack.callback(worker.stop)
    return worker


def pipeline_throughput(
    sb: Sandbox, stack: ExitStack, sizes: Sizes, results: Results
) -> tuple[Any, list[dict[str, Any]]]:
    """A backlog of K events on the queue, then one worker drains it: handled events/s.

    Measured from the first to the last commit the watch sees (watch_drain), so the
    worker's start-up does not count; the wall time from its start is printed beside it.
    Returns the worker (it serves the latency phase next) and the backlog's messages.
    """
    from django.conf import settings
    from django.db import transaction
    from tests.demo.models import Effect

    from shared_lib.events import Subject, publish

    declare_demo_queues()
    started = time.perf_counter()
    for index in range(sizes.backlog_events):
        with transaction.atomic():
            publish(Subject.TICKET_CREATED, _ticket(index))
    results.outbox_publish_per_s = sizes.backlog_events / (time.perf_counter() - started)
    relay_backlog(results)
    messages = backlog_messages()
    results.worker_settings = {
        "prefetch": settings.EVENTS_PREFETCH,
        "batch": getattr(settings, "EVENTS_BATCH_SIZE", 1),
    }

    progress(f"backlog of {sizes.backlog_events} events queued; starting one worker")
    baseline = client_backends(sb.database_url)
    worker = demo_worker(sb, stack)
    # Worker.start() returns once the worker consumes; the drain is watched from its start.
    starting = threading.Thread(
        target=worker.start, kwargs={"timeout": WORKER_START_TIMEOUT_SECONDS}, daemon=True
    )
    started = time.monotonic()
    starting.start()
    drain = watch_drain(
        db_url=sb.database_url,
        table=Effect._meta.db_table,
        expected=sizes.backlog_events,
        process=lambda: worker.process,
        baseline=baseline,
        what="the celery worker",
        started=started,
    )
    wall = time.monotonic() - started
    starting.join(timeout=WORKER_START_TIMEOUT_SECONDS)
    prefetch, batch = results.worker_settings["prefetch"], results.worker_settings["batch"]
    results.handled = ConsumerFigures.of(
        f"celery worker (prefetch {prefetch}, batch {batch})",
        importlib.metadata.version("celery"),
        drain,
        wall,
    )
    return worker, messages


def relay_backlog(results: Results) -> None:
    """Onto the queue before the worker starts: the rows the publisher left unsent (all of
    them where the outbox's relay sends, none where publish() sends after commit), sent
    here by the project's relay, in its batches."""
    from shared_lib.events.outbox import relay_pending
    from shared_lib.models import OutboxEvent

    unsent = OutboxEvent.objects.filter(sent_at__isnull=True)
    count = unsent.count()
    started = time.perf_counter()
    while unsent.exists():
        sent, failed = relay_pending()
        if failed or not sent:
            raise BrokenRun(f"the outbox relay left {unsent.count()} rows unsent")
    if count:
        results.outbox_relay_per_s = count / (time.perf_counter() - started)


def backlog_messages() -> list[dict[str, Any]]:
    """The backlog's events as the outbox sent them (publish_event's envelope), in order."""
    from shared_lib.models import OutboxEvent

    return [
        {
            "body": {
                "id": str(row.id),
                "subject": row.subject,
                "occurredAt": row.occurred_at.isoformat(),
                "data": row.data,
            },
            "correlation_id": row.correlation_id,
        }
        for row in OutboxEvent.objects.order_by("created_at")
    ]


def verify_pipeline(sb: Sandbox, expected: int) -> None:
    """After the worker stopped: every event handled exactly once, nothing left or dead."""
    from django.conf import settings
    from tests.demo.models import Effect, TicketReplica

    from shared_lib.events import Subject, broker
    from shared_lib.models import InboxMessage

    effects = Effect.objects.count()
    distinct = Effect.objects.values("event_id").distinct().count()
    counts = {
        "inbox rows": InboxMessage.objects.count(),
        "replica rows": TicketReplica.objects.count(),
        "effect rows": effects,
        "events with an effect": distinct,
    }
    problems = [f"{what} {count}" for what, count in counts.items() if count != expected]
    main = broker.queue_name(settings.EVENTS_SERVICE, Subject.TICKET_CREATED)
    for name, depth in ready_messages(sb.vhost_url, [main, broker.dead_queue_name(main)]).items():
        if depth:
            problems.append(f"{depth} messages left in {name}")
    if problems:
        raise BrokenRun(f"the celery worker, {expected} events: " + ", ".join(problems))


def _listen(db_url: str, ready: Any, stop: Any, results: Any) -> None:
    """The listener process: stamp each notification on receipt, hand them over at `stop`."""
    handled: dict[str, float] = {}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
        ready.set()
        while not stop.is_set():
            for notice in conn.notifies(timeout=0.2):
                handled[notice.payload] = time.time()
        for notice in conn.notifies(timeout=0.5):  # any still in flight
            handled[notice.payload] = time.time()
    results.send(handled)


class HandledListener:
    """Receives a NOTIFY per handled event the moment the handler's transaction commits.

    A trigger on the demo Effect table (written by the handler) notifies; PostgreSQL
    delivers notifications only at commit, so the receipt time is "handled", as any other
    reader of the database could first see it. The trigger lives only in the bench's
    database and adds one cheap notify to each handler transaction. The listener is a
    process of its own, so a receipt never waits for the publishing threads' GIL.
    """

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._ready = context.Event()
        self._stop = context.Event()
        self._results, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_listen, args=(db_url, self._ready, self._stop, sender), daemon=True
        )

    def install(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(
                "CREATE FUNCTION bench_notify_handled() RETURNS trigger LANGUAGE plpgsql AS $$"
                f" BEGIN PERFORM pg_notify('{NOTIFY_CHANNEL}', NEW.event_id::text);"
                " RETURN NULL; END $$"
            )
            conn.execute(
                "CREATE TRIGGER bench_notify_handled AFTER INSERT ON demo_effect"
                " FOR EACH ROW EXECUTE FUNCTION bench_notify_handled()"
            )
        self._process.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the NOTIFY listener process did not start")

    def collect(self) -> dict[str, float]:
        """Event id -> time its handler committed; call once every handler has committed."""
        self._stop.set()
        if not self._results.poll(timeout=30):
            raise RuntimeError("the NOTIFY listener process did not report")
        handled: dict[str, float] = self._results.recv()
        self._process.join(timeout=5)
        return handled

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        if self._process.pid is not None:
            self._process.join(timeout=5)


@dataclass(frozen=True)
class Trace:
    """One paced event's way through the pipeline, as wall-clock times (time.time())."""

    committed: float  # the publisher's transaction committed (outbox row visible)
    confirmed: float  # the after-commit send got the broker's confirm (outbox sent_at)
    handling: float  # the worker started handling it (its inbox row's processed_at)
    handled: float  # the handler's transaction committed (NOTIFY received)

    @property
    def latency(self) -> float:
        return self.handled - self.committed


def pipeline_latency(sb: Sandbox, stack: ExitStack, sizes: Sizes, results: Results) -> list[Trace]:
    """Publish at a steady rate, one event per transaction; publisher commit -> handler commit."""
    from django.db import connection, transaction
    from tests.demo.models import Effect

    from shared_lib.events import Subject, publish
    from shared_lib.models import InboxMessage, OutboxEvent

    listener = HandledListener(sb.database_url)
    stack.callback(listener.close)
    listener.install()
    already = Effect.objects.count()  # the backlog's

    committed: dict[str, float] = {}
    total = int(LATENCY_RATE * sizes.latency_seconds)
    interval = 1 / LATENCY_RATE
    errors: list[BaseException] = []

    def publisher(first: int) -> None:
        """Publish events first, first + PUBLISHERS, ... each at its slot of the schedule."""
        try:
            for index in range(first, total, PUBLISHERS):
                # A fixed schedule, not a fixed sleep: a slow publish is caught up, so the
                # offered rate stays LATENCY_RATE on average.
                delay = started + index * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                stamp: list[float] = []
                with transaction.atomic():
                    # on_commit callbacks run in order: registered before publish(),
                    # this one runs right after the COMMIT, before anything of publish's.
                    transaction.on_commit(lambda stamp=stamp: stamp.append(time.time()))
                    event_id = publish(Subject.TICKET_CREATED, _ticket(index))
                committed[str(event_id)] = stamp[0]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()  # this thread's own Django connection

    threads = [threading.Thread(target=publisher, args=(k,)) for k in range(PUBLISHERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    results.latency_rate_achieved = total / (time.perf_counter() - started)
    try:
        wait_for(
            lambda: Effect.objects.count() >= already + total,
            timeout=DRAIN_TIMEOUT_SECONDS,
            what=f"the worker to handle the {total} paced events",
        )
    except AssertionError as exc:
        raise BrokenRun(str(exc)) from None
    handled = listener.collect()

    # The intermediate steps come from the rows' own timestamps (timezone.now() in the
    # publisher and the worker: the same host clock as time.time()).
    ids = list(committed)
    confirmed = {
        str(row["id"]): row["sent_at"].timestamp()
        for row in OutboxEvent.objects.filter(id__in=ids).values("id", "sent_at")
    }
    handling = {
        str(row["message_id"]): row["processed_at"].timestamp()
        for row in InboxMessage.objects.filter(message_id__in=ids).values(
            "message_id", "processed_at"
        )
    }
    traces = [
        Trace(at, confirmed[event_id], handling[event_id], handled[event_id])
        for event_id, at in committed.items()
    ]
    results.latency = Percentiles.of([trace.latency for trace in traces])
    steps = {
        "commit->confirmed": [t.confirmed - t.committed for t in traces],
        "confirmed->handling": [t.handling - t.confirmed for t in traces],
        "handling->handled": [t.handled - t.handling for t in traces],
    }
    results.latency_steps = {name: Percentiles.of(values) for name, values in steps.items()}
    return traces


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def run(json_path: Path | None, *, smoke: bool) -> Results:
    sizes = SMOKE if smoke else FULL
    results = Results(started_at=started_at(), smoke=smoke, sizes=asdict(sizes))
    with ExitStack() as stack:
        sb = create_sandbox(stack)
        results.machine = machine_summary(sb.database_url, sb.vhost_url)
        results.machine["packages"] = {
            name: importlib.metadata.version(name)
            for name in ("celery", "kombu", "psycopg", "faststream")
        }
        progress(f"database {sb.names.db_prefix}_demo, vhost {sb.names.vhost}")

        progress(f"broker ceiling: {sizes.broker_messages} confirmed publishes, consume+ack")
        broker_ceiling(sb.vhost_url, sizes, results)
        progress(f"postgres ceiling: {sizes.pg_transactions} single-row transactions")
        postgres_ceiling(sb.database_url, sizes, results)
        progress(f"pipeline throughput: outbox backlog of {sizes.backlog_events} events")
        worker_log = sb.workdir / "worker.log"
        try:
            worker, messages = pipeline_throughput(sb, stack, sizes, results)
            progress(
                f"pipeline latency: {LATENCY_RATE:.0f} events/s for {sizes.latency_seconds:.0f} s"
            )
            traces = pipeline_latency(sb, stack, sizes, results)
            # Nothing of the project runs while the peers are measured.
            worker.stop()
            verify_pipeline(sb, sizes.backlog_events + len(traces))
        except Exception:
            # The work directory goes with the clean-up: show the worker's last words first.
            print(f"--- worker log (tail) ---\n{tail(worker_log)}", file=sys.stderr)
            raise
        run_peers(sb, stack, messages, results)
        results.machine["loadavg_1min_end"] = os.getloadavg()[0]
        progress("cleaning up")
    return report(results, print_table, json_path)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(
        __doc__,
        smoke="tiny sizes (about 200 events per figure): checks the bench runs, figures are noise",
    )
    args = parser.parse_args(argv)

    def measure() -> int:
        run(args.json, smoke=args.smoke)
        return 0  # every figure measured, whatever it says: no target is asserted

    return main_of(measure)


if __name__ == "__main__":
    sys.exit(main())

"""`ticketing-dev status`: what a running system is doing, in one screen, for an operator.

    ticketing-dev status                              # the system `make up` runs
    ticketing-dev status --stack-file <run dir>/stack.json   # any other (a test stack)
    report = collect(Target.of_stack(stack)); print(render(report)); report.problems()

It shows each web service's readiness (/readyz), the depth of every queue of the
system's RabbitMQ vhost (ready and unacked, from `rabbitmqctl list_queues`: there is no
management plugin), each service's outbox backlog (unsent rows and the oldest one's
age, read from its database), the dead letters per queue, and payments' refunds owed and
failed. The exit status is 1 when anything is unhealthy (a service not ready, a dead
letter, an outbox stuck, a refund Stripe refused for good, a server unreachable), so a
script or a test can act on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import requests

from shared_lib.testing.rabbitmq import QueueDepth, queue_depths, vhost_of
from ticketing_devtools.backing import admin_url, export_rabbitmqctl, in_database, rabbitmq_url
from ticketing_devtools.catalog import (
    SERVICES,
    STACK_FILE,
    db_prefix,
    gateway_port,
    service,
    stack_run_dir,
)

# An unsent outbox row older than this is stuck: the worker's relay, woken by every
# commit that writes one and polling each second, retries a failed send with back-off
# capped at 60 s (shared_lib.events.outbox); a row this old means the broker is down or
# the worker is not running.
OUTBOX_STUCK_SECONDS = 60.0
# /readyz checks the database (and Redis for auth), each with a timeout of a few seconds;
# a service that takes longer than this to answer is not ready in any useful sense.
READY_TIMEOUT_SECONDS = 10.0
# Broker-internal queues that are noise while empty: Celery's delayed-delivery levels,
# wait queues of retries, remote-control mailboxes. Shown whenever they hold messages.
_QUIET_WHEN_EMPTY = ("celery_delayed_", "celeryev.")
_DELAYED_PREFIX = "celery_delayed_"


@dataclass(frozen=True)
class Target:
    """Which system to look at: its vhost, database prefix and web services' URLs."""

    vhost: str
    db_prefix: str
    service_urls: dict[str, str]
    pg_admin_url: str = field(default_factory=admin_url)

    @classmethod
    def of_stack(cls, stack: object) -> Target:
        """The system a devtools Stack runs (tests hand theirs in directly)."""
        return cls.from_description(stack.describe())  # type: ignore[attr-defined]

    @classmethod
    def from_description(cls, description: dict) -> Target:
        return cls(
            vhost=vhost_of(description["rabbitmq_url"]),
            db_prefix=description["db_prefix"],
            service_urls=dict(description["services"]),
        )


def default_stack_file() -> Path:
    """Where `make up` (Stack's default run_dir) describes itself."""
    return stack_run_dir(db_prefix(), gateway_port()) / STACK_FILE


def environment_description() -> dict:
    """A description (Stack.describe's keys) of the system the environment names, for
    one without a stack file: `make up`'s broker vhost and database prefix, no services."""
    return {"rabbitmq_url": rabbitmq_url(), "db_prefix": db_prefix(), "services": {}}


@dataclass(frozen=True)
class Readiness:
    service: str
    url: str
    ready: bool
    detail: str  # "database ok, redis ok", or what failed


@dataclass(frozen=True)
class Outbox:
    service: str
    unsent: int | None  # None: the database could not be read (see error)
    oldest_age_seconds: float | None
    error: str = ""


@dataclass(frozen=True)
class FailedRefund:
    payment_intent_id: str
    order_id: str
    last_error: str


@dataclass(frozen=True)
class Refunds:
    """payments_svc's refunds: owed (the worker is on them) and failed (need a person)."""

    owed: int | None  # None: the database could not be read (see error)
    failed: tuple[FailedRefund, ...] = ()
    error: str = ""


@dataclass
class Report:
    target: Target
    readiness: list[Readiness]
    queues: list[QueueDepth]
    outboxes: list[Outbox]
    broker_error: str = ""
    refunds: Refunds | None = None

    def dead_letters(self) -> dict[str, int]:
        """Messages parked per dead-letter queue (only queues that hold any)."""
        return {q.name: q.total for q in self.queues if q.name.endswith(".dead") and q.total}

    def problems(self) -> list[str]:
        found = [f"{r.service} not ready: {r.detail}" for r in self.readiness if not r.ready]
        if self.broker_error:
            found.append(f"broker: {self.broker_error}")
        for queue, count in self.dead_letters().items():
            found.append(f"{count} dead letter{'s' if count != 1 else ''} in {queue}")
        for outbox in self.outboxes:
            if outbox.error:
                found.append(f"{outbox.service} outbox unreadable: {outbox.error}")
            elif (outbox.oldest_age_seconds or 0) > OUTBOX_STUCK_SECONDS:
                found.append(
                    f"{outbox.service} outbox stuck: {outbox.unsent} unsent, "
                    f"oldest {outbox.oldest_age_seconds:.0f} s"
                )
        if self.refunds is not None and self.refunds.error:
            found.append(f"payments refunds unreadable: {self.refunds.error}")
        for refund in self.refunds.failed if self.refunds is not None else ():
            found.append(
                f"payments refund failed: {refund.payment_intent_id} (order {refund.order_id}):"
                f" {refund.last_error}"
            )
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems()


def readiness(service: str, url: str) -> Readiness:
    try:
        response = requests.get(f"{url}/readyz", timeout=READY_TIMEOUT_SECONDS)
    except requests.RequestException as exc:
        return Readiness(service, url, False, f"unreachable ({type(exc).__name__})")
    try:
        body = response.json()
    except ValueError:
        body = {}
    checks = body.get("checks") if isinstance(body, dict) else None
    detail = ", ".join(f"{name} {state}" for name, state in (checks or {}).items())
    if response.status_code == 200:
        return Readiness(service, url, True, detail or "no dependencies")
    return Readiness(service, url, False, detail or f"HTTP {response.status_code}")


def outbox_backlog(service: str, *, database: str, pg_admin_url: str) -> Outbox:
    """Unsent rows of one service's outbox and the oldest one's age (as its relay sees it)."""
    try:
        with psycopg.connect(in_database(pg_admin_url, database), connect_timeout=5) as conn:
            count, oldest = conn.execute(
                "SELECT count(*), min(created_at) FROM shared_lib_outboxevent WHERE sent_at IS NULL"
            ).fetchone()  # type: ignore[misc]
    except psycopg.Error as exc:
        return Outbox(service, None, None, str(exc).strip().splitlines()[0])
    age = (datetime.now(UTC) - oldest).total_seconds() if oldest is not None else 0.0
    return Outbox(service, count, max(age, 0.0))


def refunds_of(*, database: str, pg_admin_url: str) -> Refunds:
    """Refunds owed and failed in payments_svc's database (payments.models.Refund)."""
    try:
        with psycopg.connect(in_database(pg_admin_url, database), connect_timeout=5) as conn:
            (owed,) = conn.execute(
                "SELECT count(*) FROM payments_refund WHERE status = 'pending'"
            ).fetchone()  # type: ignore[misc]
            failed = conn.execute(
                "SELECT payment_intent_id, order_id::text, last_error FROM payments_refund"
                " WHERE status = 'failed' ORDER BY created_at"
            ).fetchall()
    except psycopg.Error as exc:
        return Refunds(None, (), str(exc).strip().splitlines()[0])
    return Refunds(owed, tuple(FailedRefund(*row) for row in failed))


def collect(target: Target) -> Report:
    ready = [readiness(name, url) for name, url in sorted(target.service_urls.items())]
    try:
        queues, broker_error = queue_depths(target.vhost), ""
    except RuntimeError as exc:
        queues, broker_error = [], str(exc)
    outboxes = [
        outbox_backlog(
            s.name, database=s.database(target.db_prefix), pg_admin_url=target.pg_admin_url
        )
        for s in SERVICES
        if s.events and s.has_database  # the services that publish through an outbox
    ]
    refunds = refunds_of(
        database=service("payments").database(target.db_prefix),
        pg_admin_url=target.pg_admin_url,
    )
    return Report(target, ready, queues, outboxes, broker_error, refunds)


def _shown(queue: QueueDepth) -> bool:
    if queue.name.endswith(".dead"):
        return False  # its own section
    quiet = queue.name.startswith(_QUIET_WHEN_EMPTY) or ".wait." in queue.name
    quiet = quiet or queue.name.endswith(".pidbox")
    return bool(queue.total) or not quiet


def render(report: Report) -> str:
    lines = ["Readiness"]
    width = max((len(r.service) for r in report.readiness), default=0)
    for r in report.readiness:
        state = "ready" if r.ready else "NOT READY"
        lines.append(f"  {r.service:<{width}}  {state:<9}  {r.url}  ({r.detail})")
    lines += ["", f"Queues (vhost {report.target.vhost})"]
    if report.broker_error:
        lines.append(f"  unavailable: {report.broker_error}")
    else:
        shown = [q for q in report.queues if _shown(q)]
        width = max((len(q.name) for q in shown), default=5)
        lines.append(f"  {'queue':<{width}}  {'ready':>7}  {'unacked':>7}")
        lines += [f"  {q.name:<{width}}  {q.ready:>7}  {q.unacked:>7}" for q in shown]
        delayed = sum(q.total for q in report.queues if q.name.startswith(_DELAYED_PREFIX))
        lines.append(f"  (expiries waiting in delayed delivery: {delayed})")
    lines += ["", "Outbox (unsent events)"]
    for o in report.outboxes:
        if o.error:
            lines.append(f"  {o.service:<10}  unreadable: {o.error}")
        else:
            oldest = f"  oldest {o.oldest_age_seconds:.1f} s" if o.unsent else ""
            lines.append(f"  {o.service:<10}  {o.unsent:>5}{oldest}")
    if report.refunds is not None:
        lines += ["", "Refunds (payments)"]
        if report.refunds.error:
            lines.append(f"  unreadable: {report.refunds.error}")
        else:
            lines.append(f"  owed    {report.refunds.owed:>5}")
            lines.append(f"  failed  {len(report.refunds.failed):>5}")
            lines += [
                f"    {r.payment_intent_id}  order {r.order_id}  {r.last_error}"
                for r in report.refunds.failed
            ]
    lines += ["", "Dead letters"]
    dead = report.dead_letters()
    lines += [f"  {queue}  {count}" for queue, count in dead.items()] or ["  none"]
    problems = report.problems()
    lines += ["", "UNHEALTHY:" if problems else "OK: every service ready, nothing stuck"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def load_stack_file(path: Path) -> dict:
    return json.loads(path.read_text())


def main(
    *,
    stack_file: Path | None = None,
    vhost: str | None = None,
    db_prefix: str | None = None,
    services: dict[str, str] | None = None,
) -> int:
    """The command: 0 when healthy, 1 when not, 2 when there is no system to look at."""
    export_rabbitmqctl()  # a `make up` on a RabbitMQ node of its own: look at that node
    path = stack_file or default_stack_file()
    if path.exists():
        description = load_stack_file(path)
    elif services:
        description = environment_description()
    else:
        print(
            f"No running system described at {path}: start one with `make up`, or pass "
            "--stack-file (a test stack's run directory) or --service NAME=URL"
        )
        return 2
    target = Target.from_description(description)
    target = Target(
        vhost=vhost or target.vhost,
        db_prefix=db_prefix or target.db_prefix,
        service_urls={**target.service_urls, **(services or {})},
        pg_admin_url=target.pg_admin_url,
    )
    report = collect(target)
    print(render(report))
    return 0 if report.healthy else 1

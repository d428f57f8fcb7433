"""Test support for the event bus: events as a consumer gets them, real workers.

    def test_flow(rabbitmq_vhost, event_worker, transactional_db):
        worker = event_worker()              # `celery worker` subprocess on the test DB
        with transaction.atomic(): publish(Subject.TICKET_CREATED, {...})
        wait_for(lambda: Replica.objects.exists())     # shared_lib.testing.waiting
        worker.kill()                        # SIGKILL; worker.start() brings it back

Everything talks to the real broker and database; nothing here is a mock.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db import connection
from django.utils import timezone

from shared_lib.events import broker
from shared_lib.events.consumer import Outcome, apply_events, run_handler
from shared_lib.events.contracts import Subject, validate_data
from shared_lib.events.registry import Event, discover_handlers
from shared_lib.testing.processes import (
    START_TIMEOUT_SECONDS,
    Process,
    celery_worker_command,
    free_port,
)


def make_event(subject: Subject | str, data: dict[str, Any], **fields: Any) -> Event:
    """An Event as a consumer would receive it (data validated against the contract)."""
    subject = Subject(subject)
    return Event(
        id=fields.pop("id", None) or uuid.uuid4(),
        subject=subject,
        occurred_at=fields.pop("occurred_at", None) or timezone.now(),
        data=validate_data(subject, data),
        correlation_id=fields.pop("correlation_id", "test"),
        **fields,
    )


def deliver(event: Event) -> Outcome:
    """Run this service's handler for the event the way the consumer does (inbox, txn)."""
    handler = discover_handlers()[event.subject]
    return run_handler(
        handler, event, consumer=broker.queue_name(settings.EVENTS_SERVICE, event.subject)
    )


def deliver_batch(events: list[Event]) -> list[Any]:
    """Run this service's handlers for `events` as the consumer runs one batch of
    deliveries in that order: each event's Outcome, or the exception its handler raised."""
    handlers = discover_handlers()
    return apply_events(
        [
            (
                handlers[event.subject],
                event,
                broker.queue_name(settings.EVENTS_SERVICE, event.subject),
            )
            for event in events
        ]
    )


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test_ database)."""
    db = connection.settings_dict
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{quote(db['USER'], safe='')}:{password}@" if db.get("USER") else ""
    return (
        f"postgresql://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


class Worker(Process):
    """One `celery worker` process of this service, on the test database and vhost."""

    def __init__(self, *, app: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        if env.get("METRICS_PORT", "0") in ("", "0"):
            # A metrics port of its own, kept across restarts: competing workers of one
            # test never collide, and `metrics_url` finds it.
            env = {**env, "METRICS_PORT": str(free_port()), "METRICS_ADDRESS": "127.0.0.1"}
        super().__init__([], cwd=cwd, env=env, log_path=log_path)
        self.app = app
        self.heartbeat = Path(env["WORKER_HEARTBEAT_FILE"])

    def start(self, *, timeout: float = START_TIMEOUT_SECONDS) -> Worker:
        """Start it and wait until it consumes; RuntimeError (with its log) if it does not."""
        self.heartbeat.unlink(missing_ok=True)
        self.argv = celery_worker_command(
            self.app,
            # A name of its own at every start: a worker killed a moment ago may still
            # hold its remote-control queue.
            hostname=f"{self.log_path.stem}-{uuid.uuid4().hex[:6]}@%h",
            pool=("--pool", "solo"),
            # No worker heartbeat events: nothing here monitors them.
            extra=("--without-heartbeat",),
        )
        super().start()
        try:
            # The heartbeat file appears once the consumer bootstep has declared its
            # queues and started consuming: from then on nothing published is missed.
            self.wait_until(self.heartbeat.exists, timeout=timeout, what="its heartbeat")
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"worker did not start: {exc}") from None
        return self

    @property
    def metrics_url(self) -> str:
        """Where this worker serves its Prometheus metrics (MetricsServerStep)."""
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"

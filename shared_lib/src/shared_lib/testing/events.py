"""Test support for the event bus: a throw-away RabbitMQ vhost, real workers, helpers.

    def test_flow(rabbitmq_vhost, event_worker, transactional_db):
        worker = event_worker()              # `celery worker` subprocess on the test DB
        with transaction.atomic(): publish(Subject.TICKET_CREATED, {...})
        wait_for(lambda: Replica.objects.exists())
        worker.kill()                        # SIGKILL; worker.start() brings it back

Everything talks to the real broker and database; nothing here is a mock.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.db import connection
from django.utils import timezone

from shared_lib.events import broker
from shared_lib.events.consumer import Outcome, apply_events, run_handler
from shared_lib.events.contracts import Subject, validate_data
from shared_lib.events.registry import Event, discover_handlers


def vhost_url(base_url: str, vhost: str) -> str:
    """`base_url` with its virtual host replaced (amqp://user:pw@host:port/<vhost>)."""
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(vhost, safe=""), "", ""))


def wait_for(condition: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll until `condition()` is truthy; return its value or fail with a clear message."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {condition}")
        time.sleep(interval)


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test_ database)."""
    db = connection.settings_dict
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{quote(db['USER'], safe='')}:{password}@" if db.get("USER") else ""
    return (
        f"postgresql://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


class Worker:
    """One `celery worker` process of this service, on the test database and vhost."""

    def __init__(self, *, app: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
        self.app = app
        self.cwd = cwd
        self.env = env
        self.log_path = log_path
        self.heartbeat = Path(env["WORKER_HEARTBEAT_FILE"])
        self.process: subprocess.Popen[bytes] | None = None
        if env.get("METRICS_PORT", "0") in ("", "0"):
            # A metrics port of its own, kept across restarts: competing workers of one
            # test never collide, and `metrics_url` finds it.
            self.env = {**env, "METRICS_PORT": str(_free_port()), "METRICS_ADDRESS": "127.0.0.1"}

    def start(self, *, timeout: float = 30.0) -> Worker:
        self.heartbeat.unlink(missing_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                self.app,
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                # A node name of its own: two workers named alike fight over one pidbox
                # queue, and the second dies with RESOURCE_LOCKED.
                "--hostname",
                f"{self.log_path.stem}-{uuid.uuid4().hex[:6]}@%h",
            ],
            cwd=self.cwd,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        # The heartbeat file appears once the consumer bootstep has declared its queues
        # and started consuming: from then on nothing published is missed.
        while not self.heartbeat.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker did not start:\n{self.log()[-4000:]}")
            time.sleep(0.1)
        return self

    @property
    def metrics_url(self) -> str:
        """Where this worker serves its Prometheus metrics (MetricsServerStep)."""
        return f"http://127.0.0.1:{self.env['METRICS_PORT']}/metrics"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole worker: no shutdown, unacked messages go back to the queue."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

"""Peer: a nameko 2.14 service whose event handler does the unit of work.

    BENCH_DATABASE_URL=... BENCH_AMQP_URL=amqp://.../vhost \
    BENCH_QUEUE=evt-bench_tickets-ticket.created--bench_nameko.on_ticket_created \
    BENCH_TABLES=bench_nameko python bench/peers/nameko_service.py     # until SIGTERM

A service as nameko's docs write one: an `event_handler` method, a DependencyProvider
handing each worker a database connection, run by a ServiceRunner on eventlet. Two
adaptations, both through nameko's extension points: the handler's queue is a quorum queue
like every other consumer's in this bench, and it passes the message's correlation id to
the worker (nameko would otherwise keep only its own `nameko.*` headers).

`nameko run` itself cannot start on this Python: nameko/cli/main.py imports pkg_resources
(setuptools), which the project's virtualenv does not have. ServiceRunner is what that
command runs, so this script mirrors it, signal handling included.
"""

from __future__ import annotations

import eventlet

# Before anything else imports socket or threading: nameko requires a patched process.
eventlet.monkey_patch()

import errno  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import psycopg  # noqa: E402
from nameko.events import EventHandler  # noqa: E402
from nameko.extensions import DependencyProvider  # noqa: E402
from nameko.runners import ServiceRunner  # noqa: E402
from work import PREFETCH, PeerConfig, Statements, handle  # noqa: E402

CONFIG = PeerConfig.from_env()
# The event's source as nameko names it: its exchange is `bench_tickets.events`, the
# bench's own, so nothing the project publishes reaches this service.
SOURCE = "bench_tickets"
EVENT_TYPE = "ticket.created"


class QuorumEventHandler(EventHandler):
    """nameko's event handler on a quorum queue, passing the correlation id along."""

    def setup(self) -> None:
        super().setup()
        if self.queue.name != CONFIG.queue:
            raise RuntimeError(f"nameko named the queue {self.queue.name}, not {CONFIG.queue}")
        self.queue.queue_arguments = {"x-queue-type": "quorum"}

    def unpack_message_headers(self, message: Any) -> dict[str, Any]:
        data = super().unpack_message_headers(message)
        data["correlation_id"] = message.properties.get("correlation_id", "")
        return data


quorum_event_handler = QuorumEventHandler.decorator


class Session:
    """What a worker sees as `self.db`: its connection and its message's correlation id."""

    def __init__(self, conn: psycopg.Connection, correlation_id: str) -> None:
        self.conn = conn
        self.correlation_id = correlation_id
        self.sql = Statements.for_tables(CONFIG.tables)

    def handle(self, envelope: dict[str, Any]) -> str:
        return handle(
            self.conn,
            self.sql,
            envelope,
            consumer=CONFIG.queue,
            correlation_id=self.correlation_id,
        )


class Postgres(DependencyProvider):
    """A connection per running worker, kept for the next one.

    psycopg's waits run in C and do not yield to eventlet, so a worker holds the process
    for its whole transaction and one connection serves in practice; more are opened
    only if workers ever overlap.
    """

    def setup(self) -> None:
        self.idle: list[psycopg.Connection] = []
        self.busy: dict[Any, psycopg.Connection] = {}

    def get_dependency(self, worker_ctx: Any) -> Session:
        conn = self.idle.pop() if self.idle else psycopg.connect(CONFIG.database_url)
        self.busy[worker_ctx] = conn
        return Session(conn, worker_ctx.data.get("correlation_id", ""))

    def worker_teardown(self, worker_ctx: Any) -> None:
        self.idle.append(self.busy.pop(worker_ctx))

    def stop(self) -> None:
        for conn in [*self.idle, *self.busy.values()]:
            conn.close()


class BenchTickets:
    name = "bench_nameko"

    db = Postgres()

    # Redelivered on failure (nameko acks a failed event by default).
    @quorum_event_handler(SOURCE, EVENT_TYPE, requeue_on_error=True)
    def on_ticket_created(self, envelope: dict[str, Any]) -> None:
        self.db.handle(envelope)


def main() -> int:
    # max_workers is also the consumer's prefetch in nameko.
    runner = ServiceRunner({"AMQP_URI": CONFIG.amqp_url, "max_workers": PREFETCH})
    runner.add_service(BenchTickets)

    def shutdown(signum: int, frame: Any) -> None:
        # A signal handler runs outside the hub and cannot use eventlet primitives.
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    runner.start()
    waiting = eventlet.spawn(runner.wait)
    while True:
        try:
            waiting.wait()
        except OSError as exc:
            if exc.errno != errno.EINTR:
                raise
        else:
            return 0


if __name__ == "__main__":
    sys.exit(main())

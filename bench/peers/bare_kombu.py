"""Peer: a bare kombu consumer doing the unit of work per message, acking after commit.

    BENCH_DATABASE_URL=... BENCH_AMQP_URL=amqp://.../vhost BENCH_QUEUE=bench.peer.kombu \
    BENCH_TABLES=bench_kombu python bench/peers/bare_kombu.py      # until SIGTERM

What any hand-written consumer on the project's own stack (kombu over py-amqp, psycopg)
costs: one connection each, prefetch 32, one transaction per message, then its ack. A
message whose transaction fails goes back to the queue.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType
from typing import Any

import psycopg
from kombu import Connection, Consumer, Queue
from work import PREFETCH, PeerConfig, Statements, handle

# How long one wait for a delivery blocks before the loop looks at the stop flag again.
POLL_SECONDS = 0.5


def main() -> int:
    config = PeerConfig.from_env()
    sql = Statements.for_tables(config.tables)
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    with psycopg.connect(config.database_url) as db, Connection(config.amqp_url) as broker:

        def on_message(body: Any, message: Any) -> None:
            try:
                handle(
                    db,
                    sql,
                    body,
                    consumer=config.queue,
                    correlation_id=message.properties.get("correlation_id", ""),
                )
            except Exception as exc:
                print(f"requeued {message.properties.get('message_id')}: {exc!r}", flush=True)
                message.requeue()
                return
            message.ack()

        # The bench declared the queue (quorum); consume it as it is.
        queue = Queue(config.queue, no_declare=True)
        channel = broker.channel()
        with Consumer(
            channel,
            queues=[queue],
            callbacks=[on_message],
            prefetch_count=PREFETCH,
            accept=["json"],
        ):
            while not stopping:
                with contextlib.suppress(TimeoutError):
                    broker.drain_events(timeout=POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())

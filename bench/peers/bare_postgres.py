"""Peer: the unit of work in a bare psycopg loop, no broker: what one process and one
connection do when each event costs exactly one transaction.

    BENCH_DATABASE_URL=... BENCH_AMQP_URL= BENCH_QUEUE=bench.peer.postgres \
    BENCH_TABLES=bench_postgres BENCH_MESSAGES=messages.json python bench/peers/bare_postgres.py

Reads the messages bench/events.py exported (the envelopes and correlation ids the other
consumers receive) and handles each in its own transaction, in order. Then it waits for
SIGTERM like every other consumer, so the bench reads its CPU the same way.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import psycopg
from work import PeerConfig, Statements, handle


def main() -> int:
    # Held until sigwait() below, so a SIGTERM during the loop waits for it to end.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    config = PeerConfig.from_env()
    messages = json.loads(Path(os.environ["BENCH_MESSAGES"]).read_text())
    sql = Statements.for_tables(config.tables)
    with psycopg.connect(config.database_url) as conn:
        for message in messages:
            handle(
                conn,
                sql,
                message["body"],
                consumer=config.queue,
                correlation_id=message["correlation_id"],
            )
        # Connected until the end, as the other consumers are: the bench reads the CPU of
        # the consumer's backend when the last event is in.
        signal.sigwait({signal.SIGTERM})
    return 0


if __name__ == "__main__":
    sys.exit(main())

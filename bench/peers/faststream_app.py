"""Peer: a FastStream 0.7 application (RabbitMQ broker) whose subscriber does the unit of work.

    BENCH_DATABASE_URL=... BENCH_AMQP_URL=amqp://.../vhost BENCH_QUEUE=bench.peer.faststream \
    BENCH_TABLES=bench_faststream python bench/peers/faststream_app.py   # until SIGTERM

An application as FastStream's docs write one: a RabbitBroker, one async subscriber on a
quorum queue with a channel prefetching 32, acked after the handler returns (requeued if it
raises), an asyncio psycopg connection opened at start-up, FastStream's own default logging
(a line per message received and processed), run by `FastStream.run`, which stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import psycopg
from faststream import AckPolicy, FastStream
from faststream.rabbit import Channel, QueueType, RabbitBroker, RabbitMessage, RabbitQueue
from work import PREFETCH, PeerConfig, Statements, handle_async

CONFIG = PeerConfig.from_env()
SQL = Statements.for_tables(CONFIG.tables)

broker = RabbitBroker(CONFIG.amqp_url)
app = FastStream(broker)
database: dict[str, psycopg.AsyncConnection] = {}


@app.on_startup
async def connect() -> None:
    database["conn"] = await psycopg.AsyncConnection.connect(CONFIG.database_url)


@app.on_shutdown
async def disconnect() -> None:
    await database["conn"].close()


@broker.subscriber(
    RabbitQueue(CONFIG.queue, queue_type=QueueType.QUORUM, durable=True),
    channel=Channel(prefetch_count=PREFETCH),
    ack_policy=AckPolicy.NACK_ON_ERROR,
)
async def on_ticket_created(envelope: dict[str, Any], message: RabbitMessage) -> None:
    await handle_async(
        database["conn"],
        SQL,
        envelope,
        consumer=CONFIG.queue,
        correlation_id=message.correlation_id,
    )


if __name__ == "__main__":
    asyncio.run(app.run())
    sys.exit(0)

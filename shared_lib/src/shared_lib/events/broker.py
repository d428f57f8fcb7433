"""RabbitMQ topology and confirmed publishing (kombu over py-amqp).

    with producer() as p:
        send(p, exchange=events_exchange(), routing_key="ticket.created", body=..., headers=...)
    declare_consumer_queues(channel, service="orders", subjects=[Subject.TICKET_CREATED])

Topology, per service S and subject X (queue `S.X`):
  exchange `ticketing.events` (topic, durable) --X--> queue `S.X` (quorum, durable)
  queue `S.X.wait.<ms>` (TTL <ms>) --expires into--> `S.X`   (delayed retries)
  queue `S.X.dead`                                             (dead letters, kept)
Retries and dead letters travel through the default exchange, addressed by queue name,
so a retry reaches only the service that failed, never every subscriber of X again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from functools import cache
from typing import Any

from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.pools import producers

from shared_lib.events.contracts import Subject

logger = logging.getLogger("shared_lib.events")

# A publish during a request must not hang the request when the broker is gone: the
# outbox row is already committed and the relay will send it later.
CONNECT_TIMEOUT_SECONDS = 2
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}

# A subject's consumers, as DESIGN.md §4 lists them. Publishers declare these queues
# too, so an event published before a consumer's first start still waits for it.
CONSUMERS: dict[Subject, tuple[str, ...]] = {
    Subject.TICKET_CREATED: ("orders",),
    Subject.TICKET_UPDATED: ("orders",),
    Subject.ORDER_CREATED: ("tickets", "payments", "expiration"),
    Subject.ORDER_CANCELLED: ("tickets", "payments"),
    Subject.ORDER_COMPLETED: ("payments",),
    Subject.EXPIRATION_COMPLETE: ("orders",),
    Subject.PAYMENT_CREATED: ("orders",),
}


def events_exchange() -> Exchange:
    return Exchange(settings.EVENTS_EXCHANGE, type="topic", durable=True)


def queue_name(service: str, subject: Subject | str) -> str:
    return f"{service}.{Subject(subject)}"


def wait_queue_name(queue: str, delay_ms: int) -> str:
    return f"{queue}.wait.{delay_ms}ms"


def dead_queue_name(queue: str) -> str:
    return f"{queue}.dead"


def consumer_queue(service: str, subject: Subject | str) -> Queue:
    return Queue(
        queue_name(service, subject),
        exchange=events_exchange(),
        routing_key=str(Subject(subject)),
        durable=True,
        # Quorum queues replicate and survive a broker node loss; they are RabbitMQ's
        # recommended durable queue type.
        queue_arguments={"x-queue-type": "quorum"},
    )


def wait_queue(queue: str, delay_ms: int) -> Queue:
    return Queue(
        wait_queue_name(queue, delay_ms),
        durable=True,
        # One fixed TTL per queue: every message expires in arrival order, so none waits
        # behind a longer one (per-message TTLs only expire at the head of a queue).
        queue_arguments={
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
        },
    )


def dead_queue(queue: str) -> Queue:
    return Queue(dead_queue_name(queue), durable=True)


def declare_consumer_queues(channel: Any, *, service: str, subjects: Iterable[Subject]) -> None:
    """Declare (idempotently) the service's queues, their wait queues and dead letters."""
    for subject in subjects:
        main = consumer_queue(service, subject)
        main(channel).declare()
        for delay in settings.EVENTS_RETRY_DELAYS_MS:
            wait_queue(main.name, delay)(channel).declare()
        dead_queue(main.name)(channel).declare()


def declare_subscriber_queues(channel: Any, subject: Subject) -> None:
    for service in CONSUMERS[subject]:
        declare_consumer_queues(channel, service=service, subjects=[subject])


def connection(url: str | None = None) -> Connection:
    """A new connection whose publishes wait for the broker's confirm."""
    return Connection(
        url or settings.RABBITMQ_URL,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        transport_options={"confirm_publish": True},
        heartbeat=0,
    )


@cache
def _pool_connection(url: str) -> Connection:
    return connection(url)


@contextlib.contextmanager
def producer() -> Iterator[Any]:
    """A pooled producer on a confirm-enabled connection (thread-safe pool)."""
    conn = _pool_connection(settings.RABBITMQ_URL)
    with producers[conn].acquire(block=True, timeout=CONNECT_TIMEOUT_SECONDS) as pooled:
        yield pooled


_declared: set[tuple[str, str, str]] = set()


def ensure_subject_topology(pooled: Any, subject: Subject) -> None:
    """Declare the exchange and the subject's subscriber queues once per process."""
    key = (settings.RABBITMQ_URL, settings.EVENTS_EXCHANGE, str(subject))
    if key in _declared:
        return
    channel = pooled.channel
    events_exchange()(channel).declare()
    declare_subscriber_queues(channel, subject)
    _declared.add(key)


def forget_declarations() -> None:
    """Tests only: a new vhost needs its topology declared again."""
    _declared.clear()
    _pool_connection.cache_clear()


def send(
    pooled: Any,
    *,
    body: dict[str, Any],
    routing_key: str,
    exchange: Exchange | str = "",
    message_id: str,
    headers: dict[str, Any],
    correlation_id: str,
    content_type: str | None = None,
    content_encoding: str | None = None,
) -> None:
    """Publish one persistent message (JSON, or raw bytes with their content type) and
    wait for the broker's confirm."""
    encoding = (
        {"content_type": content_type, "content_encoding": content_encoding or "binary"}
        if content_type
        else {"serializer": "json"}
    )
    pooled.publish(
        body,
        exchange=exchange,
        routing_key=routing_key,
        **encoding,
        delivery_mode=2,
        message_id=message_id,
        correlation_id=correlation_id,
        headers=headers,
        retry=True,
        retry_policy=PUBLISH_RETRY_POLICY,
    )


def publish_event(
    pooled: Any,
    *,
    event_id: str,
    subject: Subject,
    occurred_at: datetime,
    data: dict[str, Any],
    correlation_id: str,
) -> None:
    """Send one domain event (its envelope) to the events exchange, confirmed; log it.

    The one way events leave a service, from the outbox or (no database) directly.
    """
    ensure_subject_topology(pooled, subject)
    send(
        pooled,
        body={
            "id": event_id,
            "subject": str(subject),
            "occurredAt": occurred_at.isoformat(),
            "data": data,
        },
        exchange=events_exchange(),
        routing_key=str(subject),
        message_id=event_id,
        correlation_id=correlation_id,
        headers={"correlation_id": correlation_id},
    )
    from shared_lib.metrics import EVENTS_PUBLISHED

    EVENTS_PUBLISHED.labels(subject=str(subject)).inc()
    logger.info(
        "event published",
        extra={"subject": str(subject), "event_id": event_id, "correlation_id": correlation_id},
    )

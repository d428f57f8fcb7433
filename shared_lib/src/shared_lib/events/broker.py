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

Who consumes what is contracts.CONSUMERS; a publisher declares its subjects' consumer
queues from it. Each service connects as its own broker user (named after the service)
whose rights `permissions(service)` spells out: publish only its own subjects, declare
and use only its own queues (and the subscriber queues of what it publishes). Every
message carries `user_id`, which RabbitMQ checks against the connection's user, so it
names its sender.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from kombu import Connection, Exchange, Queue
from kombu.pools import producers

from shared_lib import tracing
from shared_lib.events.contracts import CONSUMERS, PRODUCERS, Subject, consumed_by

logger = logging.getLogger("shared_lib.events")

# A publish during a request must not hang the request when the broker is gone: the
# outbox row is already committed and the relay will send it later.
CONNECT_TIMEOUT_SECONDS = 2
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}


# kombu's (and RabbitMQ's) user when a URL names none.
DEFAULT_USER = "guest"
DEFAULT_EXCHANGE = "ticketing.events"


def producer_users() -> Mapping[Subject, str]:
    """Subject -> the broker user that may publish it: contracts.PRODUCERS, unless the
    settings name another map (EVENTS_PRODUCERS: a test app that plays every service)."""
    return getattr(settings, "EVENTS_PRODUCERS", None) or PRODUCERS


def url_user(url: str) -> str:
    """The broker user a URL connects as."""
    return unquote(urlsplit(url).username or DEFAULT_USER)


def own_user() -> str:
    """The broker user this process connects as (RABBITMQ_URL's)."""
    return url_user(settings.RABBITMQ_URL)


@dataclass(frozen=True)
class Permissions:
    """One broker user's rights on the vhost, as RabbitMQ's anchored regular expressions:
    `rabbitmqctl set_permissions USER CONFIGURE WRITE READ` and
    `set_topic_permissions USER EXCHANGE TOPIC_WRITE TOPIC_READ`."""

    configure: str
    write: str
    read: str
    exchange: str
    topic_write: str
    topic_read: str


def _any_of(names: Iterable[str]) -> str:
    escaped = sorted({re.escape(name) for name in names})
    # "^$" matches no resource name (every one is non-empty): nothing allowed.
    return "^(" + "|".join(escaped) + ")$" if escaped else "^$"


def _queue_family(queues: Iterable[str]) -> str:
    """A queue, its wait queues and its dead letters."""
    names = sorted({re.escape(name) for name in queues})
    if not names:
        return ""
    return "(" + "|".join(names) + r")(\.wait\.[0-9]+ms|\.dead)?"


# What every service's Celery worker declares and uses besides the events: its default
# task queue, the remote-control (pidbox) exchanges and queues, the events exchange.
CELERY_RESOURCES = r"celery|celeryev|celeryev\..+|celery@.+|.+\.pidbox|reply\.celery\.pidbox"
# The expiration worker's task queue and Celery's native delayed-delivery topology.
TASK_RESOURCES: dict[str, str] = {
    "expiration": r"expiration\.tasks(\.dead)?|celery_delayed_[0-9]+|celery_delayed_delivery",
}


def permissions(
    service: str,
    *,
    producers: Mapping[Subject, str] = PRODUCERS,
    consumed: Iterable[Subject] | None = None,
    exchange: str = DEFAULT_EXCHANGE,
) -> Permissions:
    """The least a service's broker user needs: consume its own queues, publish its own
    subjects, declare the subscriber queues of those subjects (so an event published
    before its consumer first starts waits for it), retry and dead-letter through the
    default exchange, and run its Celery worker."""
    if consumed is None:
        consumed = consumed_by(service)
    consumed = [Subject(subject) for subject in consumed]
    produced = [subject for subject, producer in producers.items() if producer == service]
    own = _queue_family(queue_name(service, subject) for subject in consumed)
    subscribers = "|".join(
        sorted(
            re.escape(queue_name(subscriber, subject))
            for subject in produced
            for subscriber in CONSUMERS[subject]
        )
    )
    extra = TASK_RESOURCES.get(service)
    shared = "|".join(part for part in (CELERY_RESOURCES, extra) if part)
    ex = re.escape(exchange)
    declare = "|".join(part for part in (own, subscribers, ex, shared) if part)
    return Permissions(
        configure=f"^({declare})$",
        # amq.default: retries and dead letters go to a queue by name. A queue.bind
        # needs write on the queue, hence the subscriber queues.
        write=f"^({declare}|amq\\.default)$",
        # Reading the exchange is binding queues to it; only its own queues are consumed.
        read="^(" + "|".join(part for part in (own, ex, shared) if part) + ")$",
        exchange=exchange,
        topic_write=_any_of(map(str, produced)),
        topic_read=_any_of(map(str, {*consumed, *produced})),
    )


BUS_SERVICES = tuple(sorted({*PRODUCERS.values(), *(s for ss in CONSUMERS.values() for s in ss)}))


def definitions(*, vhost: str, password_hashes: Mapping[str, str]) -> dict[str, Any]:
    """RabbitMQ definitions (load_definitions) of the vhost and each service's user with
    its permissions. A hash is rabbit_password_hashing_sha256's; "" makes a user with no
    password yet, which k8s/rabbitmq.yaml sets from the service's Secret at start."""
    users, grants, topics = [], [], []
    for service in BUS_SERVICES:
        rights = permissions(service)
        users.append(
            {
                "name": service,
                "password_hash": password_hashes.get(service, ""),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": [],
                "limits": {},
            }
        )
        grants.append(
            {
                "user": service,
                "vhost": vhost,
                "configure": rights.configure,
                "write": rights.write,
                "read": rights.read,
            }
        )
        topics.append(
            {
                "user": service,
                "vhost": vhost,
                "exchange": rights.exchange,
                "write": rights.topic_write,
                "read": rights.topic_read,
            }
        )
    return {
        "vhosts": [{"name": vhost}],
        "users": users,
        "permissions": grants,
        "topic_permissions": topics,
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
    """The subject's subscriber queues, so an event waits for a consumer not started yet.
    Their wait and dead-letter queues are each consumer's own business (declared when it
    starts): a publisher may not read or reshape another service's queues."""
    for service in CONSUMERS[subject]:
        consumer_queue(service, subject)(channel).declare()


def connection(url: str | None = None) -> Connection:
    """A new connection whose publishes wait for the broker's confirm."""
    return Connection(
        url or settings.RABBITMQ_URL,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        transport_options={"confirm_publish": True},
        heartbeat=0,
    )


# A consumer's connection sends heartbeats, so a broker or network gone silent is noticed
# (Connection.heartbeat_check) instead of waited on forever.
CONSUMER_HEARTBEAT_SECONDS = 60


def consumer_connection(url: str | None = None) -> Connection:
    """A new connection for a long-lived consumer (heartbeats on)."""
    return Connection(
        url or settings.RABBITMQ_URL,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        heartbeat=CONSUMER_HEARTBEAT_SECONDS,
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


def ready_counts(conn: Connection, queues: Iterable[str]) -> dict[str, int | None]:
    """Messages ready in each queue (unacknowledged ones not counted), by a passive declare
    over AMQP: nothing is created, and a queue that does not exist is None. An AMQP round
    trip per queue; not rabbitmqctl, which starts an Erlang VM for every look (that lists
    a vhost's queues, for when their names are not known: testing.rabbitmq.queue_depths)."""
    counts: dict[str, int | None] = {}
    for name in queues:
        # A channel each: a failed passive declare closes the channel it was sent on.
        channel = conn.channel()
        try:
            counts[name] = channel.queue_declare(queue=name, passive=True).message_count
        except conn.channel_errors:
            counts[name] = None
        finally:
            with contextlib.suppress(*conn.connection_errors, *conn.channel_errors):
                channel.close()
    return counts


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
        # The sender, for consumers to check; RabbitMQ refuses a user_id that is not the
        # connection's own user, so it cannot be forged.
        user_id=pooled.connection.userid or DEFAULT_USER,
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
    traceparent: str = "",
    tracestate: str = "",
) -> None:
    """Send one domain event (its envelope) to the events exchange, confirmed; log it.

    The one way events leave a service, from the outbox or (no database) directly. The
    trace context is the write's, which the outbox row kept ("" when it had none).
    """
    ensure_subject_topology(pooled, subject)
    exchange = events_exchange()
    body = {
        "id": event_id,
        "subject": str(subject),
        "occurredAt": occurred_at.isoformat(),
        "data": data,
    }
    with tracing.sending(
        subject,
        event_id=event_id,
        exchange=exchange.name,
        correlation_id=correlation_id,
        traceparent=traceparent,
        tracestate=tracestate,
    ) as (traceparent, tracestate):
        # Only when there is one: an untraced envelope stays byte for byte what it was.
        if traceparent:
            body["traceparent"] = traceparent
            if tracestate:
                body["tracestate"] = tracestate
        send(
            pooled,
            body=body,
            exchange=exchange,
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

"""Broker helpers for the event tests: raw publishes, queue depths, a tap, in-process draining.

Everything talks to the session's RabbitMQ vhost (the `rabbitmq_vhost` fixture).
"""

import contextlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from kombu import Producer, Queue

from shared_lib.events import broker
from shared_lib.events.consumer import Dispatcher, drain
from shared_lib.events.contracts import Subject
from shared_lib.events.registry import discover_handlers
from shared_lib.testing.processes import free_port
from tests.demo.factories import envelope

LOGGER = "shared_lib.events"

# A test that sends and consumes for real: committed rows (a worker's own connection sees
# them) and the demo's queues declared and empty, before and after.
bus = pytest.mark.usefixtures("transactional_db", "demo_queues")


def event_records(caplog: Any, message: str, event_id: Any = None) -> list[Any]:
    """The shared_lib.events log records with this message (and event id, when given)."""
    return [
        record
        for record in caplog.records
        if record.name == LOGGER
        and record.getMessage() == message
        and (event_id is None or record.event_id == str(event_id))
    ]


SERVICE = "demo"


def demo_dispatcher(*, batch_size: int | None = None) -> Dispatcher:
    return Dispatcher(service=SERVICE, handlers=discover_handlers(), batch_size=batch_size)


def main_queue(subject: Subject | str) -> str:
    return broker.queue_name(SERVICE, subject)


def wait_queues(subject: Subject | str) -> list[str]:
    return [
        broker.wait_queue_name(main_queue(subject), delay)
        for delay in settings.EVENTS_RETRY_DELAYS_MS
    ]


def dead_queue(subject: Subject | str) -> str:
    return broker.dead_queue_name(main_queue(subject))


def demo_queue_names() -> list[str]:
    """Every queue of the demo service: main, wait and dead, for each handled subject."""
    names: list[str] = []
    for subject in discover_handlers():
        names += [main_queue(subject), *wait_queues(subject), dead_queue(subject)]
    return names


def reset_demo_queues() -> None:
    """Declare the demo service's queues and empty them all."""
    with broker.connection() as conn, conn.channel() as channel:
        demo_dispatcher().declare(channel)
        for name in demo_queue_names():
            channel.queue_purge(queue=name)


def depth(name: str) -> int:
    """Messages ready in a queue (unacked ones are not counted)."""
    return depths([name])[name]


def depths(names: list[str]) -> dict[str, int]:
    """Messages ready in each queue; one not declared yet holds none."""
    with broker.connection() as conn:
        return {name: count or 0 for name, count in broker.ready_counts(conn, names).items()}


def nonempty_demo_queues() -> dict[str, int]:
    return {name: count for name, count in depths(demo_queue_names()).items() if count}


def take(name: str) -> list[Any]:
    """Consume (and ack) every message now in a queue; kombu Messages, oldest first."""
    messages = []
    with broker.connection() as conn, conn.channel() as channel:
        queue = Queue(name, no_declare=True)(channel)
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
    return messages


def send_raw(
    body: Any,
    *,
    routing_key: str,
    message_id: str,
    headers: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    exchange: str | None = None,
    url: str | None = None,
    **publish_options: Any,
) -> None:
    """Publish one message as any producer could (default: JSON to the events exchange),
    naming its sender (`user_id`) as RabbitMQ lets a connection name its own user; `url`
    connects as another user, `user_id=None` names nobody."""
    options: dict[str, Any] = {"serializer": "json", **publish_options}
    if correlation_id is not None:
        options["correlation_id"] = correlation_id
    with broker.connection(url) as conn, conn.channel() as channel:
        options.setdefault("user_id", conn.userid or broker.DEFAULT_USER)
        if options["user_id"] is None:
            del options["user_id"]
        Producer(channel).publish(
            body,
            exchange=settings.EVENTS_EXCHANGE if exchange is None else exchange,
            routing_key=routing_key,
            message_id=message_id,
            headers=headers or {},
            delivery_mode=2,
            **options,
        )


def send_event(
    subject: Subject | str,
    data: Any,
    *,
    id: str | None = None,
    correlation_id: str = "corr-test",
) -> str:
    """Publish an envelope straight to the events exchange (no outbox); its id."""
    body = envelope(subject, data, id=id)
    send_raw(
        body,
        routing_key=str(subject),
        message_id=body["id"],
        headers={"correlation_id": correlation_id},
        correlation_id=correlation_id,
    )
    return body["id"]


def drain_demo(
    *, until: Callable[[], bool] | None = None, timeout: float = 15.0, idle_seconds: float = 0.5
) -> None:
    """Consume the demo service's queues in this thread (see consumer.drain)."""
    with broker.connection() as conn:
        drain(conn, demo_dispatcher(), until=until, timeout=timeout, idle_seconds=idle_seconds)


@contextlib.contextmanager
def broker_unreachable() -> Iterator[str]:
    """RABBITMQ_URL points at a closed port inside the block; restored afterwards."""
    original = settings.RABBITMQ_URL
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/unreachable"
    settings.RABBITMQ_URL = url
    broker.forget_declarations()
    try:
        yield url
    finally:
        settings.RABBITMQ_URL = original
        broker.forget_declarations()


class Tap:
    """A queue of the test's own, bound to the events exchange: what was published there."""

    def __init__(self, name: str) -> None:
        self.name = name

    def take(self) -> list[Any]:
        return take(self.name)

    def count(self) -> int:
        return depth(self.name)


@contextlib.contextmanager
def tap(routing_key: str = "#") -> Iterator[Tap]:
    name = f"test.tap.{uuid.uuid4().hex}"
    with broker.connection() as conn, conn.channel() as channel:
        broker.events_exchange()(channel).declare()
        channel.queue_declare(queue=name, durable=False, auto_delete=False)
        channel.queue_bind(queue=name, exchange=settings.EVENTS_EXCHANGE, routing_key=routing_key)
    try:
        yield Tap(name)
    finally:
        with broker.connection() as conn, conn.channel() as channel:
            channel.queue_delete(queue=name)

"""Consuming: each message handled once in effect, in a transaction, acked after commit.

    dispatcher = Dispatcher(service="orders", handlers=discover_handlers())
    consumers = dispatcher.consumers(channel)     # kombu Consumers, one per subject
    # the worker's consumer bootstep (shared_lib.events.worker) does exactly this

For each delivery: check its headers and its sender, validate the envelope and payload
(anything wrong -> dead letter at once, never applied), then in one transaction insert
the inbox row (message id, queue) and run the handler. A redelivered message finds its
inbox row and is acked without running anything. The message is acked only after the
commit, so a crash before it means redelivery, never loss. NotYet and database outages
come back through a wait queue after a delay; other failures too, at most
EVENTS_MAX_ATTEMPTS times, then the message is dead-lettered with its error in the
headers and the consumer moves on.

The sender is the AMQP `user_id`, which RabbitMQ verifies: it must be the broker user of
the subject's producer (contracts.PRODUCERS). A retry or a replayed dead letter comes
back from this service's own user; it carries the sender checked on first delivery in
`x-original-user`, which only this service's own republishes are believed about.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import Enum
from functools import partial
from typing import Any

from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    transaction,
)
from kombu import Consumer
from pydantic import ValidationError

from shared_lib import metrics
from shared_lib.correlation import correlation_scope
from shared_lib.events import broker
from shared_lib.events.contracts import ContractError, Envelope, Subject
from shared_lib.events.registry import Event, Handler, NotYet
from shared_lib.models import InboxMessage, delete_in_batches

logger = logging.getLogger("shared_lib.events")

ATTEMPTS_HEADER = "x-attempts"  # failed deliveries so far
WAITS_HEADER = "x-waits"  # NotYet / database-down deliveries so far
ERROR_HEADER = "x-error"
# Who first sent a message this service republishes (retry, dead letter): believed only
# on a message whose user_id is this service's own.
ORIGINAL_USER_HEADER = "x-original-user"
# Enough for a handler to ride out a transient fault; a message that still fails is a
# bug or poison, better parked in the dead-letter queue than retried forever.
MAX_NOT_YET_FACTOR = 20  # a version gap may take a while to fill: 20x the failure budget


class Rejected(Exception):
    """A delivery this service must not apply: bad headers, or not from the producer."""


def header_count(headers: dict[str, Any], name: str) -> int:
    """A delivery counter header: absent is 0; anything but a non-negative integer
    (a string, a float, a negative number) is Rejected."""
    value = headers.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Rejected(f"malformed header {name}: {value!r:.100}")
    return value


def sender(message: Any, headers: dict[str, Any]) -> str:
    """The broker user that sent the message in the first place ("" when unknown)."""
    user_id = message.properties.get("user_id")
    if user_id is not None and user_id == broker.own_user() and ORIGINAL_USER_HEADER in headers:
        # Republished by this service itself (a retry, a replayed dead letter), which
        # wrote down the sender it had checked.
        return str(headers[ORIGINAL_USER_HEADER])
    return str(user_id or "")


def check_sender(subject: Subject, sent_by: str) -> None:
    producer = broker.producer_users().get(subject)
    if not sent_by or sent_by != producer:
        raise Rejected(
            f"untrusted sender: {subject} is published by {producer}, "
            f"this came from {sent_by or 'an unnamed user'}"
        )


class Outcome(Enum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"


def run_handler(handler: Handler, event: Event, *, consumer: str) -> Outcome:
    """Apply `event` once: inbox row and handler effects commit together, or neither."""
    if not settings.EVENTS_INBOX:
        handler(event)  # no database: the handler itself must tolerate a redelivery
        return Outcome.APPLIED
    with transaction.atomic():
        try:
            with transaction.atomic():  # savepoint: the conflict must not poison the outer
                InboxMessage.objects.create(
                    message_id=event.id,
                    consumer=consumer,
                    subject=event.subject,
                    correlation_id=event.correlation_id,
                )
        except IntegrityError:
            return Outcome.DUPLICATE
        handler(event)
    return Outcome.APPLIED


def purge_inbox(*, older_than: timedelta | None = None) -> int:
    """Delete inbox rows past the retention period, in batches. A redelivery comes within
    minutes (a retry, a restart) and the broker keeps nothing for days, so a row that old
    no longer guards anything."""
    age = older_than if older_than is not None else timedelta(days=settings.EVENTS_RETENTION_DAYS)
    cutoff = datetime.now(UTC) - age
    return delete_in_batches(
        InboxMessage.objects.filter(processed_at__lt=cutoff), order_by="processed_at"
    )


def _seconds_since(moment: datetime) -> float:
    # The contract does not insist on a zone; every producer here writes UTC, so a bare
    # timestamp is read as UTC rather than failing after the message was acked.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - aware).total_seconds()


def _retry_delay_ms(attempt: int) -> int:
    delays = settings.EVENTS_RETRY_DELAYS_MS
    return delays[min(attempt, len(delays)) - 1]


def _log(
    message: str, event_id: str, subject: str, correlation_id: str | None, **extra: Any
) -> None:
    level = logging.WARNING if message.startswith("event dead") else logging.INFO
    logger.log(
        level,
        message,
        extra={"subject": subject, "event_id": event_id, "correlation_id": correlation_id, **extra},
    )


class Dispatcher:
    """Turns deliveries on a service's queues into handler calls."""

    def __init__(self, *, service: str, handlers: dict[Subject, Handler]) -> None:
        self.service = service
        self.handlers = handlers

    def declare(self, channel: Any) -> None:
        broker.events_exchange()(channel).declare()
        broker.declare_consumer_queues(channel, service=self.service, subjects=self.handlers)

    def consumers(self, channel: Any, *, prefetch: int | None = None) -> list[Consumer]:
        self.declare(channel)
        return [
            Consumer(
                channel,
                queues=[broker.consumer_queue(self.service, subject)],
                callbacks=[partial(self.on_message, subject)],
                on_decode_error=partial(self.on_undecodable, subject),
                accept=["json"],
                prefetch_count=prefetch or settings.EVENTS_PREFETCH,
            )
            for subject in self.handlers
        ]

    def on_undecodable(self, subject: Subject, message: Any, exc: Exception) -> None:
        """kombu calls this for a body it cannot decode (not JSON, wrong content type):
        park it as it came, rather than leave it unacked to block a prefetch slot."""
        queue = broker.queue_name(self.service, subject)
        headers = dict(message.headers or {})
        headers[ORIGINAL_USER_HEADER] = sender(message, headers)
        error = f"undecodable message: {type(exc).__name__}: {exc}"
        self._dead_letter(
            queue, subject, message.body, message, headers, error, reason="undecodable", raw=True
        )

    def on_message(self, subject: Subject, body: Any, message: Any) -> None:
        """kombu callback: handle, then ack (or hand the message on and ack)."""
        queue = broker.queue_name(self.service, subject)
        headers = dict(message.headers or {})
        sent_id = headers.get("correlation_id") or message.properties.get("correlation_id")
        # The scope cleans the id up (a fresh one if it is missing or unsafe); the event,
        # its inbox row, its log lines and whatever it publishes all carry that one.
        with correlation_scope(sent_id) as correlation_id:
            headers["correlation_id"] = correlation_id
            # Recorded on every copy this service makes (retry, dead letter), so a
            # replay is judged by who sent it first, never by who parked it.
            sent_by = headers[ORIGINAL_USER_HEADER] = sender(message, headers)
            try:
                attempts = header_count(headers, ATTEMPTS_HEADER)
                waits = header_count(headers, WAITS_HEADER)
                check_sender(subject, sent_by)
            except Rejected as exc:
                self._dead_letter(
                    queue, subject, body, message, headers, str(exc), reason="rejected"
                )
                return
            try:
                envelope = Envelope.model_validate(body)
                if envelope.subject != subject:
                    raise ContractError(
                        f"envelope says {envelope.subject}, queue carries {subject}"
                    )
                data = envelope.payload()
            except (ValidationError, ContractError) as exc:
                error = f"invalid message: {exc}"
                self._dead_letter(queue, subject, body, message, headers, error, reason="invalid")
                return
            event = Event(
                id=envelope.id,
                subject=envelope.subject,
                occurred_at=envelope.occurredAt,
                data=data,
                correlation_id=correlation_id,
                attempt=attempts + waits,
            )
            self._handle(queue, subject, event, body, message, headers)

    def _handle(
        self, queue: str, subject: Subject, event: Event, body: Any, message: Any, headers: dict
    ) -> None:
        started = time.perf_counter()
        close_old_connections()  # a long-idle worker's connection may be gone
        try:
            outcome = run_handler(self.handlers[subject], event, consumer=queue)
        except NotYet as exc:
            self._retry_or_dead(
                queue, subject, body, message, headers, f"not yet: {exc}", reason="not_yet"
            )
            return
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable: not this message's fault, so it waits and comes
            # back like NotYet, without using up the failure budget.
            close_old_connections()
            error = f"database: {exc}"
            self._retry_or_dead(queue, subject, body, message, headers, error, reason="database")
            return
        except Exception as exc:
            logger.exception(
                "event handler failed",
                extra={"subject": str(subject), "event_id": str(event.id)},
            )
            error = "".join(traceback.format_exception_only(exc)).strip()
            self._retry_or_dead(queue, subject, body, message, headers, error, reason="error")
            return
        message.ack()
        metrics.EVENTS_HANDLED.labels(
            queue=queue, subject=str(subject), outcome=outcome.value
        ).inc()
        if outcome is Outcome.APPLIED:
            lag = _seconds_since(event.occurred_at)
            metrics.EVENT_LAG_SECONDS.labels(queue=queue, subject=str(subject)).observe(lag)
        _log(
            "event handled" if outcome is Outcome.APPLIED else "event duplicate skipped",
            str(event.id),
            str(subject),
            event.correlation_id,
            queue=queue,
            attempt=event.attempt,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def _republish(
        self, message: Any, body: Any, *, routing_key: str, headers: dict[str, Any], raw: bool
    ) -> None:
        with broker.producer() as pooled:
            broker.send(
                pooled,
                body=body,
                routing_key=routing_key,
                message_id=str(message.properties.get("message_id") or ""),
                correlation_id=str(headers.get("correlation_id") or ""),
                headers=headers,
                # An undecodable body goes on byte for byte, with its own content type.
                content_type=message.content_type if raw else None,
                content_encoding=message.content_encoding if raw else None,
            )

    def _retry_or_dead(
        self,
        queue: str,
        subject: Subject,
        body: Any,
        message: Any,
        headers: dict,
        error: str,
        *,
        reason: str,
    ) -> None:
        """Come back after a delay, or be dead-lettered once the budget is spent.

        Two budgets, two counters: waiting (NotYet, database down) may take long and is
        nobody's fault; failures (bugs, bad data) get EVENTS_MAX_ATTEMPTS deliveries.
        `reason` (not_yet, database, error) labels the metrics.
        """
        wait = reason != "error"
        counter = WAITS_HEADER if wait else ATTEMPTS_HEADER
        limit = settings.EVENTS_MAX_ATTEMPTS * (MAX_NOT_YET_FACTOR if wait else 1)
        count = header_count(headers, counter) + 1
        if count >= limit:
            self._dead_letter(
                queue, subject, body, message, {**headers, counter: count}, error, reason=reason
            )
            return
        delay = _retry_delay_ms(count)
        retry_headers = {**headers, counter: count, ERROR_HEADER: error[:1000]}
        # The copy is confirmed by the broker before the original is acked: a crash in
        # between leaves two copies (the inbox absorbs one), never none.
        self._republish(
            message,
            body,
            routing_key=broker.wait_queue_name(queue, delay),
            headers=retry_headers,
            raw=False,
        )
        message.ack()
        metrics.EVENTS_RETRIED.labels(queue=queue, subject=str(subject), reason=reason).inc()
        _log(
            "event retry scheduled",
            str(message.properties.get("message_id")),
            str(subject),
            headers.get("correlation_id"),
            queue=queue,
            attempt=count,
            waiting=wait,
            delay_ms=delay,
            error=error[:300],
        )

    def _dead_letter(
        self,
        queue: str,
        subject: Subject,
        body: Any,
        message: Any,
        headers: dict,
        error: str,
        *,
        reason: str,
        raw: bool = False,
    ) -> None:
        dead_headers = {
            **headers,
            ERROR_HEADER: error[:4000],
            "x-dead-at": datetime.now(UTC).isoformat(),
            "x-queue": queue,
        }
        self._republish(
            message, body, routing_key=broker.dead_queue_name(queue), headers=dead_headers, raw=raw
        )
        message.ack()
        metrics.EVENTS_DEAD_LETTERED.labels(queue=queue, subject=str(subject), reason=reason).inc()
        _log(
            "event dead-lettered",
            str(message.properties.get("message_id")),
            str(subject),
            headers.get("correlation_id"),
            queue=queue,
            error=error[:300],
        )


def drain(
    connection: Any,
    dispatcher: Dispatcher,
    *,
    idle_seconds: float = 0.5,
    until: Callable[[], bool] | None = None,
    timeout: float = 30.0,
) -> None:
    """Consume in this thread until idle for `idle_seconds` (or `until()` holds): tests, bench."""
    deadline = time.monotonic() + timeout
    with connection.channel() as channel:
        consumers = dispatcher.consumers(channel)
        for consumer in consumers:
            consumer.consume()
        try:
            while time.monotonic() < deadline:
                if until is not None and until():
                    return
                try:
                    connection.drain_events(timeout=idle_seconds)
                except TimeoutError:
                    if until is None:
                        return
        finally:
            for consumer in consumers:
                consumer.cancel()

"""Consuming: each message handled once in effect, in a transaction, acked after commit.

    dispatcher = Dispatcher(service="orders", handlers=discover_handlers())
    with broker.consumer_connection() as conn:
        dispatcher.consume(conn, should_stop=stopping.is_set)
    # the worker's consumer thread (shared_lib.events.worker) does exactly this

A worker takes the deliveries it already holds, up to EVENTS_BATCH_SIZE (it never waits
for a batch to fill), and settles them together. Each delivery's headers, sender,
envelope and payload are checked first (anything wrong -> dead letter at once, never
applied). The rest are applied in one transaction: their inbox rows (message id, queue)
in one INSERT ... ON CONFLICT DO NOTHING, then each new event's handler in delivery
order, one commit, then one multiple-ack. A redelivered message finds its inbox row and
is skipped. Nothing is acked before the commit, so a crash means redelivery, never loss.
Each message keeps its own fate: when a handler fails, the batch is run again with a
savepoint per message, so only that message's effects are undone. NotYet and database
outages come back through a wait queue after a delay; other failures too, at most
EVENTS_MAX_ATTEMPTS times, then the message is dead-lettered with its error in the
headers; the others in the batch are unaffected.

The sender is the AMQP `user_id`, which RabbitMQ verifies: it must be the broker user of
the subject's producer (contracts.PRODUCERS). A retry or a replayed dead letter comes
back from this service's own user; it carries the sender checked on first delivery in
`x-original-user`, which only this service's own republishes are believed about.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from functools import partial
from typing import Any, NamedTuple

from django.conf import settings
from django.db import (
    InterfaceError,
    OperationalError,
    transaction,
)
from django.db import connection as db_connection
from kombu import Consumer
from psycopg.pq import TransactionStatus
from pydantic import ValidationError

from shared_lib import metrics, tracing
from shared_lib.correlation import correlation_scope
from shared_lib.events import broker
from shared_lib.events.contracts import ContractError, Envelope, Subject
from shared_lib.events.registry import Event, Handler, NotYet, takes_batches
from shared_lib.models import InboxMessage, delete_in_batches
from shared_lib.postgresql.base import savepoints_suspended

logger = logging.getLogger("shared_lib.events")

ATTEMPTS_HEADER = "x-attempts"  # failed deliveries so far
WAITS_HEADER = "x-waits"  # NotYet / database-down deliveries so far
ERROR_HEADER = "x-error"  # why a message was dead-lettered, cut to ERROR_HEADER_MAX
ERROR_HEADER_MAX = 4000
DEAD_AT_HEADER = "x-dead-at"  # when (ISO 8601, UTC)
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
    """What became of an event that applied: its log line says which."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"

    @property
    def log_message(self) -> str:
        return "event handled" if self is Outcome.APPLIED else "event duplicate skipped"


class Failure(StrEnum):
    """Why a delivery did not apply; the value is the metrics' `reason` label."""

    REJECTED = "rejected"  # bad headers, or not from the subject's producer
    INVALID = "invalid"  # not an envelope, or not the subject's contract
    UNDECODABLE = "undecodable"  # not JSON at all
    NOT_YET = "not_yet"  # the handler raised NotYet
    DATABASE = "database"  # the database was unreachable
    ERROR = "error"  # the handler raised anything else

    @property
    def waits(self) -> bool:
        """Nobody's fault, so it waits on the generous budget (MAX_NOT_YET_FACTOR)."""
        return self in (Failure.NOT_YET, Failure.DATABASE)


Result = Outcome | BaseException  # what applying one event came to


class Work(NamedTuple):
    """One event to apply: the handler, the event, and the queue it came from (its inbox
    rows are keyed by (event id, queue))."""

    handler: Handler
    event: Event
    queue: str


INBOX_TABLE = InboxMessage._meta.db_table
# One statement claims a whole batch; the conflict target is inbox_once_per_consumer.
_CLAIM_SQL = f"""
    INSERT INTO {INBOX_TABLE} (message_id, consumer, subject, correlation_id, processed_at)
    SELECT * FROM unnest(%s::uuid[], %s::varchar[], %s::varchar[], %s::varchar[],
                         %s::timestamptz[])
    ON CONFLICT (message_id, consumer) DO NOTHING
    RETURNING message_id, consumer
"""  # noqa: S608 (the table name is our model's, no input)
_UNCLAIM_SQL = f"""
    DELETE FROM {INBOX_TABLE}
    WHERE (message_id, consumer) IN (SELECT * FROM unnest(%s::uuid[], %s::varchar[]))
"""  # noqa: S608 (the table name is our model's, no input)


class _Redo(Exception):
    """A handler failed in a batch run without savepoints: roll it all back, run again."""


class AbortedTransaction(RuntimeError):
    """A handler returned with the transaction aborted: it caught a database error outside
    an atomic block of its own. Committing would silently roll back the batch."""


def _check_transaction() -> None:
    """Raises AbortedTransaction when the last handler left the transaction failed, or
    marked for rollback by an atomic block without a savepoint that it caught the error
    of (both known locally: no round trip)."""
    connection = transaction.get_connection()
    raw = connection.connection
    if connection.needs_rollback or (
        raw is not None and raw.info.transaction_status == TransactionStatus.INERROR
    ):
        raise AbortedTransaction(
            "the handler caught an error and left the transaction aborted or marked for"
            " rollback; catch it outside a transaction.atomic() block of its own, so that"
            " only that block's savepoint is undone"
        )


def _claim(items: list[Work]) -> set[tuple[uuid.UUID, str]]:
    """Insert the inbox rows of a batch in one statement; the (id, consumer) pairs that
    were new. A pair already there is a redelivery of something applied before."""
    now = datetime.now(UTC)
    with db_connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            [
                [item.event.id for item in items],
                [item.queue for item in items],
                [str(item.event.subject) for item in items],
                [item.event.correlation_id[:64] for item in items],
                [now] * len(items),
            ],
        )
        return {(row[0], row[1]) for row in cursor.fetchall()}


def _unclaim(keys: list[tuple[uuid.UUID, str]]) -> None:
    with db_connection.cursor() as cursor:
        cursor.execute(_UNCLAIM_SQL, [[key[0] for key in keys], [key[1] for key in keys]])


def _run_batch(items: list[Work], *, isolated: bool) -> list[Result]:
    """One transaction: claim the inbox rows, run each new event's handler in delivery
    order, give the failed ones their inbox rows back, commit.

    Without `isolated`, handlers run back to back (a batch handler once, with all its
    events) and the first failure raises _Redo (rolling everything back); `isolated`
    runs each event in a savepoint of its own, so one failure undoes only its own
    effects."""
    with transaction.atomic():
        fresh = _claim(items)
        results: list[Result | None] = []
        for item in items:
            key = (item.event.id, item.queue)
            # Applied before, or earlier in this very batch: skipped.
            results.append(None if key in fresh else Outcome.DUPLICATE)
            fresh.discard(key)
        if isolated:
            failed = _run_isolated(items, results)
            if failed:
                _unclaim(failed)  # so the retry is not taken for a duplicate
        else:
            # Any failure rolls the batch back whole and runs it again isolated: a
            # handler's own atomic blocks need no savepoints (two round trips each). An
            # event alone keeps them, so that its failure needs no second run.
            suspended = savepoints_suspended(transaction.get_connection())
            with contextlib.nullcontext() if len(items) == 1 else suspended:
                _run_together(items, results)
    return results  # type: ignore[return-value]  # every None is filled in


def _together(items: list[Work], results: list[Result | None], index: int) -> list[int]:
    """The items one call of items[index]'s handler takes: a batch handler this event and
    the next ones of its queue not yet settled, up to the first event of another queue
    (so events are handled in the order they were delivered, even across queues: an
    expiry delivered after a payment never overtakes it); any other handler this one."""
    if not takes_batches(items[index].handler):
        return [index]
    together = []
    for later in range(index, len(items)):
        if results[later] is not None:
            continue  # a duplicate: not handled, so not in the way
        if items[later].queue != items[index].queue:
            break
        together.append(later)
    return together


def _run_together(items: list[Work], results: list[Result | None]) -> None:
    for index, (handler, event, queue) in enumerate(items):
        if results[index] is not None:
            continue  # a duplicate, or a batch handler's event already handled
        together = _together(items, results, index)
        if takes_batches(handler):
            events: Sequence[Event] = [items[later].event for later in together]
            run = partial(handler, events)
        else:
            events = (event,)
            run = partial(handler, event)
        with correlation_scope(event.correlation_id):
            try:
                with tracing.handling(events, queue=queue):
                    run()
                    _check_transaction()
            except Exception as exc:
                raise _Redo from exc
        for later in together:
            results[later] = Outcome.APPLIED


def _call(item: Work) -> None:
    """One event through its handler, a batch handler's too."""
    handler, event, queue = item
    with tracing.handling((event,), queue=queue):
        handler([event] if takes_batches(handler) else event)  # type: ignore[arg-type]


def _run_isolated(items: list[Work], results: list[Result | None]) -> list[tuple[uuid.UUID, str]]:
    """Each new event in a savepoint of its own; the (id, queue) of those that failed."""
    failed = []
    for index, item in enumerate(items):
        if results[index] is not None:
            continue
        with correlation_scope(item.event.correlation_id):
            try:
                with transaction.atomic():
                    _call(item)
                    _check_transaction()
            except Exception as exc:
                if _connection_lost(exc):
                    raise  # the whole batch is lost with the connection
                results[index] = exc
                failed.append((item.event.id, item.queue))
                continue
        results[index] = Outcome.APPLIED
    return failed


def apply_events(work: Sequence[tuple[Handler, Event, str]]) -> list[Result]:
    """Apply a batch of (handler, event, queue): each event's inbox row and its
    handler's effects commit together, or neither; an event applied before is skipped.
    Returns, per item, its Outcome or the exception its handler raised (that event's
    effects undone, the others kept).

    The batch first runs without savepoints (the common case: nothing fails); if any
    handler raises, it is rolled back and run again with a savepoint per event. A
    database outage raises (OperationalError, InterfaceError): nothing was applied."""
    items = [Work(*item) for item in work]
    if not items:
        return []
    if not settings.EVENTS_INBOX:
        # No database: each handler alone; it must tolerate a redelivery itself.
        results: list[Result] = []
        for item in items:
            with correlation_scope(item.event.correlation_id):
                try:
                    _call(item)
                except Exception as exc:
                    results.append(exc)
                    continue
            results.append(Outcome.APPLIED)
        return results
    try:
        return _run_batch(items, isolated=False)
    except _Redo as redo:
        cause = redo.__cause__
        assert cause is not None
        if _connection_lost(cause):
            raise cause from None
        if len(items) == 1:
            return [cause]  # rolled back whole (it ran with savepoints): nothing applied
    return _run_batch(items, isolated=True)


def _connection_lost(exc: BaseException | None) -> bool:
    """A database error after which nothing more can run on this connection: the server
    ended it (SQLSTATE class 08, 57P..) or the client lost it (no SQLSTATE at all), as
    opposed to one statement failing (a lock timeout, a deadlock)."""
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    state = getattr(exc.__cause__, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


def run_handler(handler: Handler, event: Event, *, consumer: str) -> Outcome:
    """Apply one event (see apply_events); the handler's exception, if any, is raised."""
    (result,) = apply_events([Work(handler, event, consumer)])
    if isinstance(result, BaseException):
        raise result
    return result


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


@dataclass
class Delivery:
    """One message taken off a queue, waiting for its batch to be settled."""

    subject: Subject
    queue: str
    message: Any
    body: Any
    headers: dict[str, Any]
    event: Event | None = None  # set once it passed every check
    # Why it cannot be applied, in words (its x-error header) and as a kind.
    error: str = ""
    failure: Failure | None = None
    raw: bool = False  # undecodable: parked byte for byte

    @property
    def message_id(self) -> str:
        return str(self.message.properties.get("message_id") or "")

    def log_fields(self) -> dict[str, Any]:
        """What a log line about this message names, whatever its fate."""
        return {
            "subject": str(self.subject),
            "event_id": self.message_id,
            "correlation_id": self.headers.get("correlation_id"),
            "queue": self.queue,
        }


class Dispatcher:
    """Turns deliveries on a service's queues into handler calls, a batch at a time.

    kombu's callbacks only collect deliveries (`pending`); `flush()` settles everything
    collected: rejects dead-lettered, the rest applied in one transaction (apply_events),
    failures sent to a wait queue or dead-lettered, then one ack for the whole batch.
    `consume()` is the loop that collects what has already arrived, never waiting for a
    batch to fill, and flushes.
    """

    def __init__(
        self, *, service: str, handlers: dict[Subject, Handler], batch_size: int | None = None
    ) -> None:
        self.service = service
        self.handlers = handlers
        self.batch_size = batch_size or settings.EVENTS_BATCH_SIZE
        self.pending: list[Delivery] = []

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

    # -- collecting ---------------------------------------------------------------------

    def on_undecodable(self, subject: Subject, message: Any, exc: Exception) -> None:
        """kombu calls this for a body it cannot decode (not JSON, wrong content type):
        it is parked as it came, rather than left unacked to block a prefetch slot."""
        headers = dict(message.headers or {})
        headers[ORIGINAL_USER_HEADER] = sender(message, headers)
        self.pending.append(
            Delivery(
                subject,
                broker.queue_name(self.service, subject),
                message,
                message.body,
                headers,
                error=f"undecodable message: {type(exc).__name__}: {exc}",
                failure=Failure.UNDECODABLE,
                raw=True,
            )
        )

    def on_message(self, subject: Subject, body: Any, message: Any) -> None:
        """kombu callback: check the delivery and collect it for the next flush."""
        headers = dict(message.headers or {})
        delivery = Delivery(
            subject, broker.queue_name(self.service, subject), message, body, headers
        )
        self.pending.append(delivery)
        sent_id = headers.get("correlation_id") or message.properties.get("correlation_id")
        # The scope cleans the id up (a fresh one if it is missing or unsafe); the event,
        # its inbox row, its log lines and whatever it publishes all carry that one.
        with correlation_scope(sent_id) as correlation_id:
            headers["correlation_id"] = correlation_id
        # Recorded on every copy this service makes (retry, dead letter), so a replay is
        # judged by who sent it first, never by who parked it.
        sent_by = headers[ORIGINAL_USER_HEADER] = sender(message, headers)
        try:
            attempts = header_count(headers, ATTEMPTS_HEADER)
            waits = header_count(headers, WAITS_HEADER)
            check_sender(subject, sent_by)
        except Rejected as exc:
            delivery.error, delivery.failure = str(exc), Failure.REJECTED
            return
        try:
            envelope = Envelope.model_validate(body)
            if envelope.subject != subject:
                raise ContractError(f"envelope says {envelope.subject}, queue carries {subject}")
            data = envelope.payload()
        except (ValidationError, ContractError) as exc:
            delivery.error, delivery.failure = f"invalid message: {exc}", Failure.INVALID
            return
        delivery.event = Event(
            id=envelope.id,
            subject=envelope.subject,
            occurred_at=envelope.occurredAt,
            data=data,
            correlation_id=correlation_id,
            attempt=attempts + waits,
            traceparent=envelope.traceparent or "",
            tracestate=envelope.tracestate or "",
        )

    # -- settling -----------------------------------------------------------------------

    def flush(self) -> int:
        """Settle the deliveries collected first (batch_size at most); how many.

        Whatever it raises (the broker gone while republishing), nothing is acked: the
        broker redelivers the batch, and the inbox absorbs what was applied."""
        size = self.batch_size
        batch, self.pending = self.pending[:size], self.pending[size:]
        if not batch:
            return 0
        started = time.perf_counter()
        if not db_connection.in_atomic_block:
            # Between units of work, as Django does between requests: a connection past
            # CONN_MAX_AGE or broken goes, and a kept one is checked by its next statement
            # (shared_lib.postgresql), which reconnects if the server dropped it meanwhile.
            db_connection.close_if_unusable_or_obsolete()
        valid = [d for d in batch if d.event is not None]
        for delivery in batch:
            if delivery.event is None:
                assert delivery.failure is not None  # every check that fails names one
                self._dead_letter(delivery, delivery.error, failure=delivery.failure)
        results = self._apply(valid)
        for delivery, result in zip(valid, results, strict=True):
            if isinstance(result, BaseException):
                self._retry_or_dead(delivery, result)
        # Every delivery is now committed or republished (confirmed): one ack for all.
        # They arrived on one channel in delivery-tag order, so the last tag covers them.
        batch[-1].message.ack(multiple=True)
        elapsed_ms = (time.perf_counter() - started) * 1000
        metrics.EVENT_BATCH_SIZE.observe(len(batch))
        logger.debug("event batch settled", extra={"size": len(batch), "ms": round(elapsed_ms, 2)})
        for delivery, result in zip(valid, results, strict=True):
            if isinstance(result, Outcome):
                self._handled(delivery, result, round(elapsed_ms / len(batch), 2))
        return len(batch)

    def _apply(self, valid: list[Delivery]) -> list[Result]:
        work = [
            Work(self.handlers[d.subject], d.event, d.queue)  # type: ignore[arg-type]
            for d in valid  # each passed every check (flush), so it has its event
        ]
        try:
            return apply_events(work)
        except (OperationalError, InterfaceError) as exc:
            # The database is unreachable: no event's fault, so they all wait and come
            # back, without using up their failure budgets. The next batch reconnects.
            db_connection.close()
            return [exc] * len(valid)

    def _handled(self, delivery: Delivery, outcome: Outcome, ms: float) -> None:
        event = delivery.event
        assert event is not None
        subject = str(delivery.subject)
        metrics.EVENTS_HANDLED.labels(
            queue=delivery.queue, subject=subject, outcome=outcome.value
        ).inc()
        if outcome is Outcome.APPLIED:
            lag = _seconds_since(event.occurred_at)
            metrics.EVENT_LAG_SECONDS.labels(queue=delivery.queue, subject=subject).observe(lag)
        logger.info(
            outcome.log_message,
            extra={
                "subject": subject,
                "event_id": str(event.id),
                "correlation_id": event.correlation_id,
                "queue": delivery.queue,
                "attempt": event.attempt,
                "ms": ms,  # the batch's time, shared out
            },
        )

    def _republish(self, delivery: Delivery, *, routing_key: str, headers: dict[str, Any]) -> None:
        message = delivery.message
        with broker.producer() as pooled:
            broker.send(
                pooled,
                body=delivery.body,
                routing_key=routing_key,
                message_id=delivery.message_id,
                correlation_id=str(headers.get("correlation_id") or ""),
                headers=headers,
                # An undecodable body goes on byte for byte, with its own content type.
                content_type=message.content_type if delivery.raw else None,
                content_encoding=message.content_encoding if delivery.raw else None,
            )

    def _retry_or_dead(self, delivery: Delivery, exc: BaseException) -> None:
        """Come back after a delay, or be dead-lettered once the budget is spent.

        Two budgets, two counters: waiting (NotYet, database down) may take long and is
        nobody's fault; failures (bugs, bad data) get EVENTS_MAX_ATTEMPTS deliveries.
        """
        if isinstance(exc, NotYet):
            failure, error = Failure.NOT_YET, f"not yet: {exc}"
        elif isinstance(exc, (OperationalError, InterfaceError)):
            failure, error = Failure.DATABASE, f"database: {exc}"
        else:
            failure = Failure.ERROR
            error = "".join(traceback.format_exception_only(exc)).strip()
            event = delivery.event
            logger.error(
                "event handler failed",
                exc_info=exc,
                extra={"subject": str(delivery.subject), "event_id": str(event and event.id)},
            )
        wait = failure.waits
        counter = WAITS_HEADER if wait else ATTEMPTS_HEADER
        limit = settings.EVENTS_MAX_ATTEMPTS * (MAX_NOT_YET_FACTOR if wait else 1)
        headers = delivery.headers
        count = header_count(headers, counter) + 1
        if count >= limit:
            delivery.headers = {**headers, counter: count}
            self._dead_letter(delivery, error, failure=failure)
            return
        delay = _retry_delay_ms(count)
        # The copy is confirmed by the broker before the original is acked: a crash in
        # between leaves two copies (the inbox absorbs one), never none.
        self._republish(
            delivery,
            routing_key=broker.wait_queue_name(delivery.queue, delay),
            headers={**headers, counter: count, ERROR_HEADER: error[:1000]},
        )
        metrics.EVENTS_RETRIED.labels(
            queue=delivery.queue, subject=str(delivery.subject), reason=failure
        ).inc()
        logger.info(
            "event retry scheduled",
            extra={
                **delivery.log_fields(),
                "attempt": count,
                "waiting": wait,
                "delay_ms": delay,
                "error": error[:300],
            },
        )

    def _dead_letter(self, delivery: Delivery, error: str, *, failure: Failure) -> None:
        headers = {
            **delivery.headers,
            ERROR_HEADER: error[:ERROR_HEADER_MAX],
            DEAD_AT_HEADER: datetime.now(UTC).isoformat(),
            "x-queue": delivery.queue,
        }
        self._republish(
            delivery, routing_key=broker.dead_queue_name(delivery.queue), headers=headers
        )
        metrics.EVENTS_DEAD_LETTERED.labels(
            queue=delivery.queue, subject=str(delivery.subject), reason=failure
        ).inc()
        logger.warning(
            "event dead-lettered",
            extra={**delivery.log_fields(), "error": error[:300]},
        )

    # -- the loop -----------------------------------------------------------------------

    def consume(
        self,
        conn: Any,
        *,
        should_stop: Callable[[], bool],
        on_idle: Callable[[], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        """Consume on `conn` until `should_stop()`: wait for a delivery, collect whatever
        else has already arrived (up to batch_size), flush. `on_idle()` runs after
        `idle_seconds` without a delivery, `on_tick()` after that and after every batch.
        Connection errors propagate; what was not flushed is redelivered."""
        with conn.channel() as channel:
            consumers = self.consumers(channel)
            for consumer in consumers:
                consumer.consume()
            if on_tick is not None:
                on_tick()  # consuming: nothing published from now on is missed
            try:
                while not should_stop():
                    # Deliveries may already be collected: py-amqp dispatches them while
                    # it waits for a reply (starting the consumers, say).
                    if not self.pending:
                        try:
                            conn.drain_events(timeout=idle_seconds)
                        except TimeoutError:
                            conn.heartbeat_check()
                            if on_idle is not None:
                                on_idle()
                            if on_tick is not None:
                                on_tick()
                            continue
                    # Only what is already here: a batch never waits to fill.
                    while len(self.pending) < self.batch_size:
                        try:
                            conn.drain_events(timeout=0)
                        except TimeoutError:
                            break
                    self.flush()
                    if on_tick is not None:
                        on_tick()
            finally:
                self.pending = []  # unacked: the broker hands them out again
                for consumer in consumers:
                    with contextlib.suppress(*conn.connection_errors, *conn.channel_errors):
                        consumer.cancel()


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
    idle = threading.Event()

    def should_stop() -> bool:
        if time.monotonic() > deadline:
            return True
        return until() if until is not None else idle.is_set()

    dispatcher.consume(
        connection, should_stop=should_stop, on_idle=idle.set, idle_seconds=idle_seconds
    )

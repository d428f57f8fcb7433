"""Publishing through a transactional outbox (docs/events.md).

    with transaction.atomic():
        order = Order.objects.create(...)
        publish(Subject.ORDER_CREATED, {...})   # an outbox row and a notification

The request does no broker I/O. PostgreSQL delivers publish()'s notification only when
the transaction commits, and it wakes the relay (`relay_pending`, looped by the service's
worker with a RelayWakeup), which sends every pending row in batches with publisher
confirms and marks them sent. The relay also polls, so a notification nobody heard (no
relay listening at that moment) delays a row, never loses it; a failed send backs off per
row. A rolled-back transaction takes its row and its notification with it, so nothing is
ever published for a change that did not happen. Row locks (SELECT ... FOR UPDATE SKIP
LOCKED) keep any number of relays from sending one row twice in normal operation; a crash
between the broker's confirm and the commit that marks the row sent can repeat it (at
least once, by design).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import timedelta
from functools import cache
from typing import Any

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from shared_lib import tracing
from shared_lib.correlation import current_correlation_id
from shared_lib.events import broker
from shared_lib.events.contracts import Subject, validate_data
from shared_lib.models import OutboxEvent, backoff, delete_in_batches, retry_later

logger = logging.getLogger("shared_lib.events")

# The channel publish() notifies and the relay listens on. Channels are per database, and
# every service has its own.
RELAY_CHANNEL = "shared_lib_outbox"
_LISTEN_SQL = f"LISTEN {RELAY_CHANNEL}"
RELAY_BATCH = 200
FIRST_BACKOFF = timedelta(seconds=2)
MAX_BACKOFF = timedelta(seconds=60)
# How often a waiting relay looks at its stop flag: the worker's shutdown waits this long.
STOP_CHECK_SECONDS = 0.2


class OutsideTransaction(RuntimeError):
    """publish() was called outside transaction.atomic()."""


def publish(subject: Subject | str, data: Any) -> uuid.UUID:
    """Record an event in the current transaction; the relay sends it after the commit."""
    (event_id,) = publish_many(subject, [(data, current_correlation_id())])
    return event_id


def publish_many(subject: Subject | str, items: Sequence[tuple[Any, str]]) -> list[uuid.UUID]:
    """publish() for several events of one subject in one round trip: (data, the
    correlation id each carries), as a batch handler announces what each event caused."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise OutsideTransaction(
            "publish() must run inside transaction.atomic(), with the change it announces"
        )
    rows, ids, now = [], [], timezone.now()
    # The rows keep the write's trace context for the relay (("", "") untraced).
    with tracing.creating(subject, count=len(items)) as trace_context:
        for data, correlation_id in items:
            payload = validate_data(subject, data).model_dump(mode="json")  # ContractError if bad
            event_id = uuid.uuid4()
            # A new row as OutboxEvent's defaults make it, in _INSERT_FIELDS' order.
            row = [event_id, str(Subject(subject)), Jsonb(payload), now, correlation_id]
            rows.append([*row, now, now, 0, "", *trace_context])
            ids.append(event_id)
        with connection.cursor() as cursor:
            if len(rows) == 1:
                cursor.execute(_insert_sql(), rows[0])
            elif rows:
                cursor.executemany(_insert_sql(), rows)  # psycopg pipelines them
    return ids


_INSERT_FIELDS = (
    *("id", "subject", "data", "occurred_at", "correlation_id"),
    *("created_at", "next_attempt_at", "attempts", "last_error", "traceparent", "tracestate"),
)


@cache
def _insert_sql() -> str:
    """publish()'s one statement: the row, and the relay's notification (delivered at
    commit or never; PostgreSQL folds those of one transaction into one). SQL of its own:
    Model.objects.create() cost as much CPU again as the statement, on every write."""
    columns = ", ".join(OutboxEvent._meta.get_field(name).column for name in _INSERT_FIELDS)
    values = ", ".join(["%s"] * len(_INSERT_FIELDS))
    return (
        f"INSERT INTO {OutboxEvent._meta.db_table} ({columns}) VALUES ({values})"  # noqa: S608 (the model's own names)
        f" RETURNING pg_notify('{RELAY_CHANNEL}', '')"
    )


def _send_row(pooled: Any, row: OutboxEvent) -> None:
    broker.publish_event(
        pooled,
        event_id=str(row.id),
        subject=Subject(row.subject),
        occurred_at=row.occurred_at,
        data=row.data,
        correlation_id=row.correlation_id,
        traceparent=row.traceparent,
        tracestate=row.tracestate,
    )


def _send_locked(rows: Iterable[OutboxEvent]) -> tuple[int, Exception | None]:
    """Send rows already locked by the caller's transaction; stop at the first failure."""
    sent: list[OutboxEvent] = []
    failure: Exception | None = None
    failed_row: OutboxEvent | None = None
    try:
        with broker.producer() as pooled:
            for row in rows:
                failed_row = row
                _send_row(pooled, row)
                sent.append(row)
            failed_row = None
    except Exception as exc:  # broker down, connection lost, nack: the row stays unsent
        failure = exc
    if sent:
        with transaction.get_connection().cursor() as cursor:
            cursor.execute(_mark_sent_sql(), [timezone.now(), [row.id for row in sent]])
    if failed_row is not None and failure is not None:
        failed_row.attempts += 1
        retry_later(
            failed_row, failure, backoff(failed_row.attempts, first=FIRST_BACKOFF, most=MAX_BACKOFF)
        )
    return len(sent), failure


def relay_pending(*, batch: int = RELAY_BATCH) -> tuple[int, bool]:
    """Send due unsent rows, oldest first: (how many were sent, whether the broker failed).

    A row never tried is due at once, whatever the clocks of the process that wrote it
    and this one say; a row whose send failed waits out its back-off.
    """
    with transaction.atomic():
        rows = _lock_due(batch)
        if not rows:
            return 0, False
        sent, failure = _send_locked(rows)
    if sent:
        logger.info("outbox relayed", extra={"count": sent})
    if failure is not None:
        logger.warning(
            "outbox relay failed", extra={"error": f"{type(failure).__name__}: {failure}"}
        )
    return sent, failure is not None


# The relay's two statements run once per pass, which is once per event at a modest rate:
# written out (by _lock_due and _send_locked), since building them with the ORM cost more
# CPU than everything else a pass does for one event.


@cache
def _lock_due_sql() -> str:
    meta = OutboxEvent._meta
    columns = ", ".join(field.column for field in meta.concrete_fields)
    return (
        f"SELECT {columns} FROM {meta.db_table}"  # noqa: S608 (the model's own names)
        " WHERE sent_at IS NULL AND (attempts = 0 OR next_attempt_at <= %s)"
        " ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED"
    )


@cache
def _mark_sent_sql() -> str:
    table = OutboxEvent._meta.db_table
    return f"UPDATE {table} SET sent_at = %s WHERE id = ANY(%s)"  # noqa: S608 (its own table)


def _lock_due(batch: int) -> list[OutboxEvent]:
    """Up to `batch` due unsent rows, oldest first, locked for this transaction (rows other
    relays hold are skipped)."""
    names = [field.attname for field in OutboxEvent._meta.concrete_fields]
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        cursor.execute(_lock_due_sql(), [timezone.now(), batch])
        rows = [OutboxEvent.from_db(connection.alias, names, values) for values in cursor]
    for row in rows:
        row.data = json.loads(row.data)  # jsonb comes as text; JSONField parses it in the ORM
    return rows


class RelayWakeup:
    """The relay's LISTEN on RELAY_CHANNEL, on a connection of its own (autocommit).

        wakeup = RelayWakeup()
        wakeup.listen()                    # before the pass that looks for rows
        wakeup.wait(1.0, stop)             # True once a publishing transaction commits

    Without a connection (the database away) wait() just sleeps, and the relay polls.
    """

    def __init__(self) -> None:
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def listen(self) -> None:
        """Connect and LISTEN unless already listening; a failure is logged, not raised."""
        if self.listening:
            return
        self.close()
        try:
            params = connections[DEFAULT_DB_ALIAS].get_connection_params()
            conn = psycopg.connect(**params, autocommit=True)
            conn.execute(_LISTEN_SQL)
        except psycopg.Error as exc:
            logger.warning(
                "outbox relay not listening, polling",
                extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return
        self._conn = conn

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Until a notification, `timeout` seconds or `stop`; True when notified. Every
        notification already queued is taken with the first: one pass serves them all."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._conn is None:
                stop.wait(remaining)
                return False
            try:
                slice_ = min(remaining, STOP_CHECK_SECONDS)
                if list(self._conn.notifies(timeout=slice_, stop_after=1)):
                    list(self._conn.notifies(timeout=0))
                    return True
            except psycopg.Error as exc:  # the connection went; the next listen() renews it
                logger.warning(
                    "outbox relay stopped listening",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                )
                self.close()
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def purge(*, older_than: timedelta | None = None) -> int:
    """Delete sent outbox rows past the retention period (they only serve debugging)."""
    age = older_than if older_than is not None else timedelta(days=settings.EVENTS_RETENTION_DAYS)
    cutoff = timezone.now() - age
    return delete_in_batches(OutboxEvent.objects.filter(sent_at__lt=cutoff), order_by="sent_at")

"""Publishing through a transactional outbox (DESIGN.md §4).

    with transaction.atomic():
        order = Order.objects.create(...)
        publish(Subject.ORDER_CREATED, {...})   # an outbox row, in this transaction

After commit the row is sent at once (publisher confirms) and marked sent. If that
fails — broker down, process killed — the row stays unsent and `relay_pending`, run by
the service's worker, sends it later with back-off. A rolled-back transaction takes its
outbox row with it, so nothing is ever published for a change that did not happen.
Row locks (SELECT ... FOR UPDATE SKIP LOCKED) keep the after-commit send and any number
of relays from sending one row twice in normal operation; a crash between the broker's
confirm and the commit that marks the row sent can repeat it (at least once, by design).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from shared_lib.correlation import current_correlation_id
from shared_lib.events import broker
from shared_lib.events.contracts import Subject, validate_data
from shared_lib.models import OutboxEvent, delete_in_batches

logger = logging.getLogger("shared_lib.events")

# The relay leaves young rows to the after-commit send of the request that wrote them,
# so the two do not race for every row; older unsent rows are the relay's.
RELAY_GRACE = timedelta(seconds=5)
RELAY_BATCH = 200
MAX_BACKOFF_SECONDS = 60


class OutsideTransaction(RuntimeError):
    """publish() was called outside transaction.atomic()."""


def publish(subject: Subject | str, data: Any) -> uuid.UUID:
    """Record an event in the current transaction; it is sent after the commit."""
    if not transaction.get_connection().in_atomic_block:
        raise OutsideTransaction(
            "publish() must run inside transaction.atomic(), with the change it announces"
        )
    payload = validate_data(subject, data).model_dump(mode="json")  # ContractError if bad
    subject = Subject(subject)
    event = OutboxEvent.objects.create(
        subject=subject,
        data=payload,
        correlation_id=current_correlation_id(),
    )
    transaction.on_commit(lambda: send_now([event.id]))
    return event.id


def _send_row(pooled: Any, row: OutboxEvent) -> None:
    broker.publish_event(
        pooled,
        event_id=str(row.id),
        subject=Subject(row.subject),
        occurred_at=row.occurred_at,
        data=row.data,
        correlation_id=row.correlation_id,
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
                row.sent_at = timezone.now()
                sent.append(row)
            failed_row = None
    except Exception as exc:  # broker down, connection lost, nack: the row stays unsent
        failure = exc
    if sent:
        # One UPDATE for the batch (bulk_update builds a CASE per row, costly per request).
        OutboxEvent.objects.filter(id__in=[row.id for row in sent]).update(sent_at=timezone.now())
    if failed_row is not None and failure is not None:
        failed_row.attempts += 1
        delay = min(MAX_BACKOFF_SECONDS, 2 ** min(failed_row.attempts, 6))
        failed_row.next_attempt_at = timezone.now() + timedelta(seconds=delay)
        failed_row.last_error = f"{type(failure).__name__}: {failure}"[:2000]
        failed_row.save(update_fields=["attempts", "next_attempt_at", "last_error"])
    return len(sent), failure


def send_now(ids: list[uuid.UUID]) -> None:
    """After commit: send these rows unless someone else holds or already sent them."""
    try:
        with transaction.atomic():
            rows = list(
                OutboxEvent.objects.select_for_update(skip_locked=True)
                .filter(id__in=ids, sent_at__isnull=True)
                .order_by("created_at")
            )
            _, failure = _send_locked(rows)
    except Exception as exc:  # never fail the request that already committed
        failure = exc
    if failure is not None:
        logger.warning(
            "event left for the relay",
            extra={
                "event_ids": [str(i) for i in ids],
                "error": f"{type(failure).__name__}: {failure}",
            },
        )


def relay_pending(*, batch: int = RELAY_BATCH, grace: timedelta = RELAY_GRACE) -> tuple[int, bool]:
    """Send due unsent rows, oldest first: (how many were sent, whether the broker failed)."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            OutboxEvent.objects.select_for_update(skip_locked=True)
            .filter(sent_at__isnull=True, next_attempt_at__lte=now, created_at__lte=now - grace)
            .order_by("created_at")[:batch]
        )
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


def purge(*, older_than: timedelta | None = None) -> int:
    """Delete sent outbox rows past the retention period (they only serve debugging)."""
    age = older_than if older_than is not None else timedelta(days=settings.EVENTS_RETENTION_DAYS)
    cutoff = timezone.now() - age
    return delete_in_batches(OutboxEvent.objects.filter(sent_at__lt=cutoff), order_by="sent_at")

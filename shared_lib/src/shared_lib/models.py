"""The tables shared_lib installs in every service's own database (no data of its own).

OutboxEvent: events written with the state change that caused them, sent after commit.
InboxMessage: which messages a consumer has applied, so a redelivery changes nothing.
AggregateVersion: the last version of another service's aggregate a consumer applied,
so events about one aggregate take effect in version order.
StaffAction: what a person did from an admin, through a service function (shared_lib.staff).
OutgoingEmail: an email to send, written with the change that caused it (shared_lib.mail).

    delete_in_batches(InboxMessage.objects.filter(processed_at__lt=cutoff), order_by="processed_at")
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import models
from django.db.models import Q, QuerySet
from django.utils import timezone

# A delivery table (OutboxEvent, OutgoingEmail) holds rows a background sender sends at
# least once: unsent while sent_at is null, due at next_attempt_at, tried `attempts` times.


def delivery_indexes(prefix: str) -> list[models.Index]:
    """A delivery table's indexes: the sender's query (unsent rows due now, oldest first;
    partial, so it stays as small as the backlog however many sent rows the table keeps)
    and the purge of rows sent long ago."""
    return [
        models.Index(
            fields=["next_attempt_at", "created_at"],
            condition=Q(sent_at__isnull=True),
            name=f"{prefix}_pending_idx",
        ),
        models.Index(fields=["sent_at"], name=f"{prefix}_sent_idx"),
    ]


def backoff(attempts: int, *, first: timedelta, most: timedelta) -> timedelta:
    """The wait after the `attempts`-th failed try: `first`, doubling, at most `most`."""
    # The exponent is bounded: timedelta overflows near 2**42 seconds, which a row
    # failing for days would otherwise reach.
    return min(first * 2 ** min(max(attempts - 1, 0), 32), most)


def failure_text(error: Exception | str) -> str:
    """What a row's last_error keeps of a failure (or of the text given for it): NUL,
    which a PostgreSQL text cannot hold and a remote server may send, written out."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text.replace("\x00", "\\x00")[:2000]


def retry_later(row: models.Model, error: Exception | str, delay: timedelta) -> None:
    """Record `row`'s failed try (its attempts already counted), as `error` or the text
    given for it, and when to try again."""
    row.next_attempt_at = timezone.now() + delay
    row.last_error = failure_text(error)
    row.save(update_fields=["attempts", "next_attempt_at", "last_error"])


class OutboxEvent(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)  # = message_id
    subject = models.CharField(max_length=64, db_index=True)
    data = models.JSONField()
    occurred_at = models.DateTimeField(default=timezone.now)
    correlation_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    # The W3C trace context of the write (shared_lib.tracing), "" when untraced. A database
    # default too, so that a process still running the previous release can insert.
    traceparent = models.CharField(max_length=55, blank=True, default="", db_default="")
    tracestate = models.CharField(max_length=512, blank=True, default="", db_default="")

    class Meta:
        ordering = ["created_at"]
        indexes = delivery_indexes("outbox")

    def __str__(self) -> str:
        return f"{self.subject} {self.id}"


class InboxMessage(models.Model):
    message_id = models.UUIDField()
    consumer = models.CharField(max_length=128)  # the queue: <service>.<subject>
    subject = models.CharField(max_length=64)
    correlation_id = models.CharField(max_length=64, blank=True)
    processed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-processed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["message_id", "consumer"], name="inbox_once_per_consumer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.consumer} {self.message_id}"


class AggregateVersion(models.Model):
    aggregate = models.CharField(max_length=64)  # e.g. "order"
    aggregate_id = models.UUIDField()
    version = models.IntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate", "aggregate_id"], name="aggregate_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.aggregate} {self.aggregate_id} v{self.version}"


# Small enough that one DELETE holds its row locks (and bloats the WAL) only briefly while
# the service keeps writing; large enough that a week of backlog clears in minutes.
PURGE_BATCH = 1000


def delete_in_batches(rows: QuerySet, *, order_by: str, batch: int = PURGE_BATCH) -> int:
    """Delete `rows` oldest first in bounded DELETEs (each its own statement, walking the
    index on `order_by`); returns how many went."""
    total = 0
    while True:
        ids = list(rows.order_by(order_by).values_list("pk", flat=True)[:batch])
        if not ids:
            return total
        deleted, _ = rows.model.objects.filter(pk__in=ids).delete()
        total += deleted
        if len(ids) < batch:
            return total


class StaffAction(models.Model):
    """One thing a staff member did from an admin: who, when, to what. Written by the
    service function that made the change, in its transaction (shared_lib.staff)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    # The admin user's username (for single sign-on staff, their auth_svc user id) and what
    # the admin showed of them then (an email can change later).
    actor_id = models.CharField(max_length=150)
    actor_name = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)  # e.g. "order.cancel"
    target = models.CharField(max_length=128)  # the row it acted on: its id
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["target", "-at"], name="staff_action_target_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.actor_name or self.actor_id}"


class OutgoingEmail(models.Model):
    """An email written in the transaction of the change it tells of, sent after commit by
    the worker (shared_lib.mail); `key` makes one row per fact, however often it is told."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    key = models.CharField(max_length=128, unique=True)  # e.g. "receipt:<order id>"
    to = models.EmailField()
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    # When the recipient's server refused the address for good: never tried again.
    given_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [
            # The sender's claim and the backlog metrics: rows still to send, oldest due
            # first. Given-up rows are left out, so however many pile up within the
            # retention (sign-ups with dead addresses asking for resets) neither reads them
            # (the backlog's query rules out reading the whole table: metrics.py says why).
            models.Index(
                fields=["next_attempt_at", "created_at"],
                condition=Q(sent_at__isnull=True, given_up_at__isnull=True),
                name="email_due_idx",
            ),
            # The claim of the release before given_up_at (sent_at IS NULL alone): kept
            # while that release may still run beside this one or be rolled back to. The
            # release after the one that brings shared_lib 0005 drops it.
            models.Index(
                fields=["next_attempt_at", "created_at"],
                condition=Q(sent_at__isnull=True),
                name="email_pending_idx",
            ),
            # The purge of rows sent long ago. Partial, so that the planner cannot take it
            # for the unsent rows: it would read the given-up ones through it.
            models.Index(
                fields=["sent_at"], condition=Q(sent_at__isnull=False), name="email_sent_at_idx"
            ),
            # The given-up rows' count on the metrics, and their purge.
            models.Index(
                fields=["given_up_at"],
                condition=Q(given_up_at__isnull=False, sent_at__isnull=True),
                name="email_given_up_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} to {self.to}"

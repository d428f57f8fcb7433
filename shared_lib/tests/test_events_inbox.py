"""The inbox is purged after EVENTS_RETENTION_DAYS, in bounded DELETEs, by the worker."""

import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from shared_lib.events.consumer import purge_inbox
from shared_lib.models import PURGE_BATCH, InboxMessage
from shared_lib.testing.waiting import wait_for


def _rows(count: int, *, age: timedelta) -> list[uuid.UUID]:
    when = timezone.now() - age
    rows = [
        InboxMessage(
            message_id=uuid.uuid4(),
            consumer="demo.ticket.created",
            subject="ticket.created",
            processed_at=when,
        )
        for _ in range(count)
    ]
    InboxMessage.objects.bulk_create(rows)
    return [row.message_id for row in rows]


@pytest.mark.django_db
def test_purge_deletes_rows_past_retention_in_bounded_batches_and_keeps_recent_ones():
    assert settings.EVENTS_RETENTION_DAYS == 7
    old = _rows(2 * PURGE_BATCH + 5, age=timedelta(days=8))
    recent = _rows(3, age=timedelta(days=6))

    with CaptureQueriesContext(connection) as queries:
        deleted = purge_inbox()

    assert deleted == len(old)
    assert sorted(InboxMessage.objects.values_list("message_id", flat=True)) == sorted(recent)
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    # Three bounded statements (1000, 1000, 5), never one DELETE of the whole backlog.
    assert len(deletes) == 3
    assert [sql.count(",") + 1 for sql in deletes] == [
        PURGE_BATCH,
        PURGE_BATCH,
        5,
    ]


@pytest.mark.django_db
def test_purge_with_nothing_old_deletes_nothing():
    recent = _rows(2, age=timedelta(hours=1))

    assert purge_inbox() == 0
    assert purge_inbox(older_than=timedelta(hours=2)) == 0
    assert sorted(InboxMessage.objects.values_list("message_id", flat=True)) == sorted(recent)

    assert purge_inbox(older_than=timedelta(minutes=30)) == 2
    assert not InboxMessage.objects.exists()


@pytest.mark.usefixtures("demo_queues")
def test_the_worker_purges_old_inbox_rows(event_worker):
    old = _rows(3, age=timedelta(days=30))
    recent = _rows(2, age=timedelta(days=1))

    worker = event_worker()

    wait_for(lambda: not InboxMessage.objects.filter(message_id__in=old).exists())
    assert sorted(InboxMessage.objects.values_list("message_id", flat=True)) == sorted(recent)
    wait_for(lambda: "events purged" in worker.log() and "inbox=3" in worker.log())

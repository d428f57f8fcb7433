import uuid

import pytest
from django.db import transaction

from shared_lib.events import Subject, publish
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.waiting import wait_for
from tests.demo.models import Effect, TicketReplica


def ticket(version=0, title="Front row", **extra):
    return {
        "id": TICKET,
        "version": version,
        "title": title,
        "price": "20.50",
        "userId": str(uuid.uuid4()),
        **extra,
    }


TICKET = str(uuid.uuid4())


@pytest.mark.usefixtures("demo_queues")  # no message left over from an earlier test
def test_published_event_reaches_the_worker_and_is_applied(event_worker):
    event_worker()

    with transaction.atomic():
        event_id = publish(Subject.TICKET_CREATED, ticket())

    replica = wait_for(lambda: TicketReplica.objects.filter(id=TICKET).first())
    assert replica.title == "Front row"
    assert OutboxEvent.objects.get(id=event_id).sent_at is not None
    wait_for(lambda: InboxMessage.objects.filter(message_id=event_id).exists())
    assert Effect.objects.count() == 1

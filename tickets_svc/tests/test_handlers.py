import logging
import uuid

import pytest
from django.conf import settings

from shared_lib.events.consumer import Outcome
from shared_lib.events.contracts import consumed_by
from shared_lib.events.registry import NotYet, check_handlers, discover_handlers
from shared_lib.models import AggregateVersion, InboxMessage, OutboxEvent
from shared_lib.testing.events import deliver
from tests.factories import make_ticket, order_cancelled, order_created, published
from tickets import handlers
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def lock_state(ticket):
    row = Ticket.objects.get(id=ticket.id)
    return row.order_id, row.version


def updates():
    """(version, orderId) of every ticket.updated written, oldest first."""
    return [(data["version"], data["orderId"]) for subject, data in published()]


def test_order_created_locks_the_ticket():
    ticket = make_ticket()
    order_id = uuid.uuid4()

    outcome = deliver(order_created(ticket_id=ticket.id, order_id=order_id))

    assert outcome is Outcome.APPLIED
    assert lock_state(ticket) == (order_id, 1)
    assert published() == [
        (
            "ticket.updated",
            {
                "id": str(ticket.id),
                "version": 1,
                "title": "Concert",
                "price": "20.00",
                "userId": str(ticket.user_id),
                "orderId": str(order_id),
                "onSale": True,
            },
        )
    ]
    assert AggregateVersion.objects.get(aggregate="order", aggregate_id=order_id).version == 0


def test_the_same_order_created_delivered_twice_applies_once():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    event = order_created(ticket_id=ticket.id, order_id=order_id)

    first = deliver(event)
    second = deliver(event)

    assert (first, second) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert lock_state(ticket) == (order_id, 1)
    assert updates() == [(1, str(order_id))]
    assert InboxMessage.objects.filter(message_id=event.id).count() == 1


def test_the_order_created_handler_called_twice_changes_nothing_the_second_time():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    event = order_created(ticket_id=ticket.id, order_id=order_id)

    handlers.on_order_created(event)
    handlers.on_order_created(event)

    assert lock_state(ticket) == (order_id, 1)
    assert updates() == [(1, str(order_id))]


def test_the_order_cancelled_handler_called_twice_releases_once():
    order_id = uuid.uuid4()
    ticket = make_ticket()
    handlers.on_order_created(order_created(ticket_id=ticket.id, order_id=order_id))
    cancelled = order_cancelled(ticket_id=ticket.id, order_id=order_id)

    handlers.on_order_cancelled(cancelled)
    handlers.on_order_cancelled(cancelled)

    assert lock_state(ticket) == (None, 2)
    assert updates() == [(1, str(order_id)), (2, None)]


def test_order_cancelled_releases_the_ticket():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=order_id))

    outcome = deliver(order_cancelled(ticket_id=ticket.id, order_id=order_id))

    assert outcome is Outcome.APPLIED
    assert lock_state(ticket) == (None, 2)
    assert updates() == [(1, str(order_id)), (2, None)]


def test_order_cancelled_before_its_order_created_waits_for_it():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    created = order_created(ticket_id=ticket.id, order_id=order_id)
    cancelled = order_cancelled(ticket_id=ticket.id, order_id=order_id)

    with pytest.raises(NotYet):
        deliver(cancelled)

    # Nothing of the early delivery stays: no lock change, no inbox row, no claimed version.
    assert lock_state(ticket) == (None, 0)
    assert OutboxEvent.objects.count() == 0
    assert InboxMessage.objects.count() == 0
    assert not AggregateVersion.objects.filter(aggregate_id=order_id).exists()

    assert deliver(created) is Outcome.APPLIED
    assert lock_state(ticket) == (order_id, 1)
    assert deliver(cancelled) is Outcome.APPLIED  # the retry of the same message

    assert lock_state(ticket) == (None, 2)
    assert updates() == [(1, str(order_id)), (2, None)]


def test_a_redelivered_cancel_of_an_old_order_does_not_release_a_newer_order():
    ticket = make_ticket()
    old, new = uuid.uuid4(), uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=old))
    deliver(order_cancelled(ticket_id=ticket.id, order_id=old))
    deliver(order_created(ticket_id=ticket.id, order_id=new))

    # The old order's cancel again, as a new message (e.g. republished): already applied.
    outcome = deliver(order_cancelled(ticket_id=ticket.id, order_id=old))

    assert outcome is Outcome.APPLIED
    assert lock_state(ticket) == (new, 3)
    assert updates() == [(1, str(old)), (2, None), (3, str(new))]


def test_an_order_created_while_another_order_holds_the_ticket_waits(caplog):
    ticket = make_ticket()
    holder, other = uuid.uuid4(), uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=holder))

    with caplog.at_level(logging.WARNING, logger="tickets.services"), pytest.raises(NotYet):
        deliver(order_created(ticket_id=ticket.id, order_id=other))
    # Its cancel cannot overtake it either: v1 waits for v0.
    with pytest.raises(NotYet):
        deliver(order_cancelled(ticket_id=ticket.id, order_id=other))

    assert lock_state(ticket) == (holder, 1)
    assert updates() == [(1, str(holder))]
    assert [r.getMessage() for r in caplog.records if r.name == "tickets.services"] == [
        "ticket still held by another order; retrying later"
    ]


def test_a_new_order_created_that_overtakes_the_old_orders_cancel_still_locks_the_ticket():
    # orders_svc publishes old.cancelled before new.created, but they travel on different
    # queues (and the cancel may be waiting in a retry queue), so tickets_svc can see the
    # new order's create first.
    ticket = make_ticket()
    old, new = uuid.uuid4(), uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=old))
    new_created = order_created(ticket_id=ticket.id, order_id=new)
    with pytest.raises(NotYet):  # it waits for the old order's cancel
        deliver(new_created)

    deliver(order_cancelled(ticket_id=ticket.id, order_id=old))
    deliver(new_created)  # the retry (or a redelivery) of the new order's create

    assert lock_state(ticket)[0] == new


def test_order_created_for_an_unknown_ticket_changes_nothing(caplog):
    ticket = make_ticket()
    unknown = uuid.uuid4()

    with caplog.at_level(logging.ERROR, logger="tickets.services"):
        outcome = deliver(order_created(ticket_id=unknown, order_id=uuid.uuid4()))

    assert outcome is Outcome.APPLIED
    assert lock_state(ticket) == (None, 0)
    assert Ticket.objects.count() == 1
    assert OutboxEvent.objects.count() == 0
    assert [r.getMessage() for r in caplog.records if r.name == "tickets.services"] == [
        "order event names an unknown ticket"
    ]


def test_the_handlers_are_the_subjects_the_contracts_declare_for_this_service():
    check_handlers(settings.EVENTS_SERVICE)  # the worker's start-up check: no mismatch

    assert sorted(discover_handlers()) == sorted(consumed_by("tickets"))

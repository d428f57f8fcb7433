"""Events through the real inbox path: deliver() runs the handler as the consumer does."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from orders.models import Order, TicketReplica
from shared_lib.events.consumer import Outcome
from shared_lib.events.contracts import consumed_by
from shared_lib.events.registry import NotYet, check_handlers, discover_handlers
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.events import deliver, deliver_batch, make_event
from shared_lib.testing.inbox import assert_consumed_without_reply
from tests.factories import order_row, ticket_data, ticket_replica

pytestmark = pytest.mark.django_db


def replica(ticket_id):
    row = TicketReplica.objects.get(id=ticket_id)
    return {"title": row.title, "price": row.price, "userId": str(row.user_id), "v": row.version}


def state(order):
    order.refresh_from_db()
    return order.status, order.version


def events():
    return [(event.subject, event.data) for event in OutboxEvent.objects.order_by("created_at")]


def expiration(order_id, **fields):
    return make_event("expiration.complete", {"orderId": str(order_id)}, **fields)


def lapsed_order(**fields):
    """An unpaid order whose window has ended by this service's clock."""
    return order_row(expires_in=timedelta(seconds=-1), **fields)


def payment(order_id, **fields):
    data = {"id": str(uuid.uuid4()), "orderId": str(order_id), "stripeId": "ch_test_1"}
    return make_event("payment.created", data, **fields)


# --- ticket.created / ticket.updated -------------------------------------------------


def test_ticket_created_inserts_the_replica():
    seller = uuid.uuid4()
    data = ticket_data(title="Jazz night", price="15.50", user_id=seller)
    event = make_event("ticket.created", data)

    assert deliver(event) is Outcome.APPLIED

    assert replica(data["id"]) == {
        "title": "Jazz night",
        "price": Decimal("15.50"),
        "userId": str(seller),
        "v": 0,
    }
    assert_consumed_without_reply(event, "orders.ticket.created")


def test_ticket_updated_applies_the_next_version():
    ticket = ticket_replica(title="Before", price="10.00")
    seller = str(ticket.user_id)
    data = ticket_data(ticket_id=ticket.id, version=1, title="After", price="11.25", user_id=seller)

    assert deliver(make_event("ticket.updated", data)) is Outcome.APPLIED

    assert replica(ticket.id) == {
        "title": "After",
        "price": Decimal("11.25"),
        "userId": seller,
        "v": 1,
    }


def test_ticket_updated_with_an_order_id_still_applies():
    ticket = ticket_replica()
    data = ticket_data(
        ticket_id=ticket.id,
        version=1,
        title="Reserved now",
        user_id=ticket.user_id,
        orderId=str(uuid.uuid4()),
    )

    assert deliver(make_event("ticket.updated", data)) is Outcome.APPLIED

    assert replica(ticket.id)["v"] == 1
    assert replica(ticket.id)["title"] == "Reserved now"
    assert Order.objects.count() == 0  # the replica is not a reservation


def test_the_same_event_twice_applies_once():
    ticket = ticket_replica(title="v0")
    data = ticket_data(ticket_id=ticket.id, version=1, title="v1", user_id=ticket.user_id)
    event = make_event("ticket.updated", data)

    first = deliver(event)
    second = deliver(event)

    assert (first, second) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert replica(ticket.id)["v"] == 1
    assert InboxMessage.objects.filter(message_id=event.id).count() == 1


def test_ticket_created_redelivered_under_a_new_message_id_changes_nothing():
    ticket = ticket_replica(title="Original", price="10.00")
    again = ticket_data(ticket_id=ticket.id, version=0, title="Other", price="99.00")

    assert deliver(make_event("ticket.created", again)) is Outcome.APPLIED

    assert replica(ticket.id) == {
        "title": "Original",
        "price": Decimal("10.00"),
        "userId": str(ticket.user_id),
        "v": 0,
    }


def test_versions_out_of_order_end_at_the_latest():
    seller = uuid.uuid4()
    ticket = ticket_replica(title="v0", price="10.00", user_id=seller)

    def updated(version, price):
        data = ticket_data(
            ticket_id=ticket.id, version=version, title=f"v{version}", price=price, user_id=seller
        )
        return make_event("ticket.updated", data)

    v3 = updated(3, "13.00")
    with pytest.raises(NotYet):
        deliver(v3)
    # Not applied, and not remembered either: the retry must not be taken for a duplicate.
    assert replica(ticket.id)["v"] == 0
    assert not InboxMessage.objects.filter(message_id=v3.id).exists()

    assert deliver(updated(1, "11.00")) is Outcome.APPLIED
    assert deliver(updated(2, "12.00")) is Outcome.APPLIED
    assert deliver(v3) is Outcome.APPLIED

    assert replica(ticket.id) == {
        "title": "v3",
        "price": Decimal("13.00"),
        "userId": str(seller),
        "v": 3,
    }


def test_ticket_updated_before_ticket_created_waits():
    data = ticket_data(version=1)

    with pytest.raises(NotYet):
        deliver(make_event("ticket.updated", data))

    assert TicketReplica.objects.count() == 0
    assert InboxMessage.objects.count() == 0


def test_an_older_update_after_a_newer_one_is_skipped():
    ticket = ticket_replica(title="v0", price="10.00")
    seller = ticket.user_id
    for version in (1, 2):
        data = ticket_data(
            ticket_id=ticket.id, version=version, title=f"v{version}", price="12.00", user_id=seller
        )
        deliver(make_event("ticket.updated", data))
    late = ticket_data(
        ticket_id=ticket.id, version=1, title="late v1", price="11.00", user_id=seller
    )

    deliver(make_event("ticket.updated", late))

    assert replica(ticket.id) == {
        "title": "v2",
        "price": Decimal("12.00"),
        "userId": str(seller),
        "v": 2,
    }


def test_applying_an_update_moves_the_replicas_updated_at():
    ticket = ticket_replica()
    before = ticket.updated_at
    data = ticket_data(ticket_id=ticket.id, version=1, title="Later", user_id=ticket.user_id)

    deliver(make_event("ticket.updated", data))

    ticket.refresh_from_db()
    assert ticket.updated_at > before


# --- expiration.complete -------------------------------------------------------------


def test_expiration_complete_cancels_a_created_order():
    order = lapsed_order()

    assert deliver(expiration(order.id)) is Outcome.APPLIED

    assert state(order) == ("cancelled", 1)
    assert events() == [
        (
            "order.cancelled",
            {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}},
        )
    ]


def test_expiration_complete_delivered_twice_cancels_once():
    order = lapsed_order()
    event = expiration(order.id)

    first = deliver(event)
    second = deliver(event)
    third = deliver(expiration(order.id))  # a second expiry message, another id

    assert (first, second, third) == (Outcome.APPLIED, Outcome.DUPLICATE, Outcome.APPLIED)
    assert state(order) == ("cancelled", 1)
    assert [subject for subject, _ in events()] == ["order.cancelled"]


def test_an_expiry_delivered_after_a_payment_in_its_batch_never_overtakes_it():
    # The buyer paid in time; the expiry came next. One batch handles a burst of expiries
    # together, but never brings one forward past an event delivered before it.
    paid_in_time, unpaid = lapsed_order(), lapsed_order()

    results = deliver_batch(
        [expiration(unpaid.id), payment(paid_in_time.id), expiration(paid_in_time.id)]
    )

    assert results == [Outcome.APPLIED] * 3
    assert state(paid_in_time) == ("complete", 1)
    assert state(unpaid) == ("cancelled", 1)
    assert [subject for subject, _ in events()] == ["order.cancelled", "order.completed"]


def test_expiration_complete_before_expires_at_waits_for_the_window_to_end():
    # A clock ahead of ours announced the expiry early: the buyer keeps the promised window.
    order = order_row(expires_in=timedelta(minutes=5))
    event = expiration(order.id)

    with pytest.raises(NotYet):
        deliver(event)

    assert state(order) == ("created", 0)
    assert events() == []
    assert not InboxMessage.objects.filter(message_id=event.id).exists()  # it comes back
    # once the window has ended by this service's clock, the same message applies
    Order.objects.filter(id=order.id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert deliver(event) is Outcome.APPLIED
    assert state(order) == ("cancelled", 1)


def test_expiration_complete_for_an_unknown_order_is_consumed_without_effect():
    order = lapsed_order()

    assert deliver(expiration(uuid.uuid4())) is Outcome.APPLIED

    assert state(order) == ("created", 0)
    assert events() == []


# --- payment.created -----------------------------------------------------------------


def test_payment_created_completes_a_created_order():
    order = order_row()

    assert deliver(payment(order.id)) is Outcome.APPLIED

    assert state(order) == ("complete", 1)
    assert events() == [("order.completed", {"id": str(order.id), "version": 1})]


def test_payment_created_twice_completes_once():
    order = order_row()
    event = payment(order.id)

    first = deliver(event)
    second = deliver(event)
    third = deliver(payment(order.id))  # another payment message for the same order

    assert (first, second, third) == (Outcome.APPLIED, Outcome.DUPLICATE, Outcome.APPLIED)
    assert state(order) == ("complete", 1)
    assert [subject for subject, _ in events()] == ["order.completed"]


@pytest.mark.parametrize(
    ("status", "event_for"),
    [
        pytest.param("complete", expiration, id="expiration_complete_for_a_complete_order"),
        pytest.param("cancelled", payment, id="payment_created_for_a_cancelled_order"),
    ],
)
def test_an_event_for_a_settled_order_leaves_it_alone(status, event_for):
    order = order_row(status=status, version=1)

    assert deliver(event_for(order.id)) is Outcome.APPLIED

    assert state(order) == (status, 1)
    assert events() == []


def test_expiry_after_payment_keeps_the_order_complete():
    order = order_row()

    deliver(payment(order.id))
    deliver(expiration(order.id))

    assert state(order) == ("complete", 1)
    assert [subject for subject, _ in events()] == ["order.completed"]


def test_the_handlers_are_the_subjects_the_contracts_declare_for_this_service():
    check_handlers(settings.EVENTS_SERVICE)  # the worker's start-up check: no mismatch

    assert sorted(discover_handlers()) == sorted(consumed_by("orders"))

import logging
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orders import services
from orders.models import Order
from shared_lib.errors import BadRequest, NotFound
from shared_lib.events import NotYet
from shared_lib.models import OutboxEvent
from tests.factories import order_row, ticket_replica

pytestmark = pytest.mark.django_db

CREATED, CANCELLED, COMPLETE = Order.Status.CREATED, Order.Status.CANCELLED, Order.Status.COMPLETE


def state(order):
    order.refresh_from_db()
    return order.status, order.version


def events():
    return [(event.subject, event.data) for event in OutboxEvent.objects.order_by("created_at")]


def records(caplog, message):
    return [r for r in caplog.records if r.name == "orders.services" and r.getMessage() == message]


# --- the state machine ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target", "allowed"),
    [
        (CREATED, CREATED, False),
        (CREATED, CANCELLED, True),
        (CREATED, COMPLETE, True),
        (CANCELLED, CREATED, False),
        (CANCELLED, CANCELLED, False),
        (CANCELLED, COMPLETE, False),
        (COMPLETE, CREATED, False),
        (COMPLETE, CANCELLED, False),
        (COMPLETE, COMPLETE, False),
    ],
)
def test_order_can_become(current, target, allowed):
    assert Order(status=current).can_become(target) is allowed


def test_order_statuses_are_exactly_the_designed_ones():
    assert sorted(Order.Status.values) == ["cancelled", "complete", "created"]
    assert set(Order.TRANSITIONS) == set(Order.Status.values)
    assert set(Order.ACTIVE) == {"created", "complete"}


# --- order_create --------------------------------------------------------------------


def test_order_create_returns_the_order_with_its_event():
    ticket = ticket_replica()
    buyer = uuid.uuid4()

    order = services.order_create(user_id=buyer, ticket_id=str(ticket.id))

    assert (order.user_id, order.ticket_id, order.status, order.version) == (
        buyer,
        ticket.id,
        "created",
        0,
    )
    assert [subject for subject, _ in events()] == ["order.created"]


def test_order_create_ends_the_payment_window_when_told():
    ticket = ticket_replica()
    due = timezone.now() + timedelta(seconds=3)

    order = services.order_create(user_id=uuid.uuid4(), ticket_id=str(ticket.id), expires_at=due)

    order.refresh_from_db()
    assert order.expires_at == due
    [(subject, data)] = events()
    assert (subject, data["expiresAt"]) == ("order.created", due.isoformat().replace("+00:00", "Z"))


def test_order_create_refusals_write_nothing():
    ticket = ticket_replica()
    order_row(ticket=ticket)

    with pytest.raises(NotFound):
        services.order_create(user_id=uuid.uuid4(), ticket_id=str(uuid.uuid4()))
    with pytest.raises(BadRequest, match=services.OWN_TICKET):
        services.order_create(user_id=ticket.user_id, ticket_id=str(ticket.id))
    with pytest.raises(BadRequest, match=services.TICKET_RESERVED):
        services.order_create(user_id=uuid.uuid4(), ticket_id=str(ticket.id))

    assert Order.objects.count() == 1
    assert events() == []


# --- order_cancel --------------------------------------------------------------------


def test_order_cancel_created():
    order = order_row()

    services.order_cancel(order_id=order.id, user_id=order.user_id)

    assert state(order) == (CANCELLED, 1)
    assert events() == [
        (
            "order.cancelled",
            {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}},
        )
    ]


def test_order_cancel_by_someone_else_is_not_found():
    order = order_row()

    with pytest.raises(NotFound):
        services.order_cancel(order_id=order.id, user_id=uuid.uuid4())

    assert state(order) == (CREATED, 0)
    assert events() == []


# --- order_expire --------------------------------------------------------------------


def test_order_expire_cancels_a_created_order():
    order = order_row(expires_in=timedelta(seconds=-1))

    result = services.order_expire(order_id=order.id)

    assert result.id == order.id
    assert state(order) == (CANCELLED, 1)
    assert events() == [
        (
            "order.cancelled",
            {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}},
        )
    ]


def test_order_expire_twice_changes_nothing_the_second_time():
    order = order_row(expires_in=timedelta(seconds=-1))
    services.order_expire(order_id=order.id)

    result = services.order_expire(order_id=order.id)

    assert result.status == CANCELLED
    assert state(order) == (CANCELLED, 1)
    assert len(events()) == 1


def test_order_expire_before_expires_at_by_this_clock_waits():
    order = order_row(expires_in=timedelta(seconds=30))

    with pytest.raises(NotYet):
        services.order_expire(order_id=order.id)

    assert state(order) == (CREATED, 0)
    assert events() == []


def test_order_expire_never_cancels_a_complete_order(caplog):
    order = order_row(status=COMPLETE, version=1)
    caplog.set_level(logging.INFO, logger="orders.services")

    result = services.order_expire(order_id=order.id)

    assert result.status == COMPLETE
    assert state(order) == (COMPLETE, 1)
    assert events() == []
    [record] = records(caplog, "expiry ignored")
    assert (record.order_id, record.status) == (str(order.id), COMPLETE)


def test_order_expire_of_an_unknown_order_logs_an_error(caplog):
    order = order_row()
    unknown = uuid.uuid4()

    assert services.order_expire(order_id=unknown) is None

    [record] = records(caplog, "expiry for an unknown order")
    assert record.levelno == logging.ERROR
    assert record.order_id == str(unknown)
    assert state(order) == (CREATED, 0)
    assert events() == []


def test_order_expire_all_cancels_a_burst_in_three_statements(django_assert_num_queries):
    due = [order_row(expires_in=timedelta(seconds=-1)) for _ in range(5)]
    complete = order_row(status=COMPLETE, version=1)
    ids = [order.id for order in due]
    correlation_ids = [f"expiry-{i}" for i in range(5)]

    # The savepoint pair of its atomic block, then: lock, update, outbox rows.
    with django_assert_num_queries(5):
        result = services.order_expire_all(
            order_ids=[*ids, complete.id, ids[0]],  # the repeat changes nothing
            correlation_ids=[*correlation_ids, "paid", "again"],
        )

    assert [order.id for order in result] == [*ids, complete.id, ids[0]]
    assert [state(order) for order in due] == [(CANCELLED, 1)] * 5
    assert state(complete) == (COMPLETE, 1)
    rows = OutboxEvent.objects.order_by("correlation_id")
    assert [(row.subject, row.data, row.correlation_id) for row in rows] == [
        (
            "order.cancelled",
            {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}},
            correlation_id,
        )
        for order, correlation_id in zip(due, correlation_ids, strict=True)
    ]


def test_order_expire_all_with_one_order_not_due_changes_none_of_them():
    due = order_row(expires_in=timedelta(seconds=-1))
    early = order_row(expires_in=timedelta(seconds=30))

    with pytest.raises(NotYet, match=f"order {early.id} expires at "):
        services.order_expire_all(order_ids=[due.id, early.id], correlation_ids=["a", "b"])

    assert (state(due), state(early)) == ((CREATED, 0), (CREATED, 0))
    assert events() == []


# --- order_complete ------------------------------------------------------------------


def test_order_complete_completes_a_created_order():
    order = order_row()

    result = services.order_complete(order_id=order.id)

    assert result.status == COMPLETE
    assert state(order) == (COMPLETE, 1)
    assert events() == [("order.completed", {"id": str(order.id), "version": 1})]


def test_order_complete_twice_changes_nothing_the_second_time():
    order = order_row()
    services.order_complete(order_id=order.id)

    result = services.order_complete(order_id=order.id)

    assert result.status == COMPLETE
    assert state(order) == (COMPLETE, 1)
    assert len(events()) == 1


def test_order_complete_leaves_a_cancelled_order_cancelled_with_a_warning(caplog):
    order = order_row(status=CANCELLED, version=1)

    result = services.order_complete(order_id=order.id)

    assert result.status == CANCELLED
    assert state(order) == (CANCELLED, 1)
    assert events() == []
    [record] = records(caplog, "payment ignored")
    assert record.levelno == logging.WARNING
    assert (record.order_id, record.status) == (str(order.id), CANCELLED)


def test_order_complete_of_an_unknown_order_logs_an_error(caplog):
    unknown = uuid.uuid4()

    assert services.order_complete(order_id=unknown) is None

    [record] = records(caplog, "payment for an unknown order")
    assert record.levelno == logging.ERROR
    assert record.order_id == str(unknown)
    assert events() == []


def test_every_change_moves_updated_at():
    order = order_row()
    before = order.updated_at

    services.order_complete(order_id=order.id)

    order.refresh_from_db()
    assert order.updated_at > before

import logging
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from shared_lib.errors import BadRequest, Conflict, Forbidden, InvalidInput, NotFound
from shared_lib.events.registry import NotYet
from shared_lib.models import OutboxEvent
from shared_lib.testing.threads import start_call
from shared_lib.testing.waiting import wait_for
from tests.factories import make_ticket, published
from tickets import services
from tickets.models import Ticket

SERVICES_LOGGER = "tickets.services"


def ticket_state(ticket_id):
    row = Ticket.objects.get(id=ticket_id)
    return row.title, row.price, row.version, row.order_id


def ticket_updated(ticket_id, *, version, user_id, order_id=None, title="Concert", price="20.00"):
    """A published ticket.updated, as published() lists it."""
    return (
        "ticket.updated",
        {
            "id": str(ticket_id),
            "version": version,
            "title": title,
            "price": price,
            "userId": str(user_id),
            "orderId": str(order_id) if order_id else None,
            "onSale": True,
        },
    )


def edit(*, ticket_id, user_id, title, price):
    """An edit as the API makes it: the ticket found for its editor, then updated."""
    ticket = services.ticket_for_update(ticket_id=ticket_id, user_id=user_id)
    return services.ticket_update(ticket=ticket, title=title, price=price)


# --- validate_ticket_input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "price", "expected"),
    [
        ("  Concert \n", "20.5", ("Concert", Decimal("20.50"))),
        ("Concert", 7, ("Concert", Decimal("7.00"))),
        ("Concert", "7", ("Concert", Decimal("7.00"))),
        ("Concert", Decimal("20.500"), ("Concert", Decimal("20.50"))),
        ("Concert", Decimal("2.05E+1"), ("Concert", Decimal("20.50"))),
        ("Concert", "0.50", ("Concert", Decimal("0.50"))),
        ("t" * 200, "999999.99", ("t" * 200, Decimal("999999.99"))),
        ("Ünïcödé 🎫", Decimal("1"), ("Ünïcödé 🎫", Decimal("1.00"))),
    ],
)
def test_validate_ticket_input_cleans_valid_input(title, price, expected):
    assert services.validate_ticket_input(title=title, price=price) == expected


@pytest.mark.parametrize(
    ("title", "price", "expected"),
    [
        ("Concert", None, [(services.PRICE_POSITIVE, "price")]),
        ("Concert", True, [(services.PRICE_POSITIVE, "price")]),
        ("Concert", 0, [(services.PRICE_POSITIVE, "price")]),
        ("Concert", Decimal("-0.01"), [(services.PRICE_POSITIVE, "price")]),
        ("Concert", Decimal("NaN"), [(services.PRICE_POSITIVE, "price")]),
        ("Concert", Decimal("Infinity"), [(services.PRICE_POSITIVE, "price")]),
        ("Concert", "1e3", [(services.PRICE_POSITIVE, "price")]),
        ("Concert", "abc", [(services.PRICE_POSITIVE, "price")]),
        ("Concert", "", [(services.PRICE_POSITIVE, "price")]),
        ("Concert", ["20"], [(services.PRICE_POSITIVE, "price")]),
        ("Concert", "20.555", [(services.PRICE_DECIMALS, "price")]),
        ("Concert", Decimal("20.999999999999999999"), [(services.PRICE_DECIMALS, "price")]),
        ("Concert", "1000000", [(services.PRICE_TOO_HIGH, "price")]),
        ("Concert", "0.01", [(services.PRICE_TOO_LOW, "price")]),
        ("Concert", Decimal("0.49"), [(services.PRICE_TOO_LOW, "price")]),
        ("Concert", Decimal("1E+6"), [(services.PRICE_TOO_HIGH, "price")]),
        ("", "20", [(services.TITLE_REQUIRED, "title")]),
        (" \t", "20", [(services.TITLE_REQUIRED, "title")]),
        (None, "20", [(services.TITLE_REQUIRED, "title")]),
        (42, "20", [(services.TITLE_REQUIRED, "title")]),
        ("t" * 201, "20", [(services.TITLE_TOO_LONG, "title")]),
        (
            "t" * 201,
            "20.555",
            [(services.TITLE_TOO_LONG, "title"), (services.PRICE_DECIMALS, "price")],
        ),
    ],
)
def test_validate_ticket_input_names_every_bad_field(title, price, expected):
    with pytest.raises(InvalidInput) as raised:
        services.validate_ticket_input(title=title, price=price)

    assert raised.value.errors == expected
    assert raised.value.status_code == 400


# --- ticket_create / ticket_update -----------------------------------------------------


@pytest.mark.django_db
def test_ticket_create_writes_the_ticket_and_its_event_together():
    user_id = uuid.uuid4()

    ticket = services.ticket_create(user_id=user_id, title=" Gig ", price="12.3")

    assert ticket_state(ticket.id) == ("Gig", Decimal("12.30"), 0, None)
    assert published() == [
        (
            "ticket.created",
            {
                "id": str(ticket.id),
                "version": 0,
                "title": "Gig",
                "price": "12.30",
                "userId": str(user_id),
            },
        )
    ]


@pytest.mark.django_db
def test_ticket_create_with_invalid_input_writes_nothing():
    with pytest.raises(InvalidInput):
        services.ticket_create(user_id=uuid.uuid4(), title="Gig", price="-1")

    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_an_edit_checks_existence_then_ownership_then_input_then_the_lock():
    owner = uuid.uuid4()
    free = make_ticket(user_id=owner)
    reserved = make_ticket(user_id=owner, order_id=uuid.uuid4(), version=1)

    with pytest.raises(NotFound):
        edit(ticket_id=uuid.uuid4(), user_id=owner, title="", price=None)
    with pytest.raises(Forbidden):
        edit(ticket_id=reserved.id, user_id=uuid.uuid4(), title="", price=None)
    with pytest.raises(InvalidInput):
        edit(ticket_id=reserved.id, user_id=owner, title="", price=None)
    with pytest.raises(BadRequest) as refused:
        edit(ticket_id=reserved.id, user_id=owner, title="New", price="1")

    assert refused.value.as_body() == {"errors": [{"message": services.TICKET_RESERVED}]}
    assert ticket_state(free.id) == ("Concert", Decimal("20.00"), 0, None)
    assert ticket_state(reserved.id) == ("Concert", Decimal("20.00"), 1, reserved.order_id)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_ticket_update_bumps_the_version_and_announces_the_edit():
    owner = uuid.uuid4()
    ticket = make_ticket(user_id=owner, version=4)

    updated = edit(ticket_id=ticket.id, user_id=owner, title="New", price=3)

    assert (updated.title, updated.price, updated.version) == ("New", Decimal("3.00"), 5)
    assert ticket_state(ticket.id) == ("New", Decimal("3.00"), 5, None)
    assert published() == [
        ticket_updated(ticket.id, version=5, user_id=owner, title="New", price="3.00")
    ]


@pytest.mark.django_db
def test_ticket_update_writes_only_the_version_its_editor_was_checked_against():
    owner = uuid.uuid4()
    ticket = make_ticket(user_id=owner)
    found = services.ticket_for_update(ticket_id=ticket.id, user_id=owner)
    edit(ticket_id=ticket.id, user_id=owner, title="First", price="30")

    with pytest.raises(Conflict):
        services.ticket_update(ticket=found, title="Second", price="40")

    assert ticket_state(ticket.id) == ("First", Decimal("30.00"), 1, None)
    assert [(data["version"], data["title"]) for _, data in published()] == [(1, "First")]


@pytest.mark.django_db
def test_ticket_update_of_a_ticket_reserved_since_it_was_found_is_refused():
    owner, order_id = uuid.uuid4(), uuid.uuid4()
    ticket = make_ticket(user_id=owner)
    found = services.ticket_for_update(ticket_id=ticket.id, user_id=owner)
    services.ticket_reserve(ticket_id=ticket.id, order_id=order_id)

    with pytest.raises(BadRequest) as refused:
        services.ticket_update(ticket=found, title="Edited", price="40")

    assert refused.value.message == services.TICKET_RESERVED
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 1, order_id)
    assert [(data["version"], data["orderId"]) for _, data in published()] == [(1, str(order_id))]


# --- ticket_update's optimistic path: a real second transaction commits between the read
# and the conditional UPDATE. The main thread holds the row lock (its change uncommitted)
# while a second thread makes an edit: that thread reads the last committed version,
# then its UPDATE blocks on the lock; we wait until PostgreSQL reports it blocked, commit,
# and its UPDATE re-evaluates its WHERE against the new row and misses.


def start_blocked_call(function):
    """Run `function` in a thread on its own connection; return (thread, outcome box)."""
    box = {}

    def call():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            box["pid"] = cursor.fetchone()[0]
        return function()

    return start_call(call, box)


def is_blocked(box):
    if "pid" not in box:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT cardinality(pg_blocking_pids(%s))", [box["pid"]])
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_ticket_update_that_lost_a_race_to_another_edit_is_a_conflict(rabbitmq_vhost):
    owner = uuid.uuid4()
    ticket = make_ticket(user_id=owner)

    with transaction.atomic():
        edit(ticket_id=ticket.id, user_id=owner, title="First", price="30")
        thread, box = start_blocked_call(
            lambda: edit(ticket_id=ticket.id, user_id=owner, title="Second", price="40")
        )
        wait_for(lambda: is_blocked(box), timeout=10)
    thread.join(timeout=10)

    assert isinstance(box.get("error"), Conflict), box
    assert ticket_state(ticket.id) == ("First", Decimal("30.00"), 1, None)
    assert [(subject, data["version"], data["title"]) for subject, data in published()] == [
        ("ticket.updated", 1, "First")
    ]


@pytest.mark.django_db(transaction=True)
def test_ticket_update_that_lost_a_race_to_a_reservation_is_refused(rabbitmq_vhost):
    owner, order_id = uuid.uuid4(), uuid.uuid4()
    ticket = make_ticket(user_id=owner)

    with transaction.atomic():
        services.ticket_reserve(ticket_id=ticket.id, order_id=order_id)
        thread, box = start_blocked_call(
            lambda: edit(ticket_id=ticket.id, user_id=owner, title="Edited", price="40")
        )
        wait_for(lambda: is_blocked(box), timeout=10)
    thread.join(timeout=10)

    error = box.get("error")
    assert isinstance(error, BadRequest), box
    assert error.message == services.TICKET_RESERVED
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 1, order_id)
    assert [(subject, data["version"], data["orderId"]) for subject, data in published()] == [
        ("ticket.updated", 1, str(order_id))
    ]


# --- the reservation lock --------------------------------------------------------------


@pytest.mark.django_db
def test_reserve_a_free_ticket():
    ticket = make_ticket(version=2)
    order_id = uuid.uuid4()

    reserved = services.ticket_reserve(ticket_id=ticket.id, order_id=order_id)

    assert (reserved.order_id, reserved.version) == (order_id, 3)
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 3, order_id)
    assert Ticket.objects.get(id=ticket.id).updated_at > ticket.updated_at
    assert published() == [
        ticket_updated(ticket.id, version=3, user_id=ticket.user_id, order_id=order_id)
    ]


@pytest.mark.django_db
def test_reserve_again_by_the_same_order_changes_nothing(caplog):
    order_id = uuid.uuid4()
    ticket = make_ticket(order_id=order_id, version=1)

    with caplog.at_level(logging.INFO, logger=SERVICES_LOGGER):
        result = services.ticket_reserve(ticket_id=ticket.id, order_id=order_id)

    assert result.order_id == order_id
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 1, order_id)
    assert OutboxEvent.objects.count() == 0
    assert [r for r in caplog.records if r.name == SERVICES_LOGGER] == []


@pytest.mark.django_db
def test_reserve_by_another_order_waits_for_the_holder_to_let_go(caplog):
    holder, other = uuid.uuid4(), uuid.uuid4()
    ticket = make_ticket(order_id=holder, version=1)

    with caplog.at_level(logging.INFO, logger=SERVICES_LOGGER), pytest.raises(NotYet):
        services.ticket_reserve(ticket_id=ticket.id, order_id=other)

    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 1, holder)
    assert OutboxEvent.objects.count() == 0
    [record] = [r for r in caplog.records if r.name == SERVICES_LOGGER]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "ticket still held by another order; retrying later"
    assert (record.ticket_id, record.held_by, record.requested_by) == (
        str(ticket.id),
        str(holder),
        str(other),
    )


@pytest.mark.django_db
def test_release_by_another_order_changes_nothing():
    holder = uuid.uuid4()
    ticket = make_ticket(order_id=holder, version=1)

    result = services.ticket_release(ticket_id=ticket.id, order_id=uuid.uuid4())

    assert result.order_id == holder
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 1, holder)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_release_of_a_free_ticket_changes_nothing():
    ticket = make_ticket(version=2)

    services.ticket_release(ticket_id=ticket.id, order_id=uuid.uuid4())

    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 2, None)
    assert OutboxEvent.objects.count() == 0


@pytest.mark.django_db
def test_release_by_the_holder_frees_the_ticket():
    holder = uuid.uuid4()
    ticket = make_ticket(order_id=holder, version=1)

    released = services.ticket_release(ticket_id=ticket.id, order_id=holder)

    assert (released.order_id, released.version) == (None, 2)
    assert ticket_state(ticket.id) == ("Concert", Decimal("20.00"), 2, None)
    assert published() == [ticket_updated(ticket.id, version=2, user_id=ticket.user_id)]


@pytest.mark.django_db
@pytest.mark.parametrize("operation", [services.ticket_reserve, services.ticket_release])
def test_an_unknown_ticket_is_logged_and_nothing_changes(caplog, operation):
    other = make_ticket()
    unknown = uuid.uuid4()

    with caplog.at_level(logging.INFO, logger=SERVICES_LOGGER):
        result = operation(ticket_id=unknown, order_id=uuid.uuid4())

    assert result is None
    assert list(Ticket.objects.values_list("id", "version", "order_id")) == [(other.id, 0, None)]
    assert OutboxEvent.objects.count() == 0
    [record] = [r for r in caplog.records if r.name == SERVICES_LOGGER]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == "order event names an unknown ticket"
    assert record.ticket_id == str(unknown)

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connection, transaction

from shared_lib.events.consumer import Outcome, run_handler
from shared_lib.events.contracts import Subject
from shared_lib.events.registry import NotYet
from shared_lib.events.versioning import Applied, apply_to_replica, claim_version
from shared_lib.models import AggregateVersion, InboxMessage
from shared_lib.testing.events import deliver, make_event
from shared_lib.testing.threads import start_call
from shared_lib.testing.waiting import wait_for
from tests.demo.factories import order_created_data
from tests.demo.models import Effect, TicketReplica

USER = uuid.uuid4()


def _fields(title="Front row", price="20.50"):
    return {"title": title, "price": Decimal(price), "user_id": USER, "order_id": None}


def _apply(ticket_id, version, **fields):
    with transaction.atomic():
        return apply_to_replica(
            TicketReplica, id=ticket_id, version=version, fields=_fields(**fields)
        )


def _replica(ticket_id):
    return TicketReplica.objects.values("title", "price", "version").get(id=ticket_id)


def _claim(aggregate_id, version, aggregate="order"):
    with transaction.atomic():
        return claim_version(aggregate, id=aggregate_id, version=version)


def _claimed(aggregate_id, aggregate="order"):
    return (
        AggregateVersion.objects.filter(aggregate=aggregate, aggregate_id=aggregate_id)
        .values_list("version", flat=True)
        .first()
    )


def _lock_waiters() -> int:
    """Backends of this database waiting for a lock (a fresh snapshot of pg_stat_activity)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _race(first, second):
    """Run `first` in a transaction; `second` in a thread that blocks on its lock; then commit.

    Returns (first's result, second's result or exception).
    """
    started = threading.Event()

    def run_second():
        started.wait(timeout=10)
        with transaction.atomic():
            return second()

    thread, outcome = start_call(run_second)
    with transaction.atomic():
        first_result = first()
        started.set()
        wait_for(lambda: _lock_waiters() >= 1, timeout=10)
    thread.join(timeout=10)
    assert not thread.is_alive()
    return first_result, outcome["error"] if "error" in outcome else outcome["result"]


@pytest.mark.django_db
def test_version_0_creates_the_replica():
    ticket_id = uuid.uuid4()

    assert _apply(ticket_id, 0, title="Front row", price="20.50") is Applied.CREATED

    replica = TicketReplica.objects.get(id=ticket_id)
    assert (replica.title, replica.price, replica.version) == ("Front row", Decimal("20.50"), 0)
    assert (replica.user_id, replica.order_id) == (USER, None)


@pytest.mark.django_db
@pytest.mark.parametrize("version", [1, 2, 7])
def test_a_first_event_after_version_0_is_not_yet_and_creates_nothing(version):
    ticket_id = uuid.uuid4()

    with pytest.raises(NotYet, match=rf"^TicketReplica {ticket_id}: v{version} before v0$"):
        _apply(ticket_id, version)

    assert not TicketReplica.objects.filter(id=ticket_id).exists()


@pytest.mark.django_db
def test_the_next_version_updates_the_replica():
    ticket_id = uuid.uuid4()
    _apply(ticket_id, 0, title="Front row", price="20.50")

    assert _apply(ticket_id, 1, title="Back row", price="15.00") is Applied.UPDATED
    assert _apply(ticket_id, 2, title="Balcony", price="12.25") is Applied.UPDATED

    assert _replica(ticket_id) == {"title": "Balcony", "price": Decimal("12.25"), "version": 2}


@pytest.mark.django_db
@pytest.mark.parametrize("version", [0, 1, 2])
def test_an_equal_or_older_version_is_stale_and_changes_nothing(version):
    ticket_id = uuid.uuid4()
    for v, title in enumerate(["v0", "v1", "v2"]):
        _apply(ticket_id, v, title=title)

    assert _apply(ticket_id, version, title="redelivered", price="99.00") is Applied.STALE

    assert _replica(ticket_id) == {"title": "v2", "price": Decimal("20.50"), "version": 2}


@pytest.mark.django_db
@pytest.mark.parametrize("version", [3, 9])
def test_a_version_gap_is_not_yet_and_changes_nothing(version):
    ticket_id = uuid.uuid4()
    _apply(ticket_id, 0, title="v0")
    _apply(ticket_id, 1, title="v1")

    with pytest.raises(NotYet, match=rf"^TicketReplica {ticket_id}: v{version} on top of v1$"):
        _apply(ticket_id, version, title="ahead")

    assert _replica(ticket_id) == {"title": "v1", "price": Decimal("20.50"), "version": 1}


@pytest.mark.django_db(transaction=True)
def test_two_first_deliveries_at_once_one_creates_and_the_other_is_stale():
    ticket_id = uuid.uuid4()

    first, second = _race(
        lambda: apply_to_replica(TicketReplica, id=ticket_id, version=0, fields=_fields("First")),
        lambda: apply_to_replica(TicketReplica, id=ticket_id, version=0, fields=_fields("Second")),
    )

    # The second waited for the first to commit (the race happened), then found v0 there.
    assert (first, second) == (Applied.CREATED, Applied.STALE)
    assert _replica(ticket_id) == {"title": "First", "price": Decimal("20.50"), "version": 0}


@pytest.mark.django_db
def test_claim_version_goes_ahead_once_per_version_in_order():
    order_id = uuid.uuid4()

    assert _claim(order_id, 0) is True
    assert _claimed(order_id) == 0
    assert _claim(order_id, 0) is False  # a redelivery
    assert _claim(order_id, 1) is True
    assert _claim(order_id, 1) is False
    assert _claim(order_id, 0) is False  # an older event arriving late

    assert _claimed(order_id) == 1
    assert AggregateVersion.objects.filter(aggregate_id=order_id).count() == 1


@pytest.mark.django_db
def test_claim_version_ahead_of_the_next_version_is_not_yet_and_claims_nothing():
    order_id = uuid.uuid4()

    with pytest.raises(NotYet, match=rf"^order {order_id}: v1 on top of v-1$"):
        _claim(order_id, 1)
    assert _claimed(order_id) is None  # the placeholder row rolled back with the claim

    _claim(order_id, 0)
    with pytest.raises(NotYet, match=rf"^order {order_id}: v2 on top of v0$"):
        _claim(order_id, 2)
    assert _claimed(order_id) == 0


@pytest.mark.django_db
def test_claims_are_kept_per_aggregate_kind_and_id():
    shared_id, other_id = uuid.uuid4(), uuid.uuid4()

    assert _claim(shared_id, 0, aggregate="order") is True
    assert _claim(shared_id, 0, aggregate="ticket") is True
    assert _claim(other_id, 0, aggregate="order") is True
    assert _claim(shared_id, 1, aggregate="order") is True

    assert _claimed(shared_id, "order") == 1
    assert _claimed(shared_id, "ticket") == 0
    assert _claimed(other_id, "order") == 0


@pytest.mark.django_db(transaction=True)
def test_two_claims_of_one_version_at_once_go_ahead_once():
    order_id = uuid.uuid4()

    first, second = _race(
        lambda: claim_version("order", id=order_id, version=0),
        lambda: claim_version("order", id=order_id, version=0),
    )

    assert (first, second) == (True, False)
    assert _claimed(order_id) == 0


@pytest.mark.django_db
def test_a_failed_handler_transaction_rolls_the_claim_back():
    event = make_event(Subject.ORDER_CREATED, order_created_data(version=0))
    calls = []

    def failing_handler(event):
        calls.append(claim_version("order", id=event.data.id, version=event.data.version))
        Effect.objects.create(
            event_id=event.id, subject="charged", aggregate_id=event.data.id, version=0
        )
        raise RuntimeError("charge failed")

    with pytest.raises(RuntimeError, match="charge failed"):
        run_handler(failing_handler, event, consumer="demo.order.created")

    assert calls == [True]
    assert _claimed(event.data.id) is None
    assert Effect.objects.count() == 0
    assert InboxMessage.objects.count() == 0

    # The redelivery finds nothing claimed and applies.
    assert deliver(event) is Outcome.APPLIED
    assert _claimed(event.data.id) == 0
    assert list(Effect.objects.values_list("event_id", "subject")) == [(event.id, "order.created")]

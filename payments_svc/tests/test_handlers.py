"""Order events through the real inbox path: deliver() runs a handler as the consumer does."""

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from payments import gateway, services
from payments.models import OrderReplica, Payment, Refund
from shared_lib.events.consumer import Outcome
from shared_lib.events.contracts import consumed_by
from shared_lib.events.registry import NotYet, check_handlers, discover_handlers
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.events import deliver, make_event
from shared_lib.testing.inbox import assert_consumed_without_reply
from tests.factories import (
    GOOD_CARD,
    cancelled_event,
    completed_event,
    order_data,
    order_replica,
)
from tests.stripe_http import unreachable_url

pytestmark = pytest.mark.django_db

REFUNDS = ("POST", "/v1/refunds")


def replica(order_id):
    row = OrderReplica.objects.get(id=order_id)
    return {
        "userId": str(row.user_id),
        "price": row.price,
        "status": row.status,
        "expiresAt": row.expires_at,
        "v": row.version,
    }


def created_event(data, **fields):
    return make_event("order.created", data, **fields)


def paid_order(price="20.50"):
    order = order_replica(price=price)
    payment = services.payment_create(
        user_id=order.user_id, order_id=str(order.id), token=GOOD_CARD
    )
    return order, payment


# --- order.created --------------------------------------------------------------------


def test_order_created_inserts_the_replica():
    buyer = uuid.uuid4()
    expires_at = timezone.now() + timedelta(minutes=15)
    data = order_data(user_id=buyer, price="25.00", expires_at=expires_at)
    event = created_event(data)

    assert deliver(event) is Outcome.APPLIED

    assert replica(data["id"]) == {
        "userId": str(buyer),
        "price": Decimal("25.00"),
        "status": "created",
        "expiresAt": expires_at,
        "v": 0,
    }
    assert OrderReplica.objects.get().amount_cents == 2500
    assert_consumed_without_reply(event, "payments.order.created")


def test_order_created_takes_the_ticket_price_exactly():
    data = order_data(price="0.29")

    deliver(created_event(data))

    assert OrderReplica.objects.get().price == Decimal("0.29")
    assert OrderReplica.objects.get().amount_cents == 29


def test_order_created_keeps_the_expiry_instant_from_another_offset():
    instant = datetime.fromisoformat("2030-01-01T12:00:00+02:00")
    data = {**order_data(), "expiresAt": "2030-01-01T12:00:00+02:00"}

    deliver(created_event(data))

    assert OrderReplica.objects.get().expires_at == instant


def test_order_created_twice_is_a_duplicate():
    data = order_data()
    event = created_event(data)
    assert deliver(event) is Outcome.APPLIED
    before = OrderReplica.objects.get().updated_at

    assert deliver(event) is Outcome.DUPLICATE

    assert OrderReplica.objects.get().updated_at == before
    assert InboxMessage.objects.count() == 1


def test_order_created_republished_under_a_new_id_changes_nothing():
    data = order_data(price="10.00")
    deliver(created_event(data))

    changed = {**data, "ticket": {**data["ticket"], "price": "99.00"}}
    assert deliver(created_event(changed)) is Outcome.APPLIED  # a new message, but stale

    assert replica(data["id"])["price"] == Decimal("10.00")


# --- order.cancelled / order.completed ------------------------------------------------


def test_order_cancelled_marks_the_replica_cancelled(stripe_proxy):
    order = order_replica(price="15.00")

    assert deliver(cancelled_event(order)) is Outcome.APPLIED

    after = replica(order.id)
    assert (after["status"], after["v"]) == ("cancelled", 1)
    assert (after["price"], after["userId"]) == (Decimal("15.00"), str(order.user_id))
    assert Refund.objects.count() == 0
    assert stripe_proxy.recorded == []  # nothing paid, nothing to give back
    assert OutboxEvent.objects.count() == 0


def test_order_completed_marks_the_replica_complete(stripe_proxy):
    order = order_replica()

    assert deliver(completed_event(order)) is Outcome.APPLIED

    after = replica(order.id)
    assert (after["status"], after["v"]) == ("complete", 1)
    assert stripe_proxy.recorded == []


@pytest.mark.parametrize("make", [cancelled_event, completed_event])
def test_the_same_status_event_twice_changes_once(make):
    order = order_replica()
    event = make(order)
    assert deliver(event) is Outcome.APPLIED
    first = OrderReplica.objects.get(id=order.id)

    assert deliver(event) is Outcome.DUPLICATE

    again = OrderReplica.objects.get(id=order.id)
    assert (again.status, again.version, again.updated_at) == (
        first.status,
        1,
        first.updated_at,
    )
    assert InboxMessage.objects.filter(subject=event.subject).count() == 1


def test_an_older_event_never_undoes_a_newer_one():
    data = order_data()
    deliver(created_event(data))
    deliver(cancelled_event(data["id"]))

    assert deliver(created_event(data)) is Outcome.APPLIED  # a new message id, version 0

    assert (replica(data["id"])["status"], replica(data["id"])["v"]) == ("cancelled", 1)


def test_order_cancelled_before_order_created_waits_for_it():
    data = order_data()
    cancelled = cancelled_event(data["id"])

    with pytest.raises(NotYet):
        deliver(cancelled)

    assert not OrderReplica.objects.exists()
    assert not InboxMessage.objects.exists()  # rolled back: the redelivery will apply

    assert deliver(created_event(data)) is Outcome.APPLIED
    assert deliver(cancelled) is Outcome.APPLIED

    assert (replica(data["id"])["status"], replica(data["id"])["v"]) == ("cancelled", 1)


def test_a_version_gap_waits():
    order = order_replica()

    with pytest.raises(NotYet):
        deliver(completed_event(order, version=2))

    assert (replica(order.id)["status"], replica(order.id)["v"]) == ("created", 0)


# --- refunds on cancel ----------------------------------------------------------------


def test_order_cancelled_for_a_paid_order_owes_a_refund_the_worker_gives_back(
    stripe_ledger, stripe_proxy
):
    order, payment = paid_order(price="42.00")

    assert deliver(cancelled_event(order)) is Outcome.APPLIED

    # The handler's transaction records the debt and calls nobody.
    assert replica(order.id)["status"] == "cancelled"
    refund = Refund.objects.get()
    assert (refund.payment_id, refund.attempt_id, refund.payment_intent_id) == (
        payment.id,
        payment.attempt_id,
        payment.stripe_id,
    )
    assert (refund.amount_cents, refund.status, refund.tries) == (4200, "pending", 0)
    assert stripe_proxy.requests(*REFUNDS) == []

    assert services.payments_reconcile() == 1

    refund.refresh_from_db()
    assert refund.status == "succeeded"
    [at_stripe] = stripe_ledger.refunds(payment.stripe_id)
    assert (at_stripe["id"], at_stripe["amount"]) == (refund.stripe_id, 4200)
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.stripe_id}"]
    assert Payment.objects.get().id == payment.id  # the record of the charge stays


def test_order_cancelled_for_a_paid_order_twice_owes_once(stripe_ledger, stripe_proxy):
    order, payment = paid_order()
    event = cancelled_event(order)
    assert deliver(event) is Outcome.APPLIED

    assert deliver(event) is Outcome.DUPLICATE
    assert deliver(cancelled_event(order)) is Outcome.APPLIED  # republished, new id
    services.payments_reconcile()
    services.payments_reconcile()

    assert Refund.objects.count() == 1
    assert len(stripe_ledger.refunds(payment.stripe_id)) == 1
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.stripe_id}"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("rabbitmq_vhost")
def test_a_cancel_during_a_stripe_outage_commits_and_is_refunded_once_stripe_returns(
    stripe_ledger, settings
):
    # Stripe is down for longer than the consumer's whole retry budget: the cancel still
    # commits at once (nothing to retry, nothing dead-lettered), and the refund it owes
    # waits in its row, tried with back-off, until Stripe answers.
    order, payment = paid_order()
    event = cancelled_event(order)
    up = settings.STRIPE_API_BASE
    settings.STRIPE_API_BASE = unreachable_url()
    gateway._client.cache_clear()

    assert deliver(event) is Outcome.APPLIED

    assert replica(order.id)["status"] == "cancelled"
    assert InboxMessage.objects.filter(message_id=event.id).exists()
    refund = Refund.objects.get()
    # The try made after the commit met the outage and was recorded.
    assert (refund.status, refund.tries) == ("pending", 1)
    assert refund.last_error
    now = timezone.now()
    for _ in range(settings.EVENTS_MAX_ATTEMPTS + 2):
        now += services.REFUND_MAX_RETRY
        assert services.payments_reconcile(now=now) == 0
    refund.refresh_from_db()
    assert (refund.status, refund.tries) == ("pending", settings.EVENTS_MAX_ATTEMPTS + 3)
    assert stripe_ledger.refunds(payment.stripe_id) == []

    settings.STRIPE_API_BASE = up  # Stripe is back
    gateway._client.cache_clear()
    assert services.payments_reconcile(now=now + services.REFUND_MAX_RETRY) == 1
    assert services.payments_reconcile(now=now + 2 * services.REFUND_MAX_RETRY) == 0

    refund.refresh_from_db()
    assert (refund.status, refund.last_error) == ("succeeded", "")
    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [refund.stripe_id]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("rabbitmq_vhost")
def test_a_cancel_gives_the_money_back_as_soon_as_it_commits(stripe_ledger, stripe_proxy):
    order, payment = paid_order(price="7.00")

    assert deliver(cancelled_event(order)) is Outcome.APPLIED

    refund = Refund.objects.get()
    assert (refund.status, refund.tries) == ("succeeded", 1)
    [at_stripe] = stripe_ledger.refunds(payment.stripe_id)
    assert (at_stripe["id"], at_stripe["amount"]) == (refund.stripe_id, 700)


def test_order_completed_for_a_paid_order_refunds_nothing(stripe_ledger):
    order, payment = paid_order()

    assert deliver(completed_event(order)) is Outcome.APPLIED

    assert replica(order.id)["status"] == "complete"
    assert Refund.objects.count() == 0
    assert stripe_ledger.refunds(payment.stripe_id) == []


def test_the_handlers_are_the_subjects_the_contracts_declare_for_this_service():
    check_handlers(settings.EVENTS_SERVICE)  # the worker's start-up check: no mismatch

    assert sorted(discover_handlers()) == sorted(consumed_by("payments"))

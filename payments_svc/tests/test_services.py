"""Paying exactly once: attempts, their idempotency keys, refunds, and in-flight cancels."""

import uuid
from datetime import timedelta

import pytest

from payments import gateway, services
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.errors import BadRequest, NotFound, PaymentRequired, ServiceUnavailable
from shared_lib.events.consumer import Outcome
from shared_lib.models import OutboxEvent
from shared_lib.testing.events import deliver
from tests.factories import (
    DECLINED,
    DECLINED_CARD,
    GOOD_CARD,
    attempt_row,
    cancelled_event,
    order_replica,
)

pytestmark = pytest.mark.django_db

INTENTS = ("POST", "/v1/payment_intents")
REFUNDS = ("POST", "/v1/refunds")


def key(attempt):
    return f"payment-attempt-{attempt.id}"


def create(order, token=GOOD_CARD):
    return services.payment_create(user_id=order.user_id, order_id=str(order.id), token=token)


def refused(order, token=GOOD_CARD):
    with pytest.raises(BadRequest) as caught:
        create(order, token)
    return caught.value.message


# --- attempts -------------------------------------------------------------------------


def test_a_pending_attempt_blocks_a_second_request(stripe_ledger, stripe_proxy):
    # Another request is charging this order right now.
    order = order_replica()
    in_flight = attempt_row(order, status="pending", age=timedelta(seconds=1))
    touched = in_flight.updated_at

    assert refused(order) == services.ORDER_PAID

    assert list(PaymentAttempt.objects.values_list("id", "status")) == [(in_flight.id, "pending")]
    in_flight.refresh_from_db()
    assert in_flight.updated_at == touched  # still its own request's, not taken over
    assert stripe_proxy.recorded == []
    assert stripe_ledger.payment_intents(order.id) == []
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_a_pending_attempt_just_short_of_stale_still_blocks(stripe_ledger):
    order = order_replica()
    attempt_row(order, status="pending", age=services.STALE_ATTEMPT - timedelta(seconds=5))

    assert refused(order) == services.ORDER_PAID

    assert stripe_ledger.payment_intents(order.id) == []
    assert PaymentAttempt.objects.count() == 1


def test_a_stale_pending_attempt_is_retried_under_its_own_key(stripe_ledger, stripe_proxy):
    # Its process died mid-charge: retried with the same idempotency key, so Stripe would
    # answer with the first result rather than charge again.
    order = order_replica()
    stale = attempt_row(order, status="pending", age=services.STALE_ATTEMPT + timedelta(seconds=1))

    payment = create(order)

    assert payment.attempt_id == stale.id
    assert PaymentAttempt.objects.count() == 1
    stale.refresh_from_db()
    assert stale.status == "succeeded"
    assert stale.updated_at > stale.created_at + services.STALE_ATTEMPT
    assert stripe_proxy.keys(*INTENTS) == [key(stale)]
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["metadata"]["attemptId"] == str(stale.id)
    assert intent["id"] == payment.stripe_id


def test_an_unknown_attempt_is_retried_with_its_original_card(stripe_ledger, stripe_proxy):
    # A retry under the same key must send the same request; the new card is not used.
    order = order_replica()
    unknown = attempt_row(order, status="unknown", token=GOOD_CARD)

    payment = create(order, token=DECLINED_CARD)

    assert payment.attempt_id == unknown.id
    unknown.refresh_from_db()
    assert (unknown.status, unknown.token) == ("succeeded", GOOD_CARD)
    assert PaymentAttempt.objects.count() == 1
    assert stripe_proxy.keys(*INTENTS) == [key(unknown)]
    [intent] = stripe_ledger.payment_intents(order.id)
    assert (intent["payment_method"], intent["status"]) == (GOOD_CARD, "succeeded")


def test_an_unknown_attempt_with_a_declined_card_settles_then_a_new_card_pays(stripe_proxy):
    order = order_replica()
    unknown = attempt_row(order, status="unknown", token=DECLINED_CARD)

    with pytest.raises(PaymentRequired) as caught:
        create(order, token=GOOD_CARD)
    payment = create(order, token=GOOD_CARD)

    assert caught.value.message == DECLINED
    unknown.refresh_from_db()
    assert (unknown.status, unknown.error) == ("declined", DECLINED)
    assert payment.attempt_id != unknown.id
    assert PaymentAttempt.objects.get(id=payment.attempt_id).token == GOOD_CARD
    new = PaymentAttempt.objects.get(id=payment.attempt_id)
    assert stripe_proxy.keys(*INTENTS) == [key(unknown), key(new)]


def test_a_declined_attempt_is_never_retried(stripe_proxy):
    order = order_replica()
    declined = attempt_row(order, status="declined", token=DECLINED_CARD)

    payment = create(order)

    assert payment.attempt_id != declined.id
    declined.refresh_from_db()
    assert declined.status == "declined"
    assert stripe_proxy.keys(*INTENTS) == [f"payment-attempt-{payment.attempt_id}"]


def test_a_lost_response_is_retried_under_the_same_key(stripe_ledger, stripe_proxy):
    # The charge reached Stripe but its answer never came back: outcome unknown.
    order = order_replica()
    stripe_proxy.fail(*INTENTS, stripe_proxy.LOSE)

    with pytest.raises(ServiceUnavailable) as caught:
        create(order)
    attempt = PaymentAttempt.objects.get()

    assert caught.value.message == services.PROVIDER_UNAVAILABLE
    assert attempt.status == "unknown"
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0

    payment = create(order)

    assert payment.attempt_id == attempt.id
    # Real Stripe answers the second request with the first PaymentIntent because the key
    # is the same; localstripe ignores keys, so the wire is where this is checked.
    assert stripe_proxy.keys(*INTENTS) == [key(attempt), key(attempt)]
    assert PaymentAttempt.objects.count() == 1


def test_the_amount_is_fixed_when_the_attempt_is_recorded(stripe_ledger):
    order = order_replica(price="33.33")

    payment = create(order)

    attempt = PaymentAttempt.objects.get()
    assert attempt.amount_cents == payment.amount_cents == 3333
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["amount"] == 3333


def test_someone_elses_order_is_not_found():
    order = order_replica()

    with pytest.raises(NotFound):
        services.payment_create(user_id=uuid.uuid4(), order_id=str(order.id), token=GOOD_CARD)

    assert PaymentAttempt.objects.count() == 0


# --- refunds --------------------------------------------------------------------------


def test_payment_refund_refunds_once(stripe_ledger, stripe_proxy):
    order = order_replica(price="45.00")
    payment = create(order)

    first = services.payment_refund(payment_id=payment.id)
    second = services.payment_refund(payment_id=payment.id)

    assert second.id == first.id
    assert Refund.objects.get().payment_id == payment.id
    [refund] = stripe_ledger.refunds(payment.stripe_id)
    assert (refund["id"], refund["amount"], refund["status"]) == (
        first.stripe_id,
        4500,
        "succeeded",
    )
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.id}"]


def test_payment_refund_during_an_outage_records_nothing(stripe_ledger, stripe_proxy):
    order = order_replica()
    payment = create(order)
    stripe_proxy.fail(*REFUNDS, stripe_proxy.REFUSE)

    with pytest.raises(gateway.GatewayUnavailable):
        services.payment_refund(payment_id=payment.id)

    assert Refund.objects.count() == 0
    assert stripe_ledger.refunds(payment.stripe_id) == []

    refund = services.payment_refund(payment_id=payment.id)

    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [refund.stripe_id]
    # Both tries name the same refund, so Stripe would not refund twice either.
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.id}", f"refund-{payment.id}"]


# --- an order cancelled while its charge is in flight ---------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("rabbitmq_vhost")
def test_an_order_cancelled_while_being_charged_is_refunded(
    signed_in_client, stripe_ledger, stripe_proxy
):
    # The expiry wins the race with the charge: order.cancelled is consumed (in another
    # thread, committed) while the PaymentIntent request is on its way to Stripe.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="30.00")
    stripe_proxy.before(*INTENTS, lambda: deliver(cancelled_event(order)))

    response = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": services.ORDER_CANCELLED}]}
    order.refresh_from_db()
    assert (order.status, order.version) == ("cancelled", 1)
    payment = Payment.objects.get()
    assert (payment.order_id, payment.amount_cents) == (order.id, 3000)
    assert PaymentAttempt.objects.get().status == "succeeded"
    refund = Refund.objects.get()
    assert refund.payment_id == payment.id
    [intent] = stripe_ledger.succeeded(order.id)
    assert intent["id"] == payment.stripe_id
    [at_stripe] = stripe_ledger.refunds(payment.stripe_id)
    assert (at_stripe["id"], at_stripe["amount"]) == (refund.stripe_id, 3000)
    # payment.created still goes out; orders_svc leaves a cancelled order cancelled.
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data["id"]) == ("payment.created", str(payment.id))
    # The buyer cannot try again: the order is cancelled and nothing more is charged.
    again = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )
    assert again.json() == {"errors": [{"message": services.ORDER_CANCELLED}]}
    assert len(stripe_ledger.payment_intents(order.id)) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("rabbitmq_vhost")
def test_an_in_flight_cancel_whose_refund_meets_an_outage_is_refunded_later(
    signed_in_client, stripe_ledger, stripe_proxy
):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    def expire_and_go_down():
        deliver(cancelled_event(order))
        stripe_proxy.fail(*REFUNDS, stripe_proxy.REFUSE)

    stripe_proxy.before(*INTENTS, expire_and_go_down)

    response = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )

    # The order is cancelled, so is this payment; the charge it made is owed back.
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": services.ORDER_CANCELLED}]}
    payment = Payment.objects.get(order_id=order.id)
    assert not Refund.objects.filter(payment=payment).exists()
    assert len(stripe_ledger.succeeded(order.id)) == 1

    # The worker's reconciliation, once Stripe answers again, gives it back exactly once.
    assert services.payments_reconcile() == 1
    refund = Refund.objects.get(payment=payment)
    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [refund.stripe_id]
    assert services.payments_reconcile() == 0


def test_a_charge_whose_answer_was_lost_is_refunded_when_the_order_is_cancelled(
    stripe_ledger, stripe_proxy
):
    order = order_replica()
    stripe_proxy.fail(*INTENTS, stripe_proxy.LOSE)
    with pytest.raises(ServiceUnavailable):
        create(order)
    assert len(stripe_ledger.succeeded(order.id)) == 1  # the buyer's money was taken
    assert PaymentAttempt.objects.get().status == "unknown"

    assert deliver(cancelled_event(order)) is Outcome.APPLIED

    assert OrderReplica.objects.get(id=order.id).status == "cancelled"
    # The charge is settled and given back (real Stripe answers a retry under the
    # attempt's key with the charge it made, so settling it this way charges nothing).
    refund = Refund.objects.get(payment__order_id=order.id)
    assert [r["id"] for r in stripe_ledger.refunds(refund.payment.stripe_id)] == [refund.stripe_id]

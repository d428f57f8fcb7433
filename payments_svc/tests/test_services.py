"""Paying exactly once: attempts, their idempotency keys, refunds, and in-flight cancels."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from payments import gateway, services
from payments.metrics import RefundCollector
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.errors import BadRequest, NotFound, PaymentRequired, ServiceUnavailable
from shared_lib.events.consumer import Outcome
from shared_lib.metrics import sample
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
from tests.stripe_http import CONFIRM

pytestmark = pytest.mark.django_db

INTENTS = ("POST", "/v1/payment_intents")
INTENT = "/v1/payment_intents/{id}"
SEARCH = "/v1/payment_intents/search"
REFUNDS = ("POST", "/v1/refunds")


def key(attempt):
    return f"payment-attempt-{attempt.id}"


def create(order, token=GOOD_CARD):
    return services.payment_create(user_id=order.user_id, order_id=str(order.id), token=token)


def refused(order, token=GOOD_CARD):
    with pytest.raises(BadRequest) as caught:
        create(order, token)
    return caught.value.message


def attempt_left_open(order, stripe_proxy, request, failure):
    """Charge `order` while Stripe's `request` fails as `failure`: the buyer gets a 503 and
    the attempt stays for the retry or the reconciler to settle."""
    stripe_proxy.fail(*request, failure)
    with pytest.raises(ServiceUnavailable):
        create(order)
    return PaymentAttempt.objects.get()


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
    assert intent["status"] == "succeeded"
    assert stripe_ledger.card_last4(intent["payment_method"]) == "4242"  # GOOD_CARD's


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


def owed(order, payment):
    """The refund an order's cancellation leaves owed (as order_cancelled_apply does)."""
    assert deliver(cancelled_event(order)) is Outcome.APPLIED
    refund = Refund.objects.get(order_id=order.id)
    assert (refund.payment_id, refund.payment_intent_id, refund.status, refund.tries) == (
        payment.id,
        payment.stripe_id,
        "pending",
        0,
    )
    return refund


def test_refund_settle_refunds_once(stripe_ledger, stripe_proxy):
    order = order_replica(price="45.00")
    payment = create(order)
    refund = owed(order, payment)

    first = services.refund_settle(refund_id=refund.id)
    second = services.refund_settle(refund_id=refund.id)

    assert (first, second) == ("succeeded", None)  # the second finds nothing owed
    refund.refresh_from_db()
    assert (refund.status, refund.tries, refund.last_error) == ("succeeded", 1, "")
    [at_stripe] = stripe_ledger.refunds(payment.stripe_id)
    assert (at_stripe["id"], at_stripe["amount"], at_stripe["status"]) == (
        refund.stripe_id,
        4500,
        "succeeded",
    )
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.stripe_id}"]


def test_refund_settle_during_an_outage_records_the_try_and_backs_off(stripe_ledger, stripe_proxy):
    order = order_replica()
    payment = create(order)
    refund = owed(order, payment)
    stripe_proxy.fail(*REFUNDS, stripe_proxy.REFUSE, stripe_proxy.REFUSE)
    now = timezone.now()

    with pytest.raises(gateway.GatewayUnavailable):
        services.refund_settle(refund_id=refund.id, now=now)
    refund.refresh_from_db()
    assert (refund.status, refund.tries, refund.stripe_id) == ("pending", 1, None)
    assert refund.last_error
    assert refund.next_attempt_at == now + services.REFUND_FIRST_RETRY
    with pytest.raises(gateway.GatewayUnavailable):
        services.refund_settle(refund_id=refund.id, now=now)
    refund.refresh_from_db()
    assert refund.next_attempt_at == now + 2 * services.REFUND_FIRST_RETRY
    assert stripe_ledger.refunds(payment.stripe_id) == []

    assert services.refund_settle(refund_id=refund.id) == "succeeded"

    refund.refresh_from_db()
    assert (refund.status, refund.tries, refund.last_error) == ("succeeded", 3, "")
    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [refund.stripe_id]
    # Every try names the same refund, so Stripe would not refund twice either.
    assert stripe_proxy.keys(*REFUNDS) == [f"refund-{payment.stripe_id}"] * 3


def test_the_back_off_doubles_up_to_an_hour():
    delays = [services._retry_delay(tries) for tries in range(1, 12)]

    assert delays[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert delays[-1] == services.REFUND_MAX_RETRY == timedelta(hours=1)
    assert delays == sorted(delays)


def test_a_charge_already_refunded_at_stripe_counts_as_refunded(stripe_ledger, stripe_proxy):
    # e.g. staff refunded it in Stripe's dashboard: the money is back, nothing is owed.
    order = order_replica()
    payment = create(order)
    refund = owed(order, payment)
    by_hand = stripe_ledger.refund_by_hand(payment.stripe_id)

    assert services.refund_settle(refund_id=refund.id) == "succeeded"

    refund.refresh_from_db()
    assert (refund.status, refund.stripe_id) == ("succeeded", None)
    assert refund.last_error.startswith("charge_already_refunded: ")
    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [by_hand]


def test_a_permanent_refund_error_is_recorded_and_never_blocks_the_next(
    stripe_ledger, stripe_proxy
):
    # Three cancelled paid orders, settled oldest first: one whose PaymentIntent Stripe
    # does not know (say, recorded under another account's key), one already refunded in
    # Stripe's dashboard, and a good one behind them.
    unknown, already, good = (order_replica(price=p) for p in ("10.00", "11.00", "12.00"))
    payments = [create(order) for order in (unknown, already, good)]
    Payment.objects.filter(id=payments[0].id).update(stripe_id="pi_unknown0000000")
    PaymentAttempt.objects.filter(id=payments[0].attempt_id).update(
        stripe_intent_id="pi_unknown0000000"
    )
    stripe_ledger.refund_by_hand(payments[1].stripe_id)
    for order in (unknown, already, good):
        deliver(cancelled_event(order))
    failed_before = sample("ticketing_refund_tries_total", {"outcome": "failed"})

    assert services.payments_reconcile() == 2

    rows = {r.order_id: r for r in Refund.objects.all()}
    assert rows[unknown.id].status == "failed"
    assert rows[unknown.id].last_error.startswith("invalid_request: ")
    assert rows[already.id].status == "succeeded"
    assert rows[good.id].status == "succeeded"
    [given_back] = stripe_ledger.refunds(payments[2].stripe_id)
    assert (given_back["id"], given_back["amount"]) == (rows[good.id].stripe_id, 1200)
    assert len(stripe_ledger.refunds(payments[1].stripe_id)) == 1  # only the dashboard's
    assert sample("ticketing_refund_tries_total", {"outcome": "failed"}) == failed_before + 1
    # A failed refund is not retried on its own: it waits for a person.
    assert services.payments_reconcile(now=timezone.now() + timedelta(days=1)) == 0
    assert stripe_proxy.keys(*REFUNDS) == [
        "refund-pi_unknown0000000",
        f"refund-{payments[1].stripe_id}",
        f"refund-{payments[2].stripe_id}",
    ]


def test_failed_and_owed_refunds_are_scraped_from_the_table(stripe_proxy):
    order, other = order_replica(), order_replica()
    for o in (order, other):
        create(o)
        deliver(cancelled_event(o))
    Refund.objects.filter(order_id=order.id).update(status="failed")

    samples = {s.name: s.value for m in RefundCollector().collect() for s in m.samples}

    assert samples["ticketing_refunds_failed"] == 1
    assert samples["ticketing_refunds_owed"] == 1
    assert samples["ticketing_refunds_oldest_owed_age_seconds"] >= 0


# --- an order cancelled while its charge is in flight ---------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("rabbitmq_vhost")
def test_an_order_cancelled_while_being_charged_is_refunded(
    signed_in_client, stripe_ledger, stripe_proxy
):
    # The expiry wins the race with the charge: order.cancelled is consumed (in another
    # thread, committed) while the PaymentIntent's confirm is on its way to Stripe.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="30.00")
    stripe_proxy.before("POST", CONFIRM, lambda: deliver(cancelled_event(order)))

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

    stripe_proxy.before("POST", CONFIRM, expire_and_go_down)

    response = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )

    # The order is cancelled, so is this payment; the charge it made is owed back.
    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": services.ORDER_CANCELLED}]}
    payment = Payment.objects.get(order_id=order.id)
    refund = Refund.objects.get(payment=payment)
    assert (refund.status, refund.tries) == ("pending", 1)
    assert len(stripe_ledger.succeeded(order.id)) == 1
    assert stripe_ledger.refunds(payment.stripe_id) == []

    # Not due yet: the worker waits out the back-off ...
    assert services.payments_reconcile() == 0
    # ... then, Stripe answering again, gives it back exactly once.
    later = timezone.now() + services.REFUND_FIRST_RETRY
    assert services.payments_reconcile(now=later) == 1
    refund.refresh_from_db()
    assert (refund.status, refund.tries) == ("succeeded", 2)
    assert [r["id"] for r in stripe_ledger.refunds(payment.stripe_id)] == [refund.stripe_id]
    assert services.payments_reconcile(now=later) == 0


# --- settling attempts whose answer was lost: look up, never charge -------------------


def test_a_lost_confirm_is_looked_up_on_retry_not_sent_again(stripe_ledger, stripe_proxy):
    # The charge went through but its answer never came back: the buyer's retry
    # retrieves the stored PaymentIntent and finds it paid.
    order = order_replica()

    attempt = attempt_left_open(order, stripe_proxy, ("POST", CONFIRM), stripe_proxy.LOSE)
    [intent] = stripe_ledger.payment_intents(order.id)
    assert (attempt.status, attempt.stripe_intent_id) == ("unknown", intent["id"])
    assert intent["status"] == "succeeded"

    payment = create(order)

    assert (payment.attempt_id, payment.stripe_id) == (attempt.id, intent["id"])
    assert len(stripe_ledger.payment_intents(order.id)) == 1
    assert len(stripe_proxy.requests(*INTENTS)) == 1
    assert len(stripe_proxy.requests("POST", CONFIRM)) == 1  # the lost one only
    assert [r.status for r in stripe_proxy.requests("GET", INTENT)] == [200]


def test_a_charge_whose_answer_was_lost_is_refunded_when_the_order_is_cancelled(
    stripe_ledger, stripe_proxy
):
    order = order_replica()
    attempt = attempt_left_open(order, stripe_proxy, ("POST", CONFIRM), stripe_proxy.LOSE)
    assert len(stripe_ledger.succeeded(order.id)) == 1  # the buyer's money was taken
    assert attempt.status == "unknown"

    assert deliver(cancelled_event(order)) is Outcome.APPLIED
    assert services.payments_reconcile() == 1

    assert OrderReplica.objects.get(id=order.id).status == "cancelled"
    attempt.refresh_from_db()
    assert attempt.status == "succeeded"
    refund = Refund.objects.get(payment__order_id=order.id)
    assert [r["id"] for r in stripe_ledger.refunds(refund.payment.stripe_id)] == [refund.stripe_id]
    # Settled by looking the intent up: nothing was created or confirmed again.
    assert len(stripe_ledger.payment_intents(order.id)) == 1
    assert len(stripe_proxy.requests(*INTENTS)) == 1
    assert len(stripe_proxy.requests("POST", CONFIRM)) == 1


def test_settling_an_attempt_stripe_never_saw_charges_nothing(stripe_ledger, stripe_proxy):
    # Its create request never reached Stripe (an outage): no intent id, none to find.
    order = order_replica()
    attempt = attempt_left_open(order, stripe_proxy, INTENTS, stripe_proxy.REFUSE)
    assert attempt.status == "unknown"
    intents_before = len(stripe_ledger._list("payment_intents"))

    assert deliver(cancelled_event(order)) is Outcome.APPLIED
    assert services.payments_reconcile() == 0

    assert len(stripe_ledger._list("payment_intents")) == intents_before
    assert stripe_ledger.payment_intents(order.id) == []
    attempt.refresh_from_db()
    assert (attempt.status, attempt.stripe_intent_id) == ("declined", "")
    assert attempt.error == services.NEVER_SENT
    assert len(stripe_proxy.requests(*INTENTS)) == 1  # the refused one, nothing since
    assert stripe_proxy.requests("POST", CONFIRM) == []
    assert [r.status for r in stripe_proxy.requests("GET", SEARCH)] == [200]
    assert Payment.objects.count() == 0
    assert Refund.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_an_attempt_created_but_never_confirmed_is_not_charged(stripe_ledger, stripe_proxy):
    # The create's answer was lost (no id stored); the intent is found by the attempt's
    # metadata, unconfirmed, and cancelled, so that nobody can confirm it later.
    order = order_replica()
    attempt = attempt_left_open(order, stripe_proxy, INTENTS, stripe_proxy.LOSE)
    [intent] = stripe_ledger.payment_intents(order.id)
    assert (attempt.stripe_intent_id, intent["status"]) == ("", "requires_confirmation")
    deliver(cancelled_event(order))

    services.payments_reconcile()

    attempt.refresh_from_db()
    assert (attempt.status, attempt.error) == ("declined", services.NEVER_CONFIRMED)
    assert attempt.stripe_intent_id == intent["id"]
    [after] = stripe_ledger.payment_intents(order.id)
    assert after["status"] == "canceled"
    assert len(stripe_proxy.requests("POST", "/v1/payment_intents/{id}/cancel")) == 1
    assert stripe_proxy.requests("POST", CONFIRM) == []
    assert Payment.objects.count() == Refund.objects.count() == 0


@pytest.mark.parametrize("lost", ["create", "confirm"])
def test_a_replayed_settle_never_charges_twice(stripe_ledger, stripe_proxy, lost):
    # An answer from Stripe is lost, the order is cancelled and settled; then everything
    # comes again: the cancel redelivered and republished, the worker's run repeated
    # (after Stripe has forgotten idempotency keys), the attempt and order settled by
    # hand. Whatever was charged is charged once and given back once.
    order = order_replica(price="19.99")
    request = INTENTS if lost == "create" else ("POST", CONFIRM)
    attempt = attempt_left_open(order, stripe_proxy, request, stripe_proxy.LOSE)
    event = cancelled_event(order)
    deliver(event)
    services.payments_reconcile()

    assert deliver(event) is Outcome.DUPLICATE
    assert deliver(cancelled_event(order)) is Outcome.APPLIED  # republished, new id
    assert services.attempt_settle(attempt_id=attempt.id) is None  # no longer open
    assert services.payments_reconcile(now=timezone.now() + timedelta(days=2)) == 0
    services.order_settle(order_id=order.id)

    charged = stripe_ledger.succeeded(order.id)
    # Lost after the create, the confirm was never sent: nothing was charged at all.
    assert len(charged) == (0 if lost == "create" else 1)
    for intent in charged:
        [refund] = stripe_ledger.refunds(intent["id"])
        assert (intent["amount"], refund["amount"]) == (1999, 1999)
    assert len(stripe_proxy.requests(*INTENTS)) == 1
    assert len(stripe_proxy.requests("POST", CONFIRM)) == len(charged)
    assert len(stripe_proxy.requests(*REFUNDS)) == len(charged)
    assert Payment.objects.count() == Refund.objects.count() == len(charged)


def test_processing_is_not_declined_and_settles_when_stripe_decides(
    signed_in_client, stripe_ledger, stripe_proxy
):
    # Stripe answers "processing" (the fake's cards never do, so the answer is rewritten
    # on the wire): the payment is pending, not declined, until Stripe says.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    processing = lambda intent: {**intent, "status": "processing"}  # noqa: E731
    for method, path in (INTENTS, ("POST", CONFIRM), ("GET", INTENT)):
        stripe_proxy.rewrite(method, path, processing)

    response = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )

    assert response.status_code == 503
    assert response.json() == {"errors": [{"message": services.PAYMENT_PENDING}]}
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.error) == ("unknown", "Stripe: processing")
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0

    services.payments_reconcile()  # the buyer's own for now: not looked at
    assert stripe_proxy.requests("GET", INTENT) == []
    later = timezone.now() + services.STALE_ATTEMPT
    services.payments_reconcile(now=later)  # still processing: still unknown
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error) == ("unknown", "Stripe: processing")
    assert len(stripe_proxy.requests("GET", INTENT)) == 1

    stripe_proxy.rewrite("GET", INTENT, None)  # Stripe has decided: succeeded
    services.payments_reconcile(now=timezone.now() + services.STALE_ATTEMPT)

    attempt.refresh_from_db()
    payment = Payment.objects.get()
    assert (attempt.status, payment.attempt_id) == ("succeeded", attempt.id)
    assert [intent["id"] for intent in stripe_ledger.succeeded(order.id)] == [payment.stripe_id]
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data["id"]) == ("payment.created", str(payment.id))

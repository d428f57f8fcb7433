"""Races against a live server: real threads, real connections, the database and localstripe.

Transactional tests commit, so the outbox rows are really sent (relay_pending, as the
worker's relay would); the `rabbitmq_vhost` fixture points it at a throw-away vhost.
"""

import json
import time

import pytest
import requests
from django.db import connections

from payments import services
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund, StripeEvent
from shared_lib.events.outbox import relay_pending
from shared_lib.models import OutboxEvent
from shared_lib.testing.api import one_winner
from shared_lib.testing.events import deliver
from shared_lib.testing.live import race
from tests.factories import GOOD_CARD, THREE_DS_CARD, cancelled_event, order_replica
from tests.stripe_http import WEBHOOK_SECRET, event, signature

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rabbitmq_vhost")]

# How long the cancellation waits behind the payment in each race (seconds): from "at
# once" (before the attempt) through "while Stripe charges" to "after the payment".
CANCEL_DELAYS = [0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.15]


def post_payment(race_server, order, token):
    return requests.post(
        f"{race_server}/api/payments",
        json={"orderId": str(order.id), "token": GOOD_CARD},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


@pytest.mark.parametrize("payers", [2, 10])
def test_simultaneous_payments_for_one_order_charge_once(
    race_server, make_token, stripe_ledger, payers
):
    order = order_replica(price="17.35")
    token = make_token(user_id=str(order.user_id))

    responses = race(payers, lambda _: post_payment(race_server, order, token))

    winner = one_winner(responses, 400, services.ORDER_PAID)
    payment = Payment.objects.get()
    assert winner == {"id": str(payment.id)}
    assert (payment.order_id, payment.amount_cents) == (order.id, 1735)
    assert list(PaymentAttempt.objects.values_list("status", flat=True)) == ["succeeded"]
    # The losers never reached Stripe: one PaymentIntent for this order, and it succeeded.
    [intent] = stripe_ledger.payment_intents(order.id)
    assert (intent["id"], intent["status"], intent["amount"]) == (
        payment.stripe_id,
        "succeeded",
        1735,
    )
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data) == (
        "payment.created",
        {"id": str(payment.id), "orderId": str(order.id), "stripeId": payment.stripe_id},
    )
    assert relay_pending() == (1, False)  # sent as the worker's relay would, to the test vhost


def test_a_double_submit_charges_once(race_server, make_token, stripe_ledger):
    order = order_replica()
    token = make_token(user_id=str(order.user_id))

    first = post_payment(race_server, order, token)
    second = post_payment(race_server, order, token)

    assert first.status_code == 201
    assert second.status_code == 400
    assert second.json() == {"errors": [{"message": services.ORDER_PAID}]}
    assert str(Payment.objects.get().id) == first.json()["id"]
    assert PaymentAttempt.objects.count() == 1
    assert len(stripe_ledger.payment_intents(order.id)) == 1
    assert OutboxEvent.objects.filter(subject="payment.created").count() == 1


def test_a_payment_racing_the_orders_cancellation_never_keeps_the_money(
    race_server, make_token, stripe_ledger
):
    # Whoever wins, the buyer of a cancelled order ends up not paying: either nothing
    # was charged, or the one charge was refunded exactly once.
    orders = [order_replica() for _ in CANCEL_DELAYS]

    def cancel(order, delay):
        time.sleep(delay)
        try:
            deliver(cancelled_event(order))
        finally:
            connections.close_all()

    for order, delay in zip(orders, CANCEL_DELAYS, strict=True):
        token = make_token(user_id=str(order.user_id))
        payment, _ = race(
            2,
            lambda index, order=order, token=token, delay=delay: (
                post_payment(race_server, order, token) if index == 0 else cancel(order, delay)
            ),
        )

        assert payment.status_code in (201, 400), payment.content
        if payment.status_code == 400:
            assert payment.json() == {"errors": [{"message": services.ORDER_CANCELLED}]}
        else:
            assert Payment.objects.filter(order=order).exists()
        assert OrderReplica.objects.get(id=order.id).status == "cancelled"
        charged = stripe_ledger.succeeded(order.id)
        payments = list(Payment.objects.filter(order=order))
        assert [p.stripe_id for p in payments] == [i["id"] for i in charged]
        assert Refund.objects.filter(payment__order=order).count() == len(payments)
        for intent in charged:
            assert len(stripe_ledger.refunds(intent["id"])) == 1


def test_webhook_deliveries_and_the_buyers_checks_racing_record_one_payment(
    race_server, make_token, stripe_ledger, settings
):
    # Stripe delivers the same event twice at once while the buyer's page polls: every
    # path tries to record the one charge, and it is recorded once.
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    order = order_replica(price="44.10")
    token = make_token(user_id=str(order.user_id))
    headers = {"Authorization": f"Bearer {token}"}
    started = requests.post(
        f"{race_server}/api/payments",
        json={"orderId": str(order.id), "token": THREE_DS_CARD},
        headers=headers,
        timeout=60,
    )
    assert started.status_code == 202
    payment_id = started.json()["id"]
    stripe_ledger.authenticate(started.json()["clientSecret"], success=True)
    [intent] = stripe_ledger.payment_intents(order.id)
    raw = json.dumps(event("payment_intent.succeeded", intent)).encode()
    spans = []

    def act(i):
        begun = time.monotonic()
        if i % 2:
            response = requests.post(
                f"{race_server}/api/payments/webhooks/stripe",
                data=raw,
                headers={"Content-Type": "application/json", "Stripe-Signature": signature(raw)},
                timeout=60,
            )
        else:
            response = requests.get(
                f"{race_server}/api/payments/{payment_id}", headers=headers, timeout=60
            )
        spans.append((begun, time.monotonic()))
        return response

    responses = race(10, act)

    # The race happened: some requests were in flight at the same time.
    assert max(begun for begun, _ in spans) < min(ended for _, ended in spans)
    assert [r.status_code for r in responses] == [200] * 10
    assert {r.json()["status"] for r in responses[::2]} <= {"processing", "succeeded"}
    assert [r.json() for r in responses[1::2]] == [{"received": True}] * 5
    payment = Payment.objects.get()
    assert (str(payment.id), payment.stripe_id) == (payment_id, intent["id"])
    assert OutboxEvent.objects.filter(subject="payment.created").count() == 1
    assert StripeEvent.objects.count() == 1
    assert Refund.objects.count() == 0

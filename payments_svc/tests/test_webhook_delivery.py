"""The Stripe fake's own webhooks, signed by it and sent over HTTP to a live payments
server: the purchase completes with no GET and no worker run."""

import time

import pytest
import requests

from payments import gateway
from payments.models import Payment, PaymentAttempt, StripeEvent
from shared_lib.models import OutboxEvent
from tests.factories import THREE_DS_CARD, order_replica
from tests.stripe_http import WEBHOOK_SECRET, StripeLedger
from ticketing_devtools.localstripe import running

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hooked_stripe(race_server, settings, tmp_path):
    """A fake of this test's own that sends its webhooks to the live server."""
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    with running(
        tmp_path / "stripe.pickle",
        webhook_url=f"{race_server}/api/payments/webhooks/stripe",
        webhook_secret=WEBHOOK_SECRET,
    ) as base:
        settings.STRIPE_API_BASE = base
        gateway._client.cache_clear()
        yield StripeLedger(base)
    gateway._client.cache_clear()


def wait_for(condition, within=15.0):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the webhook never came"
        time.sleep(0.1)


def challenged(race_server, make_token):
    """A payment waiting for its cardholder, made over HTTP: its 202 answer."""
    order = order_replica(price="18.00")
    started = requests.post(
        f"{race_server}/api/payments",
        json={"orderId": str(order.id), "token": THREE_DS_CARD},
        headers={"Authorization": f"Bearer {make_token(user_id=str(order.user_id))}"},
        timeout=30,
    )
    assert started.status_code == 202
    return started


def test_a_passed_challenge_completes_by_the_webhook_alone(race_server, make_token, hooked_stripe):
    started = challenged(race_server, make_token)

    hooked_stripe.authenticate(started.json()["clientSecret"], success=True)

    wait_for(lambda: Payment.objects.exists())
    payment = Payment.objects.get()
    assert str(payment.id) == started.json()["id"]
    assert PaymentAttempt.objects.get().status == "succeeded"
    assert OutboxEvent.objects.filter(subject="payment.created").count() == 1
    assert "payment_intent.succeeded" in StripeEvent.objects.values_list("type", flat=True)


def test_a_refused_challenge_fails_by_the_webhook_alone(race_server, make_token, hooked_stripe):
    started = challenged(race_server, make_token)

    hooked_stripe.authenticate(started.json()["clientSecret"], success=False)

    wait_for(lambda: PaymentAttempt.objects.filter(status="declined").exists())
    assert list(StripeEvent.objects.values_list("type", flat=True)) == [
        "payment_intent.payment_failed"
    ]
    assert Payment.objects.count() == 0

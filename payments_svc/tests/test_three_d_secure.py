"""Cards that ask their holder to authenticate (3-D Secure), and GET /api/payments/<id>.

The cardholder's side of the challenge is played as the Stripe.js stand-in plays it in a
browser (StripeLedger.authenticate: the client secret alone, straight to the fake).
"""

import uuid
from typing import Any, NamedTuple

import pytest
from django.utils import timezone

from payments import services
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.errors import NOT_AUTHORIZED, NOT_FOUND
from shared_lib.events.consumer import Outcome
from shared_lib.models import OutboxEvent
from shared_lib.testing.api import errors
from shared_lib.testing.events import deliver
from tests.factories import GOOD_CARD, THREE_DS_CARD, cancelled_event, order_replica

pytestmark = pytest.mark.django_db

PAYMENTS = "/api/payments"
AUTHENTICATION_FAILED = "The provided PaymentMethod has failed authentication."


def pay(client, order, token=THREE_DS_CARD):
    return client.post(PAYMENTS, {"orderId": str(order.id), "token": token}, format="json")


def check(client, payment_id):
    return client.get(f"{PAYMENTS}/{payment_id}")


class Challenge(NamedTuple):
    buyer: Any  # the buyer's signed-in API client
    order: OrderReplica
    body: dict[str, Any]  # the 202's


@pytest.fixture
def challenge(signed_in_client, stripe_ledger) -> Challenge:
    """A buyer's order whose card now waits for its holder at the bank's challenge."""
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="31.40")
    response = pay(buyer, order)
    assert response.status_code == 202
    return Challenge(buyer, order, response.json())


def assert_challenge_still_open() -> None:
    """The attempt still waits for its holder, and nothing has been paid."""
    assert PaymentAttempt.objects.get().status == "requires_action"
    assert Payment.objects.count() == 0


def created_events():
    return list(
        OutboxEvent.objects.filter(subject="payment.created").values_list("data", flat=True)
    )


def test_a_card_asking_for_authentication_is_202_with_the_client_secret(stripe_ledger, challenge):
    _, order, body = challenge

    attempt = PaymentAttempt.objects.get()
    [intent] = stripe_ledger.payment_intents(order.id)
    assert body == {
        "id": str(attempt.id),
        "status": "requires_action",
        "clientSecret": intent["client_secret"],
    }
    assert intent["status"] == "requires_action"
    assert (intent["amount"], intent["metadata"]["attemptId"]) == (3140, str(attempt.id))
    assert (attempt.status, attempt.stripe_intent_id, attempt.error) == (
        "requires_action",
        intent["id"],
        "",
    )
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    order.refresh_from_db()
    assert order.status == "created"


def test_a_second_payment_while_the_challenge_is_open_is_400_and_charges_nothing(
    stripe_ledger, challenge
):
    buyer, order, _ = challenge

    again = pay(buyer, order, token=GOOD_CARD)

    assert again.status_code == 400
    assert again.json() == errors((services.AWAITING_AUTHENTICATION,))
    # The open challenge was looked at (still open), and no second intent was made.
    assert [i["status"] for i in stripe_ledger.payment_intents(order.id)] == ["requires_action"]
    assert_challenge_still_open()


def test_the_challenge_passed_then_get_completes_the_purchase_once(stripe_ledger, challenge):
    buyer, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=True)

    first = check(buyer, body["id"])
    second = check(buyer, body["id"])

    assert first.status_code == second.status_code == 200
    assert (
        first.json()
        == second.json()
        == {
            "id": body["id"],
            "orderId": str(order.id),
            "status": "succeeded",
        }
    )
    payment = Payment.objects.get()
    [intent] = stripe_ledger.succeeded(order.id)
    # The payment's id is the id the 202 gave: one id from the challenge to the receipt.
    assert (str(payment.id), payment.stripe_id, payment.amount_cents) == (
        body["id"],
        intent["id"],
        3140,
    )
    assert created_events() == [
        {"id": body["id"], "orderId": str(order.id), "stripeId": intent["id"]}
    ]
    assert PaymentAttempt.objects.get().status == "succeeded"
    assert Refund.objects.count() == 0


def test_a_get_while_the_challenge_is_open_says_so_and_changes_nothing(challenge):
    buyer, order, body = challenge

    response = check(buyer, body["id"])

    assert response.status_code == 200
    # The client secret again, so a page reloaded (or a buyer who never got the 202) can
    # run the challenge.
    assert response.json() == {
        "id": body["id"],
        "orderId": str(order.id),
        "status": "requires_action",
        "clientSecret": body["clientSecret"],
    }
    assert_challenge_still_open()


def test_the_challenge_refused_fails_the_payment_and_another_card_pays(stripe_ledger, challenge):
    buyer, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=False)

    failed = check(buyer, body["id"])
    paid = pay(buyer, order, token=GOOD_CARD)

    assert failed.json() == {"id": body["id"], "orderId": str(order.id), "status": "failed"}
    first = PaymentAttempt.objects.get(id=body["id"])
    assert (first.status, first.error) == ("declined", AUTHENTICATION_FAILED)
    assert paid.status_code == 201
    payment = Payment.objects.get()
    assert paid.json() == {"id": str(payment.id)}
    assert payment.attempt_id != first.id
    # The refused intent is cancelled before the attempt counts as declined: its client
    # secret is in the buyer's browser, which could otherwise confirm it after card B.
    assert [i["status"] for i in stripe_ledger.payment_intents(order.id)] == [
        "canceled",
        "succeeded",
    ]


@pytest.mark.parametrize("passed", [False, True])
def test_a_challenge_nobody_reported_is_learned_by_the_next_payment(
    stripe_ledger, passed, challenge
):
    # No webhook and no GET: the buyer's next payment asks Stripe about the open one.
    # Refused, it no longer blocks another card; passed, the order is paid by it, once,
    # and the new card never reaches Stripe.
    buyer, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=passed)

    again = pay(buyer, order, token=GOOD_CARD)

    first = PaymentAttempt.objects.get(id=body["id"])
    payment = Payment.objects.get()
    if passed:
        assert (again.status_code, again.json()) == (400, errors((services.ORDER_PAID,)))
        assert (first.status, str(payment.id)) == ("succeeded", body["id"])
    else:
        assert (again.status_code, again.json()) == (201, {"id": str(payment.id)})
        assert (first.status, payment.attempt.token) == ("declined", GOOD_CARD)
    assert len(stripe_ledger.payment_intents(order.id)) == (1 if passed else 2)
    assert len(created_events()) == 1


def test_the_order_cancelled_during_the_challenge_cancels_the_intent(
    stripe_ledger, django_capture_on_commit_callbacks, challenge
):
    buyer, order, body = challenge

    # The handler's commit settles the order's open attempts at once.
    with django_capture_on_commit_callbacks(execute=True) as settled:
        assert deliver(cancelled_event(order)) is Outcome.APPLIED
    assert len(settled) == 1

    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["status"] == "canceled"
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.error) == ("declined", services.INTENT_CANCELLED)
    assert Payment.objects.count() == Refund.objects.count() == 0
    # The challenge can no longer charge the card.
    response = check(buyer, body["id"])
    assert response.json()["status"] == "failed"


def test_a_challenge_passed_as_the_order_expired_is_refunded(
    stripe_ledger, django_capture_on_commit_callbacks, challenge
):
    buyer, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=True)

    with django_capture_on_commit_callbacks(execute=True):
        assert deliver(cancelled_event(order)) is Outcome.APPLIED

    order.refresh_from_db()
    assert order.status == OrderReplica.Status.CANCELLED
    payment = Payment.objects.get()
    refund = Refund.objects.get()
    assert (refund.payment_id, refund.status, refund.amount_cents) == (
        payment.id,
        "succeeded",
        3140,
    )
    [given_back] = stripe_ledger.refunds(payment.stripe_id)
    assert (given_back["id"], given_back["amount"]) == (refund.stripe_id, 3140)
    assert check(buyer, body["id"]).json()["status"] == "succeeded"


def test_get_is_for_the_payer_only(signed_in_client, api_client, challenge):
    buyer, _, body = challenge
    stranger = signed_in_client()

    assert check(stranger, body["id"]).json() == errors((NOT_FOUND,))
    assert check(stranger, body["id"]).status_code == 404
    assert check(buyer, uuid.uuid4()).status_code == 404
    assert check(buyer, "not-a-uuid").status_code == 404
    anonymous = check(api_client, body["id"])
    assert (anonymous.status_code, anonymous.json()) == (401, errors((NOT_AUTHORIZED,)))
    # Nobody but the buyer learned anything, and nothing moved.
    assert_challenge_still_open()


def test_get_reports_a_payment_made_at_once(signed_in_client):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    paid = pay(buyer, order, token=GOOD_CARD)

    response = check(buyer, paid.json()["id"])

    assert response.status_code == 200
    assert response.json() == {
        "id": paid.json()["id"],
        "orderId": str(order.id),
        "status": "succeeded",
    }


def test_the_worker_completes_a_challenge_nobody_reported(stripe_ledger, challenge):
    # No webhook, and the buyer closed the page: the periodic run asks Stripe once the
    # attempt has waited STALE_ATTEMPT, and records the charge.
    _, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=True)

    services.payments_reconcile()  # too soon: the buyer's page is still its to settle
    assert Payment.objects.count() == 0
    services.payments_reconcile(now=timezone.now() + services.STALE_ATTEMPT)

    payment = Payment.objects.get()
    assert str(payment.id) == body["id"]
    assert created_events() == [
        {"id": body["id"], "orderId": str(order.id), "stripeId": payment.stripe_id}
    ]


def test_the_worker_leaves_a_challenge_still_open_waiting(stripe_ledger, stripe_proxy, challenge):
    buyer, _, body = challenge
    sent_before = len(stripe_proxy.recorded)

    services.payments_reconcile(now=timezone.now() + services.STALE_ATTEMPT)

    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.error) == ("requires_action", "")
    # One look at the intent, nothing sent.
    assert [r.method for r in stripe_proxy.recorded[sent_before:]] == ["GET"]
    assert Payment.objects.count() == 0
    # Still open to the buyer's challenge, which then pays.
    stripe_ledger.authenticate(body["clientSecret"], success=True)
    assert check(buyer, body["id"]).json()["status"] == "succeeded"


def test_a_stripe_outage_while_checking_keeps_the_challenge_open(stripe_proxy, challenge):
    buyer, order, body = challenge
    stripe_proxy.fail("GET", "/v1/payment_intents/{id}", "refuse")

    response = check(buyer, body["id"])

    assert response.json() == {
        "id": body["id"],
        "orderId": str(order.id),
        "status": "requires_action",
    }
    assert_challenge_still_open()
    again = pay(buyer, order, token=GOOD_CARD)
    assert again.json() == errors((services.AWAITING_AUTHENTICATION,))


def test_a_refused_challenge_cannot_be_confirmed_later_from_the_browser(stripe_ledger, challenge):
    # The client secret stays in the buyer's browser: once the attempt counts as failed,
    # confirming its intent again with another card (a second tab, a retry button) must
    # charge nothing, here or at Stripe.
    buyer, order, body = challenge
    stripe_ledger.authenticate(body["clientSecret"], success=False)
    assert check(buyer, body["id"]).json()["status"] == "failed"
    assert pay(buyer, order, token=GOOD_CARD).status_code == 201

    status = stripe_ledger.reconfirm(body["clientSecret"].split("_secret_")[0], GOOD_CARD)

    assert status == 400
    assert [i["status"] for i in stripe_ledger.payment_intents(order.id)] == [
        "canceled",
        "succeeded",
    ]

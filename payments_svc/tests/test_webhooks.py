"""POST /api/payments/webhooks/stripe: Stripe's signed events, each applied once.

Events are built from what the fake really holds (the intent or charge as it is now) and
signed here as Stripe signs them (HMAC-SHA256 of "<timestamp>.<body>"), independently of
the SDK that verifies them.
"""

import json
import time

import pytest

from payments import gateway, services
from payments.models import Payment, PaymentAttempt, Refund, StripeEvent
from shared_lib.errors import BODY_TOO_LARGE, METHOD_NOT_ALLOWED
from shared_lib.models import OutboxEvent
from shared_lib.testing.api import errors
from tests.factories import GOOD_CARD, THREE_DS_CARD, order_replica
from tests.stripe_http import WEBHOOK_SECRET as SECRET
from tests.stripe_http import event, signature

pytestmark = pytest.mark.django_db

WEBHOOK = "/api/payments/webhooks/stripe"


@pytest.fixture(autouse=True)
def _webhook_secret(settings):
    settings.STRIPE_WEBHOOK_SECRET = SECRET


def send(client, body, *, header: str | None = "sign", content_type="application/json"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {}
    if header == "sign":
        headers["HTTP_STRIPE_SIGNATURE"] = signature(raw)
    elif header is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = header
    return client.generic("POST", WEBHOOK, raw, content_type=content_type, **headers)


def pay(buyer, order, token):
    return buyer.post("/api/payments", {"orderId": str(order.id), "token": token}, format="json")


def waiting_attempt(buyer):
    """An order whose 3-D Secure card waits for its holder: (order, 202 body)."""
    order = order_replica(user_id=buyer.user_id, price="25.00")
    response = pay(buyer, order, THREE_DS_CARD)
    assert response.status_code == 202
    return order, response.json()


def answered(buyer, ledger, *, success):
    """A waiting payment whose cardholder has now passed (or failed) the challenge at
    Stripe, unknown to payments yet: (order, 202 body, the intent as Stripe holds it)."""
    order, body = waiting_attempt(buyer)
    ledger.authenticate(body["clientSecret"], success=success)
    [intent] = ledger.payment_intents(order.id)
    return order, body, intent


def assert_unchanged(attempt_status="requires_action"):
    assert list(PaymentAttempt.objects.values_list("status", flat=True)) == [attempt_status]
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert StripeEvent.objects.count() == 0


# --- who may send ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "t=1,v1=00",
        "garbage",
        # Signed with another secret.
        "other-secret",
        # Signed with our secret six minutes ago: a captured body replayed.
        "stale",
    ],
)
def test_an_unsigned_or_wrongly_signed_event_is_400_and_applies_nothing(
    api_client, signed_in_client, stripe_ledger, header
):
    buyer = signed_in_client()
    _order, _body, intent = answered(buyer, stripe_ledger, success=True)
    raw = json.dumps(event("payment_intent.succeeded", intent)).encode()
    headers = {
        "other-secret": signature(raw, secret="whsec_other"),
        "stale": signature(raw, at=int(time.time()) - 360),
    }

    response = send(api_client, raw, header=headers.get(header, header))

    assert response.status_code == 400
    assert response.json() == errors((gateway.WEBHOOK_SIGNATURE_INVALID,))
    assert_unchanged()


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"\xff\xfe",
        b"[]",
        b'"evt"',
        b"{}",
        b'{"id": "evt_1", "type": "x"}',
        b'{"id": 1, "type": "x", "data": {"object": {}}}',
        b'{"id": "evt_1", "type": "x", "data": {"object": []}}',
    ],
)
def test_a_signed_body_that_is_no_event_is_400(api_client, raw):
    response = send(api_client, raw)

    assert response.status_code == 400
    assert response.json() == errors((gateway.WEBHOOK_NOT_AN_EVENT,))
    assert StripeEvent.objects.count() == 0


def test_without_a_webhook_secret_every_event_is_refused(api_client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    raw = json.dumps(event("payment_intent.succeeded", {"id": "pi_1"})).encode()

    response = send(api_client, raw, header=signature(raw, secret=""))

    assert response.status_code == 400
    assert response.json() == errors((gateway.WEBHOOK_NOT_CONFIGURED,))


def test_a_form_body_is_415(api_client):
    response = send(api_client, b"id=evt_1", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert StripeEvent.objects.count() == 0


# --- what events do -------------------------------------------------------------------


def test_payment_intent_succeeded_completes_a_waiting_payment_once(
    api_client, signed_in_client, stripe_ledger
):
    buyer = signed_in_client()
    order, body, intent = answered(buyer, stripe_ledger, success=True)
    succeeded = event("payment_intent.succeeded", intent)

    first = send(api_client, succeeded)
    again = send(api_client, succeeded)  # Stripe delivers at least once

    assert (first.status_code, first.json()) == (200, {"received": True})
    assert (again.status_code, again.json()) == (200, {"received": True})
    payment = Payment.objects.get()
    assert (str(payment.id), payment.stripe_id, payment.amount_cents) == (
        body["id"],
        intent["id"],
        2500,
    )
    assert list(OutboxEvent.objects.values_list("subject", "data")) == [
        (
            "payment.created",
            {"id": body["id"], "orderId": str(order.id), "stripeId": intent["id"]},
        )
    ]
    assert list(StripeEvent.objects.values_list("id", "type")) == [
        (succeeded["id"], "payment_intent.succeeded")
    ]
    # The buyer's GET afterwards finds it done and changes nothing.
    check = buyer.get(f"/api/payments/{body['id']}")
    assert check.json()["status"] == "succeeded"
    assert Payment.objects.count() == OutboxEvent.objects.count() == 1


def test_a_succeeded_event_after_the_buyer_was_answered_changes_nothing(
    api_client, signed_in_client, stripe_ledger
):
    # The synchronous path recorded the payment; Stripe's event about it comes after.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    paid = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )
    assert paid.status_code == 201
    [intent] = stripe_ledger.payment_intents(order.id)

    response = send(api_client, event("payment_intent.succeeded", intent))

    assert response.status_code == 200
    assert Payment.objects.count() == OutboxEvent.objects.count() == 1
    assert Refund.objects.count() == 0


def test_payment_failed_makes_the_order_payable_again(
    api_client, signed_in_client, stripe_ledger, django_capture_on_commit_callbacks
):
    buyer = signed_in_client()
    order, _body, intent = answered(buyer, stripe_ledger, success=False)

    # Applied once the event's row commits: Stripe is asked (and the intent cancelled).
    with django_capture_on_commit_callbacks(execute=True) as after_commit:
        response = send(api_client, event("payment_intent.payment_failed", intent))

    assert response.status_code == 200
    assert len(after_commit) == 1
    assert stripe_ledger.payment_intents(order.id)[0]["status"] == "canceled"
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.error) == (
        "declined",
        "The provided PaymentMethod has failed authentication.",
    )
    paid = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )
    assert paid.status_code == 201


def test_a_late_payment_failed_never_undoes_a_success(api_client, signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order, body = waiting_attempt(buyer)
    before = stripe_ledger.payment_intents(order.id)[0]  # requires_action, as first sent
    stripe_ledger.authenticate(body["clientSecret"], success=True)
    [intent] = stripe_ledger.payment_intents(order.id)
    stale = {**before, "status": "requires_payment_method"}

    assert send(api_client, event("payment_intent.succeeded", intent)).status_code == 200
    assert send(api_client, event("payment_intent.payment_failed", stale)).status_code == 200

    assert PaymentAttempt.objects.get().status == "succeeded"
    assert str(Payment.objects.get().id) == body["id"]


def test_a_payment_failed_first_then_succeeded_ends_paid(
    api_client, signed_in_client, stripe_ledger
):
    # Events may arrive in any order: the success is what happened last at Stripe.
    buyer = signed_in_client()
    order, body = waiting_attempt(buyer)
    before = stripe_ledger.payment_intents(order.id)[0]
    stripe_ledger.authenticate(body["clientSecret"], success=True)
    [intent] = stripe_ledger.payment_intents(order.id)

    send(api_client, event("payment_intent.payment_failed", {**before, "status": "canceled"}))
    send(api_client, event("payment_intent.succeeded", intent))

    assert PaymentAttempt.objects.get().status == "succeeded"
    assert Payment.objects.count() == OutboxEvent.objects.count() == 1


def test_an_event_for_an_intent_of_no_order_here_is_acknowledged_and_ignored(api_client):
    intent = {"id": "pi_elsewhere", "object": "payment_intent", "status": "succeeded"}

    response = send(api_client, event("payment_intent.succeeded", intent))

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert Payment.objects.count() == PaymentAttempt.objects.count() == 0


def test_an_event_type_payments_does_not_use_is_acknowledged(api_client):
    response = send(api_client, event("customer.created", {"id": "cus_1"}))

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert list(StripeEvent.objects.values_list("type", flat=True)) == ["customer.created"]


def test_charge_refunded_confirms_a_refund_still_owed(
    api_client, signed_in_client, stripe_ledger, stripe_proxy
):
    # The refund was made at Stripe but its answer was lost: the event settles it.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="12.00")
    paid = buyer.post(
        "/api/payments", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )
    payment = Payment.objects.get(id=paid.json()["id"])
    refund = Refund.objects.create(
        attempt=payment.attempt,
        payment=payment,
        order=order,
        payment_intent_id=payment.stripe_id,
        amount_cents=1200,
    )
    stripe_id = stripe_ledger.refund_by_hand(payment.stripe_id)
    charge = {
        "id": "ch_1",
        "object": "charge",
        "payment_intent": payment.stripe_id,
        "refunded": True,
        "amount_refunded": 1200,
        "refunds": {"data": [{"id": stripe_id}]},
    }

    response = send(api_client, event("charge.refunded", charge))

    assert response.status_code == 200
    refund.refresh_from_db()
    assert (refund.status, refund.stripe_id, refund.tries) == ("succeeded", stripe_id, 0)
    # Nothing more goes to Stripe for it.
    assert services.payments_reconcile() == 0
    assert stripe_proxy.requests("POST", "/v1/refunds") == []


def test_a_body_over_the_limit_is_413_before_any_verification(api_client, settings):
    pad = "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = json.dumps(event("customer.created", {"id": "cus_1", "pad": pad})).encode()

    response = send(api_client, raw)

    assert response.status_code == 413
    assert response.json() == errors((BODY_TOO_LARGE,))
    assert StripeEvent.objects.count() == 0


def test_get_is_not_allowed_on_the_webhook(api_client):
    response = api_client.get(WEBHOOK)

    assert response.status_code == 405
    assert response.json() == errors((METHOD_NOT_ALLOWED,))


@pytest.mark.parametrize(
    "obj",
    [
        {"id": 123, "status": "succeeded"},
        {"status": "succeeded", "metadata": {"attemptId": "ATTEMPT"}},
        {"id": "pi_x", "status": "succeeded", "metadata": "attemptId"},
        {"id": "pi_x", "status": "succeeded", "metadata": ["attemptId"]},
        {"id": "pi_x", "status": ["succeeded"], "metadata": {"attemptId": "ATTEMPT"}},
        {"id": "pi_x", "metadata": {"attemptId": "not-a-uuid"}},
        {"id": "pi_x", "last_payment_error": "boom", "metadata": {"attemptId": "ATTEMPT"}},
    ],
    ids=str,
)
@pytest.mark.parametrize("kind", ["payment_intent.succeeded", "payment_intent.payment_failed"])
def test_a_signed_intent_event_of_odd_shape_is_acknowledged_and_changes_nothing(
    api_client, signed_in_client, stripe_ledger, obj, kind
):
    # Signed (so not a forgery) but not what Stripe sends: never a 5xx that Stripe would
    # retry for days, never a payment, never another intent id written on an attempt.
    buyer = signed_in_client()
    _, body = waiting_attempt(buyer)
    attempt = PaymentAttempt.objects.get()
    metadata = obj.get("metadata")
    if isinstance(metadata, dict) and metadata.get("attemptId") == "ATTEMPT":
        obj = {**obj, "metadata": {"attemptId": body["id"]}}

    response = send(api_client, event(kind, obj))

    assert (response.status_code, response.json()) == (200, {"received": True})
    assert (PaymentAttempt.objects.get().stripe_intent_id, Payment.objects.count()) == (
        attempt.stripe_intent_id,
        0,
    )


@pytest.mark.parametrize(
    "charge",
    [
        {"payment_intent": 5, "refunded": True},
        {"payment_intent": "PI", "refunded": "yes"},
        {"payment_intent": "PI", "refunded": True, "refunds": {"data": ["re_1"]}},
        {"payment_intent": "PI", "refunded": True, "refunds": "re_1"},
    ],
    ids=str,
)
def test_a_signed_refund_event_of_odd_shape_is_acknowledged(api_client, signed_in_client, charge):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    payment = Payment.objects.get(id=pay(buyer, order, GOOD_CARD).json()["id"])
    Refund.objects.create(
        attempt=payment.attempt,
        payment=payment,
        order=order,
        payment_intent_id=payment.stripe_id,
        amount_cents=payment.amount_cents,
    )
    if charge["payment_intent"] == "PI":
        charge = {**charge, "payment_intent": payment.stripe_id}

    response = send(api_client, event("charge.refunded", charge))

    assert response.status_code == 200
    refund = Refund.objects.get()
    # Only a real "refunded": true settles it; an odd refunds list never breaks it.
    settled = charge["refunded"] is True and charge["payment_intent"] == payment.stripe_id
    assert refund.status == ("succeeded" if settled else "pending")
    assert refund.stripe_id is None


def test_an_event_naming_an_attempt_of_another_intent_is_ignored(
    api_client, signed_in_client, stripe_ledger
):
    # The metadata fallback finds only attempts with no intent stored: an event for some
    # other intent never replaces the one an attempt charges.
    buyer = signed_in_client()
    _, body = waiting_attempt(buyer)
    stored = PaymentAttempt.objects.get().stripe_intent_id
    other = {"id": "pi_other", "status": "succeeded", "metadata": {"attemptId": body["id"]}}

    response = send(api_client, event("payment_intent.succeeded", other))

    assert response.status_code == 200
    assert PaymentAttempt.objects.get().stripe_intent_id == stored
    assert Payment.objects.count() == 0

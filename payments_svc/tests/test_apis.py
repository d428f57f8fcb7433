"""POST /api/payments over the test client, charging the session's localstripe over HTTP."""

import json
import uuid
from datetime import timedelta

import pytest

from payments import services
from payments.models import OrderReplica, Payment, PaymentAttempt, Refund
from shared_lib.auth import AUTH_CHALLENGE
from shared_lib.errors import (
    BODY_TOO_LARGE,
    MALFORMED_JSON,
    METHOD_NOT_ALLOWED,
    NOT_AUTHORIZED,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    UNSUPPORTED_MEDIA_TYPE,
)
from shared_lib.models import OutboxEvent
from shared_lib.testing.admin import assert_staff_views_every_model_read_only
from shared_lib.testing.api import (
    TOKEN_CARRIERS,
    assert_admin_sends_anonymous_to_sign_in,
    assert_docs_page,
    assert_ready_on_the_database_alone,
    assert_unknown_route_is_json_404,
    carry_token,
    errors,
)
from shared_lib.testing.events import deliver
from shared_lib.testing.tokens import ALICE, ATTACKS
from tests.factories import (
    DECLINED,
    DECLINED_CARD,
    GOOD_CARD,
    attempt_row,
    cancelled_event,
    order_replica,
)
from tests.stripe_http import unreachable_url

pytestmark = pytest.mark.django_db

PAYMENTS = "/api/payments"
INTENTS = ("POST", "/v1/payment_intents")
OPEN = timedelta(minutes=15)  # an order's payment window, well before it closes


def pay(client, order_id, token=GOOD_CARD, **fields):
    body = {"orderId": str(order_id), "token": token, **fields}
    return client.post(PAYMENTS, body, format="json")


def assert_nothing_charged(order, ledger, *, attempts=0):
    """No payment, no event, no charge at Stripe; `attempts` attempts recorded."""
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    assert PaymentAttempt.objects.filter(order_id=order.id).count() == attempts
    assert ledger.payment_intents(order.id) == []


def assert_refused(response, status, error, order, ledger):
    """`response` is `status` with the one `error` (message, field), and nothing was charged."""
    assert response.status_code == status
    assert response.json() == errors(error)
    assert_nothing_charged(order, ledger)


def assert_replica_unchanged(order):
    before = (order.status, order.version, order.price, order.expires_at)
    order.refresh_from_db()
    assert (order.status, order.version, order.price, order.expires_at) == before


# --- sign-in --------------------------------------------------------------------------


def test_pay_requires_sign_in(api_client, stripe_ledger):
    order = order_replica(user_id=ALICE)

    response = pay(api_client, order.id)

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))
    assert response["WWW-Authenticate"] == AUTH_CHALLENGE
    assert_nothing_charged(order, stripe_ledger)


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("carrier", TOKEN_CARRIERS)
def test_forged_tokens_cannot_pay(api_client, session_keys, stripe_ledger, attack, carrier):
    # The order belongs to the user the forged tokens name: accepting one would pay.
    order = order_replica(user_id=ALICE)
    carry_token(api_client, ATTACKS[attack](session_keys), carrier)

    response = pay(api_client, order.id)

    assert_refused(response, 401, (NOT_AUTHORIZED,), order, stripe_ledger)


def test_a_genuine_token_for_the_same_user_pays(api_client, make_token):
    # The control for the forged tokens above: the same order, a real token, paid.
    order = order_replica(user_id=ALICE)

    carry_token(api_client, make_token(user_id=ALICE), "bearer")

    response = pay(api_client, order.id)

    assert response.status_code == 201
    assert response.json() == {"id": str(Payment.objects.get(order=order).id)}


# --- orderId --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"orderId": None}, {"orderId": ""}], ids=str)
def test_pay_without_an_order_id(signed_in_client, stripe_ledger, body):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(PAYMENTS, {**body, "token": GOOD_CARD}, format="json")

    assert_refused(response, 400, (services.ORDER_ID_REQUIRED, "orderId"), order, stripe_ledger)


@pytest.mark.parametrize(
    "form",
    [
        lambda id: "not-an-id",
        lambda id: str(id)[:-1],
        lambda id: str(id) + "0",
        lambda id: id.hex,  # uuid.UUID() would take these; the API must not
        lambda id: f"{{{id}}}",
        lambda id: f"urn:uuid:{id}",
        lambda id: f" {id}",
        lambda id: f"{id} ",
        lambda id: f"{id}\n",
        lambda id: str(id).replace("-", "_"),
        lambda id: 123,
        lambda id: 1.5,
        lambda id: 0,
        lambda id: True,
        lambda id: False,
        lambda id: [str(id)],
        lambda id: {"id": str(id)},
        lambda id: id.int,
    ],
    ids=[
        "word",
        "short",
        "long",
        "bare-hex",
        "braces",
        "urn",
        "leading-space",
        "trailing-space",
        "trailing-newline",
        "underscores",
        "int",
        "float",
        "zero",
        "true",
        "false",
        "list",
        "object",
        "uuid-as-int",
    ],
)
def test_pay_with_a_malformed_order_id(signed_in_client, stripe_ledger, form):
    # Every form is built from the caller's own order id: a lenient parser would pay.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(PAYMENTS, {"orderId": form(order.id), "token": GOOD_CARD}, format="json")

    assert_refused(response, 400, (services.ORDER_ID_INVALID, "orderId"), order, stripe_ledger)


def test_pay_with_an_upper_case_order_id(signed_in_client):
    # The canonical dashed form in either case, as ids in paths (shared_lib.ids).
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, str(order.id).upper())

    assert response.status_code == 201
    assert Payment.objects.get().order_id == order.id


def test_an_order_id_check_comes_before_the_token_check(signed_in_client):
    buyer = signed_in_client()

    response = buyer.post(PAYMENTS, {"orderId": "nope", "token": "tok_visa"}, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.ORDER_ID_INVALID, "orderId"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (services.ORDER_ID_REQUIRED, "orderId")),
        ({"orderId": "nope", "token": 5}, (services.ORDER_ID_INVALID, "orderId")),
        ({"orderId": [], "token": None}, (services.ORDER_ID_INVALID, "orderId")),
        ("null", (services.ORDER_ID_REQUIRED, "orderId")),
        ('"pm_card_visa"', (services.ORDER_ID_REQUIRED, "orderId")),
    ],
    ids=str,
)
def test_one_input_error_at_a_time_the_order_id_first(signed_in_client, body, expected):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    if isinstance(body, str):
        response = buyer.post(PAYMENTS, body, content_type="application/json")
    else:
        response = buyer.post(PAYMENTS, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(expected)
    assert PaymentAttempt.objects.filter(order_id=order.id).count() == 0


def test_fields_the_client_does_not_set_are_ignored(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, amount=1, amountCents=1, userId=str(uuid.uuid4()))

    assert response.status_code == 201
    assert PaymentAttempt.objects.get().amount_cents == order.amount_cents


# --- 404 ------------------------------------------------------------------------------


def test_pay_for_an_unknown_order(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    mine = order_replica(user_id=buyer.user_id)
    unknown = uuid.uuid4()

    response = pay(buyer, unknown)

    assert_refused(response, 404, (NOT_FOUND,), mine, stripe_ledger)
    assert stripe_ledger.payment_intents(unknown) == []
    assert not OrderReplica.objects.filter(id=unknown).exists()


@pytest.mark.parametrize("token", [GOOD_CARD, "tok_visa", None, 5])
def test_pay_for_someone_elses_order(signed_in_client, stripe_ledger, token):
    # 404, whatever the token: the order's existence is checked before the input.
    owner = signed_in_client()
    order = order_replica(user_id=owner.user_id)
    stranger = signed_in_client()

    response = stranger.post(PAYMENTS, {"orderId": str(order.id), "token": token}, format="json")

    assert_refused(response, 404, (NOT_FOUND,), order, stripe_ledger)
    assert_replica_unchanged(order)


@pytest.mark.parametrize("token", ["tok_visa", None])
def test_an_unknown_order_is_404_even_with_a_bad_token(signed_in_client, token):
    response = signed_in_client().post(
        PAYMENTS, {"orderId": str(uuid.uuid4()), "token": token}, format="json"
    )

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))
    assert PaymentAttempt.objects.count() == 0


def test_someone_elses_cancelled_order_is_404_not_400(signed_in_client):
    owner = signed_in_client()
    order = order_replica(user_id=owner.user_id, status="cancelled")

    response = pay(signed_in_client(), order.id)

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


# --- token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"token": None},
        {"token": ""},
        {"token": "pm_"},
        {"token": "tok_"},
        {"token": "tok-visa"},
        {"token": "TOK_visa"},
        {"token": "pm"},
        {"token": "card_1234"},
        {"token": "src_1234"},
        {"token": "PM_card_visa"},
        {"token": "pm_card visa"},
        {"token": "pm_card-visa"},
        {"token": " pm_card_visa"},
        {"token": "pm_" + "a" * 251},
        {"token": 123},
        {"token": True},
        {"token": ["pm_card_visa"]},
        {"token": {"id": "pm_card_visa"}},
    ],
    ids=str,
)
def test_pay_with_an_invalid_token(signed_in_client, stripe_ledger, body):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(PAYMENTS, {"orderId": str(order.id), **body}, format="json")

    assert_refused(response, 400, (services.TOKEN_INVALID, "token"), order, stripe_ledger)
    assert_replica_unchanged(order)


def test_a_token_with_a_trailing_newline_is_invalid(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, token="pm_card_visa\n")

    assert_refused(response, 400, (services.TOKEN_INVALID, "token"), order, stripe_ledger)


def test_the_longest_token_is_accepted_as_input(signed_in_client):
    # 250 characters after "pm_" pass validation; Stripe then says no such method.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, token="pm_" + "a" * 250)

    assert response.status_code == 402
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.token) == ("declined", "pm_" + "a" * 250)
    assert Payment.objects.count() == 0


def test_an_invalid_token_is_reported_before_the_order_state(signed_in_client):
    # Order of checks: input valid (400 on the field) before state allows it.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, status="cancelled")

    response = pay(buyer, order.id, token="card_1234")

    assert response.status_code == 400
    assert response.json() == errors((services.TOKEN_INVALID, "token"))


# --- order state ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expires_in", "message"),
    [
        pytest.param("cancelled", OPEN, services.ORDER_CANCELLED, id="cancelled"),
        pytest.param(
            "cancelled",
            timedelta(minutes=-1),
            services.ORDER_CANCELLED,
            id="cancelled_that_also_expired",
        ),
        pytest.param("complete", OPEN, services.ORDER_PAID, id="complete"),
        # Still "created" here (its expiry event may be on the way), but the window closed.
        pytest.param("created", timedelta(seconds=-1), services.ORDER_EXPIRED, id="expired"),
        pytest.param(
            "complete", timedelta(minutes=-1), services.ORDER_PAID, id="complete_that_also_expired"
        ),
    ],
)
def test_pay_for_an_order_past_paying(signed_in_client, stripe_ledger, status, expires_in, message):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, status=status, expires_in=expires_in)

    response = pay(buyer, order.id)

    assert_refused(response, 400, (message,), order, stripe_ledger)
    assert_replica_unchanged(order)


@pytest.mark.parametrize("price", ["0.49", "0.01"])
def test_pay_for_an_order_below_the_smallest_charge(signed_in_client, stripe_ledger, price):
    # A ticket listed before tickets_svc refused such prices: Stripe would refuse to
    # charge it, so it is not asked, and the buyer is told why.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price=price)

    response = pay(buyer, order.id)

    assert_refused(response, 400, (services.ORDER_TOO_SMALL,), order, stripe_ledger)
    assert_replica_unchanged(order)
    assert PaymentAttempt.objects.count() == 0


def test_pay_twice_for_an_order_whose_completion_has_not_arrived(signed_in_client, stripe_ledger):
    # The replica still says "created" (order.completed is on its way); the Payment row
    # is what says it is paid.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    first = pay(buyer, order.id)
    assert first.status_code == 201

    response = pay(buyer, order.id)

    assert response.status_code == 400
    assert response.json() == errors((services.ORDER_PAID,))
    assert Payment.objects.get().id == uuid.UUID(first.json()["id"])
    assert PaymentAttempt.objects.count() == 1
    assert [e.subject for e in OutboxEvent.objects.all()] == ["payment.created"]
    assert len(stripe_ledger.payment_intents(order.id)) == 1


# --- success --------------------------------------------------------------------------


def test_pay_charges_the_replica_amount_once_and_records_it(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="20.50")

    # The amount in the body is ignored: it comes from the order replica.
    response = pay(buyer, order.id, amount=1, currency="eur")

    assert response.status_code == 201
    payment = Payment.objects.get()
    assert response.json() == {"id": str(payment.id)}
    attempt = PaymentAttempt.objects.get()
    assert (payment.order_id, payment.attempt_id, payment.amount_cents) == (
        order.id,
        attempt.id,
        2050,
    )
    assert (attempt.status, attempt.token, attempt.amount_cents, attempt.error) == (
        "succeeded",
        GOOD_CARD,
        2050,
        "",
    )
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["id"] == payment.stripe_id
    assert (intent["amount"], intent["currency"], intent["status"]) == (2050, "usd", "succeeded")
    assert intent["metadata"] == {"orderId": str(order.id), "attemptId": str(attempt.id)}
    assert stripe_ledger.card_last4(intent["payment_method"]) == "4242"  # GOOD_CARD's
    assert stripe_ledger.refunds(payment.stripe_id) == []
    assert Refund.objects.count() == 0
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data) == (
        "payment.created",
        {"id": str(payment.id), "orderId": str(order.id), "stripeId": payment.stripe_id},
    )
    assert event.sent_at is None  # only after the commit, which this test never reaches
    # payments_svc does not complete the order itself: order.completed will say so.
    assert_replica_unchanged(order)


@pytest.mark.parametrize(
    ("price", "cents"),
    [("0.50", 50), ("0.57", 57), ("4.35", 435), ("19.99", 1999), ("999999.99", 99999999)],
)
def test_pay_charges_exact_integer_cents(signed_in_client, stripe_ledger, price, cents):
    # 0.57 and 4.35 are the float traps: int(0.57 * 100) == 56.
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price=price)

    response = pay(buyer, order.id, amount=str(cents + 1))

    assert response.status_code == 201
    assert Payment.objects.get().amount_cents == cents
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["amount"] == cents


def test_pay_with_a_bearer_token(api_client, make_token):
    user_id = str(uuid.uuid4())
    order = order_replica(user_id=user_id)

    carry_token(api_client, make_token(user_id=user_id), "bearer")

    response = pay(api_client, order.id)

    assert response.status_code == 201


def test_pay_with_a_trailing_slash_does_not_redirect(signed_in_client):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(
        f"{PAYMENTS}/", {"orderId": str(order.id), "token": GOOD_CARD}, format="json"
    )

    assert response.status_code == 201


# --- declined cards -------------------------------------------------------------------


def test_a_declined_card_is_402_and_a_new_card_then_pays(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="12.00")

    declined = pay(buyer, order.id, token=DECLINED_CARD)

    assert declined.status_code == 402
    assert declined.json() == errors((DECLINED,))
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0
    first = PaymentAttempt.objects.get()
    assert (first.status, first.token, first.amount_cents, first.error) == (
        "declined",
        DECLINED_CARD,
        1200,
        DECLINED,
    )
    [failed] = stripe_ledger.payment_intents(order.id)
    assert failed["status"] == "requires_payment_method"
    assert_replica_unchanged(order)

    paid = pay(buyer, order.id, token=GOOD_CARD)

    assert paid.status_code == 201
    payment = Payment.objects.get()
    assert paid.json() == {"id": str(payment.id)}
    second = PaymentAttempt.objects.exclude(id=first.id).get()
    assert (second.status, second.token) == ("succeeded", GOOD_CARD)
    assert payment.attempt_id == second.id  # a new attempt, so a new idempotency key
    first.refresh_from_db()
    assert first.status == "declined"
    intents = stripe_ledger.payment_intents(order.id)
    assert [i["status"] for i in intents] == ["requires_payment_method", "succeeded"]
    assert intents[1]["id"] == payment.stripe_id
    assert intents[1]["metadata"]["attemptId"] == str(second.id)
    assert [e.subject for e in OutboxEvent.objects.all()] == ["payment.created"]


def test_a_declined_card_can_be_declined_again(signed_in_client):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    responses = [pay(buyer, order.id, token=DECLINED_CARD) for _ in range(2)]

    assert [r.status_code for r in responses] == [402, 402]
    assert sorted(PaymentAttempt.objects.values_list("status", flat=True)) == [
        "declined",
        "declined",
    ]
    assert Payment.objects.count() == 0


def test_card_attempts_are_rate_limited_per_buyer(signed_in_client, stripe_ledger, settings):
    # Each attempt is a call to Stripe: trying card after card (card testing) stops at the
    # limit, before Stripe is asked anything.
    settings.RATE_LIMIT_PAYMENTS = "3/min"
    buyer, other = signed_in_client(), signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    tried = [pay(buyer, order.id, token=DECLINED_CARD) for _ in range(3)]

    refused = pay(buyer, order.id, token=GOOD_CARD)
    others = pay(other, order_replica(user_id=other.user_id).id)

    assert [r.status_code for r in tried] == [402, 402, 402]
    assert refused.status_code == 429
    assert refused.json() == errors((TOO_MANY_REQUESTS,))
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert PaymentAttempt.objects.filter(order_id=order.id).count() == 3
    assert len(stripe_ledger.payment_intents(order.id)) == 3
    assert not Payment.objects.filter(order_id=order.id).exists()
    assert others.status_code == 201  # a limit per buyer, not for everyone


def test_an_order_takes_so_many_declined_cards_then_no_more(
    signed_in_client, stripe_ledger, settings
):
    settings.PAYMENTS_MAX_DECLINES_PER_ORDER = 3
    buyer = signed_in_client()
    order, other_order = (order_replica(user_id=buyer.user_id) for _ in range(2))
    declined = [pay(buyer, order.id, token=DECLINED_CARD) for _ in range(3)]

    refused = pay(buyer, order.id, token=GOOD_CARD)
    other = pay(buyer, other_order.id)

    assert [r.status_code for r in declined] == [402, 402, 402]
    assert refused.status_code == 400
    assert refused.json() == errors((services.TOO_MANY_DECLINES,))
    assert PaymentAttempt.objects.filter(order_id=order.id).count() == 3  # none for it
    assert [i["status"] for i in stripe_ledger.payment_intents(order.id)] == [
        "requires_payment_method"
    ] * 3
    assert other.status_code == 201  # per order


def test_attempts_no_card_refused_do_not_count_as_declines(signed_in_client, settings):
    # Settled as not charged after a timeout or a lost answer (the worker cancels such an
    # intent): the buyer's card was never refused, and their good card must still pay.
    settings.PAYMENTS_MAX_DECLINES_PER_ORDER = 2
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    for reason in services.NOT_THE_CARDS_FAULT:
        attempt = attempt_row(order, status="declined", age=timedelta(minutes=5))
        PaymentAttempt.objects.filter(id=attempt.id).update(error=reason)

    paid = pay(buyer, order.id)

    assert paid.status_code == 201, paid.content
    assert Payment.objects.filter(order_id=order.id).count() == 1


def test_payment_checks_are_rate_limited_per_user(signed_in_client, settings):
    settings.RATE_LIMIT_PAYMENT_CHECKS = "2/min"
    buyer = signed_in_client()
    paid = pay(buyer, order_replica(user_id=buyer.user_id).id).json()["id"]

    checks = [buyer.get(f"{PAYMENTS}/{paid}") for _ in range(3)]

    assert [r.status_code for r in checks] == [200, 200, 429]
    assert checks[2].json() == errors((TOO_MANY_REQUESTS,))
    assert pay(buyer, order_replica(user_id=buyer.user_id).id).status_code == 201  # apart


def test_rate_limits_come_after_sign_in(api_client, settings):
    settings.RATE_LIMIT_PAYMENTS = settings.RATE_LIMIT_PAYMENT_CHECKS = "1/min"
    order = order_replica(user_id=ALICE)

    answers = [pay(api_client, order.id) for _ in range(2)]
    answers += [api_client.get(f"{PAYMENTS}/{uuid.uuid4()}") for _ in range(2)]

    assert [r.status_code for r in answers] == [401, 401, 401, 401]


def test_an_unknown_payment_method_is_declined_without_a_charge(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, token="pm_doesnotexist")

    assert response.status_code == 402
    attempt = PaymentAttempt.objects.get()
    assert attempt.status == "declined"
    assert attempt.error
    assert response.json() == errors((attempt.error,))
    assert_nothing_charged(order, stripe_ledger, attempts=1)


# --- legacy card tokens (Stripe Checkout, Stripe.js v2) ---------------------------------


def test_a_card_token_pays_like_a_payment_method(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id, price="20.50")

    response = pay(buyer, order.id, token="tok_visa")

    assert response.status_code == 201
    payment = Payment.objects.get()
    assert response.json() == {"id": str(payment.id)}
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.token, payment.attempt_id) == (
        "succeeded",
        "tok_visa",
        attempt.id,
    )
    [intent] = stripe_ledger.payment_intents(order.id)
    assert (intent["id"], intent["amount"], intent["status"]) == (
        payment.stripe_id,
        2050,
        "succeeded",
    )
    # Stripe made a PaymentMethod from the token, and that is what was charged.
    assert intent["payment_method"].startswith("pm_")
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data) == (
        "payment.created",
        {"id": str(payment.id), "orderId": str(order.id), "stripeId": payment.stripe_id},
    )


def test_a_declined_card_token_is_402_with_stripes_message(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, token="tok_chargeDeclined")

    assert response.status_code == 402
    assert response.json() == errors((DECLINED,))
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.error) == ("declined", DECLINED)
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["status"] == "requires_payment_method"
    assert Payment.objects.count() == 0
    assert OutboxEvent.objects.count() == 0

    assert pay(buyer, order.id, token="tok_mastercard").status_code == 201  # another card


def test_an_unknown_card_token_is_declined_without_a_charge(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = pay(buyer, order.id, token="tok_doesnotexist")

    assert response.status_code == 402
    assert response.json() == errors(("No such token: 'tok_doesnotexist'",))
    assert PaymentAttempt.objects.get().status == "declined"
    assert_nothing_charged(order, stripe_ledger, attempts=1)


# --- Stripe outage --------------------------------------------------------------------


def test_a_stripe_outage_is_503_and_the_retry_reuses_the_attempt(
    signed_in_client, stripe_ledger, stripe_proxy, settings
):
    from payments import gateway

    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    settings.STRIPE_API_BASE = unreachable_url()
    gateway._client.cache_clear()

    down = pay(buyer, order.id)

    assert down.status_code == 503
    assert down.json() == {
        "errors": [{"message": "The payment provider is unavailable; please try again"}]
    }
    attempt = PaymentAttempt.objects.get()
    assert (attempt.status, attempt.token) == ("unknown", GOOD_CARD)
    assert attempt.error  # what the SDK said, for the admin
    assert_nothing_charged(order, stripe_ledger, attempts=1)

    settings.STRIPE_API_BASE = stripe_proxy.url  # Stripe is back
    gateway._client.cache_clear()
    retried = pay(buyer, order.id)

    assert retried.status_code == 201
    payment = Payment.objects.get()
    assert retried.json() == {"id": str(payment.id)}
    assert PaymentAttempt.objects.get().id == attempt.id  # the same attempt ...
    assert payment.attempt_id == attempt.id
    # ... so the same idempotency key on the wire: Stripe would answer with the first result.
    assert stripe_proxy.keys(*INTENTS) == [f"payment-attempt-{attempt.id}"]
    attempt.refresh_from_db()
    assert (attempt.status, attempt.error) == ("succeeded", "")
    [intent] = stripe_ledger.payment_intents(order.id)
    assert intent["id"] == payment.stripe_id
    assert [e.subject for e in OutboxEvent.objects.all()] == ["payment.created"]


def test_stripe_answering_5xx_is_503_too(signed_in_client, stripe_ledger, stripe_proxy):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    stripe_proxy.fail(*INTENTS, stripe_proxy.REFUSE)

    response = pay(buyer, order.id)

    assert response.status_code == 503
    assert response.json() == errors((services.PROVIDER_UNAVAILABLE,))
    assert PaymentAttempt.objects.get().status == "unknown"
    assert_nothing_charged(order, stripe_ledger, attempts=1)


# --- request shape --------------------------------------------------------------------


@pytest.mark.parametrize("raw", ['{"orderId": ', "{'orderId': 'x'}", '{"token": NaN}', "\x00"])
def test_pay_with_malformed_json(signed_in_client, stripe_ledger, raw):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(PAYMENTS, raw, content_type="application/json")

    assert_refused(response, 400, (MALFORMED_JSON,), order, stripe_ledger)


def test_pay_with_a_json_body_that_is_not_an_object(signed_in_client, stripe_ledger):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(PAYMENTS, [str(order.id), GOOD_CARD], format="json")

    assert_refused(response, 400, (services.ORDER_ID_REQUIRED, "orderId"), order, stripe_ledger)


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
)
def test_pay_from_a_form_is_refused(signed_in_client, stripe_ledger, content_type):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    if content_type == "multipart/form-data":
        body = {"orderId": str(order.id), "token": GOOD_CARD}
        response = buyer.post(PAYMENTS, body, format="multipart")
    else:
        body = f"orderId={order.id}&token={GOOD_CARD}"
        response = buyer.post(PAYMENTS, body, content_type=content_type)

    assert_refused(response, 415, (UNSUPPORTED_MEDIA_TYPE,), order, stripe_ledger)


def test_pay_with_a_body_over_the_limit(signed_in_client, stripe_ledger, settings):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    body = json.dumps(
        {
            "orderId": str(order.id),
            "token": GOOD_CARD,
            "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        }
    )

    response = buyer.post(PAYMENTS, body, content_type="application/json")

    assert_refused(response, 413, (BODY_TOO_LARGE,), order, stripe_ledger)


def test_get_is_not_allowed(signed_in_client):
    response = signed_in_client().get(PAYMENTS)

    assert response.status_code == 405
    assert response.json() == errors((METHOD_NOT_ALLOWED,))
    assert response["Allow"] == "POST, OPTIONS"


def test_unknown_api_route_is_a_json_404(signed_in_client):
    assert_unknown_route_is_json_404(signed_in_client(), f"{PAYMENTS}/{uuid.uuid4()}")


# --- admin, schema, docs, probes ------------------------------------------------------


def test_admin_sends_anonymous_to_the_site_sign_in(api_client):
    assert_admin_sends_anonymous_to_sign_in(api_client, "/admin/payments/")


def test_staff_sign_on_views_every_admin_page_read_only(staff_admin_client):
    checked = assert_staff_views_every_model_read_only(staff_admin_client, "/admin/payments/")

    assert set(checked) >= {
        "payments.OrderReplica",
        "payments.Payment",
        "payments.PaymentAttempt",
        "payments.Refund",
        "payments.StripeEvent",
        "shared_lib.OutboxEvent",
        "auth.User",
    }


def test_admin_shows_payments_read_only(admin_client, signed_in_client):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)
    assert pay(buyer, order.id).status_code == 201
    payment = Payment.objects.get()

    changelist = admin_client.get("/admin/payments/payments/payment/")
    change = admin_client.get(f"/admin/payments/payments/payment/{payment.id}/change/")
    add = admin_client.get("/admin/payments/payments/payment/add/")
    attempts = admin_client.get("/admin/payments/payments/paymentattempt/")
    delete = admin_client.post(
        f"/admin/payments/payments/payment/{payment.id}/delete/", {"post": "yes"}
    )

    assert changelist.status_code == 200
    assert payment.stripe_id in changelist.content.decode()
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert add.status_code == 403
    assert attempts.status_code == 200
    assert delete.status_code == 403
    assert Payment.objects.filter(id=payment.id).exists()


def test_admin_lists_failed_refunds_with_stripes_answer(admin_client, stripe_proxy):
    order = order_replica()
    payment = services.payment_create(
        user_id=order.user_id, order_id=str(order.id), token=GOOD_CARD
    )
    deliver(cancelled_event(order))
    Payment.objects.filter(id=payment.id).update(stripe_id="pi_gone00000000")
    Refund.objects.filter(payment=payment).update(payment_intent_id="pi_gone00000000")
    services.payments_reconcile()
    refund = Refund.objects.get()
    assert refund.status == "failed"

    failed = admin_client.get("/admin/payments/payments/refund/?status__exact=failed")
    pending = admin_client.get("/admin/payments/payments/refund/?status__exact=pending")

    assert failed.status_code == 200
    page = failed.content.decode()
    assert "pi_gone00000000" in page
    assert "invalid_request: Not Found" in page
    assert "pi_gone00000000" not in pending.content.decode()


def test_schema_documents_the_payment_route(api_client):
    response = api_client.get(
        "/api/payments/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert set(paths) == {
        "/api/payments",
        "/api/payments/{payment_id}",
        "/api/payments/webhooks/stripe",
    }
    assert set(paths["/api/payments"]) == {"post"}
    assert set(paths["/api/payments/{payment_id}"]) == {"get"}
    assert set(paths["/api/payments/webhooks/stripe"]) == {"post"}
    responses = paths["/api/payments"]["post"]["responses"]
    assert {"201", "202", "400", "402", "404"} <= set(responses)
    action = responses["202"]["content"]["application/json"]["schema"]["$ref"]
    assert action == "#/components/schemas/PaymentAction"
    webhook = paths["/api/payments/webhooks/stripe"]["post"]
    assert webhook["security"] == [{}]  # proven by its signature, not a session
    assert {"200", "400"} <= set(webhook["responses"])
    body = paths["/api/payments"]["post"]["requestBody"]["content"]["application/json"]
    assert "PaymentInput" in body["schema"]["$ref"]


def test_the_schema_states_the_payment_body(api_client):
    response = api_client.get(
        "/api/payments/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )

    body = json.loads(response.content)["components"]["schemas"]["PaymentInputRequest"]
    assert sorted(body["required"]) == ["orderId", "token"]
    assert body["properties"]["orderId"] == {"type": "string", "format": "uuid"}
    token = body["properties"]["token"]
    assert (token["type"], token["pattern"], token["minLength"]) == (
        "string",
        services.TOKEN_PATTERN,
        1,
    )


def test_docs_page(api_client):
    assert_docs_page(api_client, "/api/payments/docs")


def test_readiness_checks_the_database_not_the_broker(api_client):
    assert_ready_on_the_database_alone(api_client)


def test_liveness(api_client):
    response = api_client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}

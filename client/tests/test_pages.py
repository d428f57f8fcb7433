"""The pages in-process (Django's test client) against the running system: statuses,
redirects, cookies and headers a browser test would only see indirectly."""

import json
import re
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.test import Client

from shared_lib.auth import mint_session_token
from storefront.api import UNAVAILABLE_MESSAGE
from storefront.middleware import content_security_policy
from storefront.templatetags.storefront import clock, money
from storefront.views import (
    AUTHENTICATION_FAILED,
    AUTHENTICATION_PENDING,
    AUTHENTICATION_TOO_LATE,
    EXPIRED,
    PAID,
    PAID_BUT_EXPIRED,
    PAID_CONFIRMING,
    PAYMENT_CHECK_LATER,
    PAYMENT_PROCESSING,
    SIGNED_IN,
    SIGNED_OUT,
    TICKETS_PER_PAGE,
    order_state,
)
from tests.conftest import PASSWORD, unique_email, url_of
from ticketing_devtools.devkeys import ensure_dev_secrets


def browser(**kwargs):
    # The client passes the browser's Host on to the APIs, which (like the client)
    # accept only the site's host names: Django's default "testserver" is not one.
    return Client(HTTP_HOST="localhost", **kwargs)


CSRF_EXPIRED = "This form has expired. Go back, reload the page and try again."


def api_user(stack):
    """A signed-up user's API session; its `email` says who they are."""
    session = requests.Session()
    session.email = unique_email("api")
    response = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": session.email, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return session


def signed_in_client(stack):
    session = api_user(stack)
    client = browser()
    client.cookies["session"] = session.cookies["session"]
    return client


def test_every_page_has_a_strict_content_security_policy(stack):
    response = browser().get("/")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-src 'none'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; object-src 'none'"
    )
    assert response["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.content.decode()  # no inline script to allow


def test_with_stripe_configured_only_stripe_is_added_to_the_policy():
    policy = content_security_policy(stripe=True)

    assert "script-src 'self' https://js.stripe.com;" in policy
    assert "frame-src https://js.stripe.com https://hooks.stripe.com;" in policy
    assert "connect-src 'self' https://api.stripe.com;" in policy


def test_with_stripe_configured_the_order_page_uses_elements(stack, settings):
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_example"
    seller, buyer = api_user(stack), api_user(stack)
    ticket = seller.post(
        f"{stack.url}/api/tickets", json={"title": "Elements", "price": "5"}, timeout=10
    ).json()
    order = None
    for _ in range(100):
        answer = buyer.post(f"{stack.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=10)
        if answer.status_code == 201:
            order = answer.json()
            break
    assert order is not None
    client = browser()
    client.cookies["session"] = buyer.cookies["session"]

    page = client.get(f"/orders/{order['id']}").content.decode()

    assert 'data-stripe-key="pk_test_example"' in page
    assert '<script src="https://js.stripe.com/v3/"></script>' in page
    assert 'id="card-element"' in page
    assert 'type="hidden" name="token"' in page
    assert "pm_card_visa" not in page  # no test cards when Stripe collects the card


def test_signing_in_hands_the_apis_session_cookie_to_the_browser(stack):
    email = unique_email("cookie")
    api_user_session = requests.post(
        f"{stack.url}/api/users/signup",
        json={"email": email, "password": PASSWORD},
        timeout=10,
    )
    assert api_user_session.status_code == 201
    client = browser()

    response = client.post(
        "/auth/signin", {"email": email, "password": PASSWORD, "next": "/orders"}
    )

    assert response.status_code == 302
    assert response["Location"] == "/orders"
    cookie = response.cookies["session"]
    assert cookie.value.count(".") == 2  # the API's JWT, passed on as it came
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    page = client.get("/orders")
    assert page.status_code == 200
    assert SIGNED_IN.format(email=email) in page.content.decode()

    token = client.cookies["session"].value
    response = client.post("/auth/signout")
    assert response.status_code == 302
    assert response.cookies["session"].value == ""
    assert str(response.cookies["session"]["max-age"]) == "0"
    assert client.get("/orders").status_code == 302  # signed out: sign in first
    # auth_svc ended the session itself: its token is nobody there from now on.
    ended = requests.get(
        f"{stack.url}/api/users/currentuser", cookies={"session": token}, timeout=10
    )
    assert ended.json() == {"currentUser": None}


def test_next_never_leaves_the_site(stack):
    email = unique_email("redirect")
    requests.post(
        f"{stack.url}/api/users/signup", json={"email": email, "password": PASSWORD}, timeout=10
    )

    response = browser().post(
        "/auth/signin", {"email": email, "password": PASSWORD, "next": "https://evil.example/"}
    )

    assert (response.status_code, response["Location"]) == (302, "/")


@pytest.mark.parametrize("path", ["/tickets/new", "/orders"])
def test_signed_in_pages_send_a_stranger_to_sign_in_and_back(stack, path):
    response = browser().get(path)

    assert response.status_code == 302
    assert response["Location"] == f"/auth/signin?next={path.replace('/', '%2F')}"


def test_a_form_without_its_csrf_token_is_refused_with_a_readable_page(stack):
    client = browser(enforce_csrf_checks=True)

    response = client.post("/auth/signin", {"email": "a@example.com", "password": PASSWORD})

    assert response.status_code == 403
    assert CSRF_EXPIRED in response.content.decode()


def test_a_failed_sell_keeps_the_input_and_changes_nothing(stack):
    client = signed_in_client(stack)
    title = f"Kept {uuid.uuid4().hex[:6]}"

    response = client.post("/tickets/new", {"title": title, "price": "0"})

    assert response.status_code == 400
    page = response.content.decode()
    assert f'value="{title}"' in page
    assert "Price must be greater than 0" in page
    listed = requests.get(f"{stack.url}/api/tickets", params={"limit": 100}, timeout=10).json()
    assert title not in [ticket["title"] for ticket in listed]


def test_the_ticket_list_pages_with_the_apis_cursor(stack):
    seller = api_user(stack)
    titles = [f"Paged {uuid.uuid4().hex[:6]} #{n}" for n in range(TICKETS_PER_PAGE + 1)]
    for title in titles:
        answer = seller.post(
            f"{stack.url}/api/tickets", json={"title": title, "price": "12.5"}, timeout=10
        )
        assert answer.status_code == 201
    client = browser()

    first = client.get("/").content.decode()
    cursor = re.search(r'rel="next" href="/\?cursor=([^"]+)"', first).group(1)
    second = client.get(f"/?cursor={cursor}").content.decode()

    newest_first = titles[::-1]
    assert all(title in first for title in newest_first[:TICKETS_PER_PAGE])
    assert newest_first[TICKETS_PER_PAGE] not in first
    assert newest_first[TICKETS_PER_PAGE] in second
    assert "$12.50" in first
    assert 'href="/">Newest tickets</a>' in second


def test_when_the_gateway_is_down_pages_say_so_and_forms_keep_input(stack, settings):
    settings.API_BASE_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    client = browser()

    listing = client.get("/")
    signup = client.post("/auth/signup", {"email": "kept@example.com", "password": PASSWORD})

    assert listing.status_code == 503
    assert UNAVAILABLE_MESSAGE in listing.content.decode()
    assert signup.status_code == 503
    assert UNAVAILABLE_MESSAGE in signup.content.decode()
    assert 'value="kept@example.com"' in signup.content.decode()


def test_the_error_pages_render_without_a_request():
    # Django renders 500.html with no context at all when something has gone wrong.
    page = render_to_string("500.html")

    assert "Something went wrong" in page
    assert 'href="/auth/signin"' in page


def test_probes_answer_without_the_apis(settings):
    settings.API_BASE_URL = "http://127.0.0.1:9"
    client = browser()

    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ok", "checks": {}}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0.1"), "$0.10"),
        ("999999.99", "$999,999.99"),
        (7, "$7.00"),
        ("n/a", ""),
    ],
)
def test_money(value, shown):
    assert money(value) == shown


def test_clock():
    assert [clock(s) for s in (0, 5, 65, 900, -3)] == ["0:00", "0:05", "1:05", "15:00", "0:00"]


def test_an_unpaid_order_past_its_time_is_expired_before_the_event_arrives():
    order = {"status": "created", "expiresAt": "2026-01-01T00:00:00Z"}

    assert order_state(order) == EXPIRED
    assert order_state({**order, "status": "complete"}) == "Complete"
    assert order_state({**order, "expiresAt": "2999-01-01T00:00:00Z"}) == "Awaiting payment"


@pytest.mark.parametrize("path", ["/api", "/api/", "/api/nothing/here", "/api/users2/x"])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
def test_unknown_api_paths_are_the_apis_json_404_not_a_page(path, method):
    response = getattr(browser(), method)(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": [{"message": "Not Found"}]}


def test_a_signed_in_page_asks_nobody_who_is_signed_in(recorder, tokens, settings):
    settings.API_BASE_URL = url_of(recorder)
    recorder.routes["/api/tickets"] = (200, [], b"[]")
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.get("/")

    assert response.status_code == 200
    assert 'data-testid="current-user">dee@example.com<' in response.content.decode()
    assert [seen[1] for seen in recorder.seen] == ["/api/tickets?limit=12"]
    assert "session" not in response.cookies


def test_a_session_past_half_its_life_is_renewed_by_auth_on_a_page(stack, settings):
    email = unique_email("renew")
    signup = requests.post(
        f"{stack.url}/api/users/signup", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert signup.status_code == 201
    claims = jwt.decode(signup.cookies["session"], options={"verify_signature": False})
    # The same session's token as auth_svc would have minted it 8 minutes ago.
    settings.JWT_PRIVATE_KEY = ensure_dev_secrets().jwt_private_key_file.read_text()
    settings.SESSION_TTL_SECONDS = claims["exp"] - claims["iat"]
    started = int(time.time())
    old = mint_session_token(
        user_id=claims["id"], email=email, session_id=claims["sid"], now=started - 480
    )
    client = browser()
    client.cookies["session"] = old

    response = client.get("/")

    assert response.status_code == 200
    assert f'data-testid="current-user">{email}<' in response.content.decode()
    renewed = jwt.decode(response.cookies["session"].value, options={"verify_signature": False})
    assert renewed["sid"] == claims["sid"]
    assert renewed["iat"] >= started
    assert response.cookies["session"]["httponly"] is True


def _order_json(order_id: str, status: str) -> bytes:
    return json.dumps({"id": order_id, "status": status}).encode()


def test_a_paid_order_is_shown_once_orders_has_heard_of_the_payment(recorder, tokens, settings):
    # The order completes by an event a moment after the payment: the page waits for it,
    # so the order list it leads to does not show the order still awaiting payment.
    settings.API_BASE_URL = url_of(recorder)
    order_id = str(uuid.uuid4())
    recorder.answers += [
        (201, [], b'{"id": "payment"}'),
        (200, [], _order_json(order_id, "created")),
        (200, [], _order_json(order_id, "created")),
        (200, [], _order_json(order_id, "complete")),
    ]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.post(f"/orders/{order_id}/pay", {"token": "pm_card_visa"})

    assert response.status_code == 302
    assert response["Location"] == "/orders"
    assert [m.message for m in get_messages(response.wsgi_request)] == [PAID]
    assert [(seen[0], seen[1]) for seen in recorder.seen] == [
        ("POST", "/api/payments"),
        *[("GET", f"/api/orders/{order_id}")] * 3,
    ]
    assert recorder.answers == []


def test_a_payment_orders_has_not_heard_of_in_time_says_it_is_on_its_way(
    recorder, tokens, settings
):
    settings.API_BASE_URL = url_of(recorder)
    settings.ORDER_CONFIRM_SECONDS = 0.2
    order_id = str(uuid.uuid4())
    recorder.answers.append((201, [], b'{"id": "payment"}'))
    recorder.routes[f"/api/orders/{order_id}"] = (200, [], _order_json(order_id, "created"))
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    started = time.monotonic()
    response = client.post(f"/orders/{order_id}/pay", {"token": "pm_card_visa"})

    assert 0.2 <= time.monotonic() - started < 2
    assert response.status_code == 302
    assert response["Location"] == "/orders"
    assert [m.message for m in get_messages(response.wsgi_request)] == [PAID_CONFIRMING]
    paid = [seen for seen in recorder.seen if seen[0] == "POST"]
    assert len(paid) == 1  # asked again, never paid again


def test_a_payment_whose_order_expired_meanwhile_says_the_charge_is_refunded(
    recorder, tokens, settings
):
    settings.API_BASE_URL = url_of(recorder)
    order_id = str(uuid.uuid4())
    recorder.answers += [
        (201, [], b'{"id": "payment"}'),
        (200, [], _order_json(order_id, "cancelled")),
    ]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.post(f"/orders/{order_id}/pay", {"token": "pm_card_visa"})

    assert response.status_code == 302
    assert [m.message for m in get_messages(response.wsgi_request)] == [PAID_BUT_EXPIRED]
    assert len(recorder.seen) == 2  # no waiting on an order that will not complete


def _order_page_json(order_id: str, status: str = "created") -> bytes:
    return json.dumps(
        {
            "id": order_id,
            "status": status,
            "expiresAt": "2999-01-01T00:00:00Z",
            "ticket": {"id": str(uuid.uuid4()), "title": "Proms", "price": "30.00"},
        }
    ).encode()


def _payment_json(payment_id: str, order_id: str, status: str, secret: str = "") -> bytes:
    body = {"id": payment_id, "orderId": order_id, "status": status}
    return json.dumps({**body, "clientSecret": secret} if secret else body).encode()


@pytest.fixture
def back_from_the_challenge(
    recorder, tokens, settings
) -> Callable[..., tuple[HttpResponse, str, str]]:
    """Dee's browser posting back after the bank's challenge, payments_svc (the recorder)
    answering with the payment's status and orders_svc with the order's:
    `post(payment_status, order_status="created", secret="")` -> (response, order id,
    payment id)."""
    settings.API_BASE_URL = url_of(recorder)
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    def post(
        payment_status: str, order_status: str = "created", secret: str = ""
    ) -> tuple[HttpResponse, str, str]:
        order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
        recorder.answers += [
            (200, [], _payment_json(payment_id, order_id, payment_status, secret)),
            (200, [], _order_page_json(order_id, order_status)),
        ]
        return client.post(f"/orders/{order_id}/payments/{payment_id}"), order_id, payment_id

    return post


def test_a_card_asking_for_authentication_leads_to_the_challenge_step(recorder, tokens, settings):
    settings.API_BASE_URL = url_of(recorder)
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_example"
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    action = {"id": payment_id, "status": "requires_action", "clientSecret": "pi_1_secret_2"}
    recorder.answers += [
        (202, [], json.dumps(action).encode()),
        (200, [], _order_page_json(order_id)),
        (200, [], _payment_json(payment_id, order_id, "requires_action", "pi_1_secret_2")),
    ]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    paid = client.post(f"/orders/{order_id}/pay", {"token": "pm_1"})
    # The page after it, and after every reload: payments_svc says what to show.
    response = client.get(paid["Location"])

    assert (paid.status_code, paid["Location"]) == (302, f"/orders/{order_id}?payment={payment_id}")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="payment-action"' in page
    assert f'action="/orders/{order_id}/payments/{payment_id}"' in page
    assert 'data-client-secret="pi_1_secret_2"' in page
    assert 'data-stripe-key="pk_test_example"' in page
    assert 'id="payment-form"' not in page  # no second payment while the bank decides
    assert [(seen[0], seen[1]) for seen in recorder.seen] == [
        ("POST", "/api/payments"),
        ("GET", f"/api/orders/{order_id}"),
        ("GET", f"/api/payments/{payment_id}"),
    ]


@pytest.mark.parametrize(
    ("payment", "why"),
    [
        (lambda pid, oid: _payment_json(pid, oid, "failed"), "failed"),
        (lambda pid, oid: _payment_json(pid, str(uuid.uuid4()), "requires_action", "s"), "other"),
    ],
)
def test_the_order_page_offers_the_card_form_unless_its_payment_waits(
    recorder, tokens, settings, payment, why
):
    settings.API_BASE_URL = url_of(recorder)
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    recorder.answers += [
        (200, [], _order_page_json(order_id)),
        (200, [], payment(payment_id, order_id)),
    ]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    page = client.get(f"/orders/{order_id}?payment={payment_id}").content.decode()

    assert 'id="payment-form"' in page
    assert 'id="payment-action"' not in page


@pytest.mark.parametrize(
    ("payment_status", "page_status", "alert", "challenge_again", "card_form"),
    [
        ("failed", 402, AUTHENTICATION_FAILED, False, True),
        ("requires_action", 200, AUTHENTICATION_PENDING, True, False),
        # Still charging: another card would be ignored for this one.
        ("processing", 202, PAYMENT_PROCESSING, False, False),
    ],
)
def test_after_the_challenge_the_page_says_what_the_bank_decided(
    recorder,
    settings,
    back_from_the_challenge,
    payment_status,
    page_status,
    alert,
    challenge_again,
    card_form,
):
    settings.STRIPE_PUBLISHABLE_KEY = "pk_test_example"
    secret = "pi_1_secret_2" if payment_status == "requires_action" else ""

    response, order_id, payment_id = back_from_the_challenge(payment_status, secret=secret)

    assert response.status_code == page_status
    page = response.content.decode()
    assert alert in page
    assert ('data-client-secret="pi_1_secret_2"' in page) is challenge_again
    assert ('id="payment-form"' in page) is card_form
    assert [(seen[0], seen[1]) for seen in recorder.seen] == [
        ("GET", f"/api/payments/{payment_id}"),
        ("GET", f"/api/orders/{order_id}"),
    ]


TOO_MANY = (429, [("Retry-After", "30")], b'{"errors": [{"message": "Too many requests"}]}')


@pytest.mark.parametrize(
    ("answer", "page_status", "alert"),
    [
        # Waiting for its cardholder, but its secret could not be had (Stripe unreachable).
        ((200, [], _payment_json("P", "O", "requires_action")), 200, PAYMENT_CHECK_LATER),
        ((200, [], _payment_json("P", "O", "processing")), 200, PAYMENT_PROCESSING),
        ((200, [], _payment_json("P", "O", "succeeded")), 200, PAID_CONFIRMING),
        ((502, [], b""), 503, PAYMENT_CHECK_LATER),  # payments_svc unreachable
        (TOO_MANY, 429, PAYMENT_CHECK_LATER),  # payments_svc's check limit reached
    ],
    ids=["waiting-no-secret", "processing", "paid-not-yet-told", "unreachable", "check-limit"],
)
def test_the_order_page_takes_no_second_card_while_its_payment_may_charge(
    recorder, tokens, settings, answer, page_status, alert
):
    # Another card then would be refused, or (for a processing payment) ignored for the
    # first, which is what would be charged.
    settings.API_BASE_URL = url_of(recorder)
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    status, headers, body = answer
    body = body.replace(b'"P"', f'"{payment_id}"'.encode()).replace(
        b'"O"', f'"{order_id}"'.encode()
    )
    recorder.answers += [(200, [], _order_page_json(order_id)), (status, headers, body)]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.get(f"/orders/{order_id}?payment={payment_id}")

    assert response.status_code == page_status
    page = response.content.decode()
    assert alert in page
    assert 'id="payment-form"' not in page
    assert 'id="payment-action"' not in page
    assert 'data-testid="countdown"' in page  # still the order's page


def test_back_from_the_challenge_with_no_secret_to_offer_it_again(back_from_the_challenge):
    response, _, _ = back_from_the_challenge("requires_action")

    assert response.status_code == 200
    page = response.content.decode()
    assert AUTHENTICATION_PENDING in page
    assert PAYMENT_CHECK_LATER in page
    assert 'id="payment-form"' not in page


def test_back_from_the_challenge_when_the_check_is_refused_for_now(recorder, tokens, settings):
    settings.API_BASE_URL = url_of(recorder)
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    recorder.answers += [TOO_MANY, (200, [], _order_page_json(order_id))]
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.post(f"/orders/{order_id}/payments/{payment_id}")

    assert response.status_code == 429
    page = response.content.decode()
    assert PAYMENT_CHECK_LATER in page
    assert 'id="payment-form"' not in page


def test_a_challenge_the_order_outlived_says_nothing_was_charged(back_from_the_challenge):
    response, _, _ = back_from_the_challenge("failed", order_status="cancelled")

    assert response.status_code == 200
    page = response.content.decode()
    assert AUTHENTICATION_TOO_LATE in page
    assert AUTHENTICATION_FAILED not in page
    assert 'id="payment-form"' not in page


def test_a_challenge_passed_completes_like_a_payment(back_from_the_challenge):
    response, _, _ = back_from_the_challenge("succeeded", order_status="complete")

    assert (response.status_code, response["Location"]) == (302, "/orders")
    assert [m.message for m in get_messages(response.wsgi_request)] == [PAID]


def test_a_payment_of_another_order_is_not_found(recorder, tokens, settings):
    settings.API_BASE_URL = url_of(recorder)
    order_id, payment_id = str(uuid.uuid4()), str(uuid.uuid4())
    recorder.answers.append((200, [], _payment_json(payment_id, str(uuid.uuid4()), "succeeded")))
    client = browser()
    client.cookies["session"] = tokens(email="dee@example.com")

    response = client.post(f"/orders/{order_id}/payments/{payment_id}")

    assert response.status_code == 404
    assert len(recorder.seen) == 1


@pytest.mark.parametrize("status", [429, 502, 503])
def test_signing_out_clears_the_cookie_even_when_auth_does_not_answer(
    recorder, tokens, settings, status
):
    # The client accepts a token until its `exp`: a browser that kept it would stay in.
    settings.API_BASE_URL = url_of(recorder)
    body = b'{"errors": [{"message": "Try later"}]}' if status == 429 else b""
    recorder.routes["/api/users/signout"] = (status, [("Content-Type", "application/json")], body)
    client = browser()
    client.cookies["session"] = tokens(email="eve@example.com")

    response = client.post("/auth/signout")

    assert response.status_code == 302
    assert response.cookies["session"].value == ""
    assert response.cookies["session"]["max-age"] == 0
    assert [m.message for m in get_messages(response.wsgi_request)] == [SIGNED_OUT]


def test_a_renewal_in_flight_does_not_sign_the_browser_back_in_on_sign_out(
    recorder, tokens, settings
):
    # The token is past half its life, so the page asks auth_svc to renew it beside the
    # sign-out; the renewed cookie must not override the view's clearing.
    settings.API_BASE_URL = url_of(recorder)
    old = tokens(email="fay@example.com", now=int(time.time()) - 460)
    renewed = tokens(email="fay@example.com")
    recorder.routes["/api/users/currentuser"] = (
        200,
        [("Set-Cookie", f"session={renewed}; HttpOnly; Max-Age=900; Path=/; SameSite=Lax")],
        b'{"currentUser": {"email": "fay@example.com"}}',
    )
    recorder.routes["/api/users/signout"] = (200, [], b"{}")
    # Neither is answered until both are in flight: the renewal races the sign-out.
    recorder.answer_together({"/api/users/currentuser", "/api/users/signout"}, parties=2)
    client = browser()
    client.cookies["session"] = old

    response = client.post("/auth/signout")

    assert response.status_code == 302
    assert response.cookies["session"].value == ""
    assert sorted(seen[1] for seen in recorder.seen) == [
        "/api/users/currentuser",
        "/api/users/signout",
    ]


# --- search --------------------------------------------------------------------------


def _ticket(title: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "title": title,
        "price": 25.0,
        "userId": str(uuid.uuid4()),
        "version": 0,
        "orderId": None,
    }


def test_the_search_goes_to_the_api_and_its_pages_keep_it(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    link = '<http://gw/api/tickets?q=arctic&minPrice=10&limit=12&cursor=abc>; rel="next"'
    recorder.answers.append(
        (200, [("Link", link)], json.dumps([_ticket("Arctic Monkeys")]).encode())
    )

    response = browser().get("/", {"q": "arctic", "min_price": "10", "max_price": ""})

    assert response.status_code == 200
    page = response.content.decode()
    [(method, path, _, _)] = recorder.seen
    assert method == "GET"
    assert parse_qs(urlsplit(path).query) == {"limit": ["12"], "q": ["arctic"], "minPrice": ["10"]}
    assert 'value="arctic"' in page  # the box keeps what was searched
    # The next page's link names the filters as this page's form does.
    assert 'href="/?q=arctic&amp;min_price=10&amp;cursor=abc"' in page
    recorder.answers.append((200, [], json.dumps([_ticket("Arctic Monkeys, balcony")]).encode()))
    browser().get("/?q=arctic&min_price=10&cursor=abc")
    assert parse_qs(urlsplit(recorder.seen[1][1]).query) == {
        "limit": ["12"],
        "cursor": ["abc"],
        "q": ["arctic"],
        "minPrice": ["10"],
    }
    assert "Arctic Monkeys" in page


def test_a_bad_filter_is_shown_next_to_its_field(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    message = "maxPrice must not be less than minPrice"
    recorder.answers.append(
        (400, [], json.dumps({"errors": [{"message": message, "field": "maxPrice"}]}).encode())
    )

    response = browser().get("/", {"min_price": "20", "max_price": "10"})

    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert 'id="id_max_price-errors"' in page
    assert 'value="10"' in page


def test_a_search_with_no_match_says_so(recorder, settings):
    settings.API_BASE_URL = url_of(recorder)
    recorder.answers.append((200, [], b"[]"))

    page = browser().get("/", {"q": "zzz"}).content.decode()

    assert "No tickets match your search." in page

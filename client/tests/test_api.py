"""storefront.api against real HTTP servers: a recording server for what is sent, the
running system for what comes back."""

import json
import time
from decimal import Decimal

import jwt
import pytest

from shared_lib.testing.plugin import generate_keypair
from storefront.api import UNAVAILABLE_MESSAGE, Api, ApiError, ApiUnavailable
from tests.conftest import PASSWORD, unique_email, url_of


def api_for(base_url, token=None, host="localhost"):
    return Api(
        session_token=token,
        client_ip="198.51.100.7",
        request_id="req-123",
        host=host,
        base_url=base_url,
    )


def test_a_call_carries_the_browsers_session_address_request_id_and_host(recorder):
    recorder.answers.append((201, [("Content-Type", "application/json")], b'{"id": "t1"}'))
    api = api_for(url_of(recorder), token="the-jwt", host="tickets.example.com")

    result = api.post("/api/tickets", {"title": "A", "price": "1.50"})

    assert (result.status, result.data) == (201, {"id": "t1"})
    method, path, headers, body = recorder.seen[0]
    assert (method, path) == ("POST", "/api/tickets")
    assert json.loads(body) == {"title": "A", "price": "1.50"}
    assert headers["Cookie"] == "session=the-jwt"
    assert headers["X-Forwarded-For"] == "198.51.100.7"
    assert headers["X-Request-ID"] == "req-123"
    assert headers["Host"] == "tickets.example.com"
    assert headers["Content-Type"] == "application/json"


def test_without_a_session_no_cookie_is_sent_and_nobody_is_signed_in(recorder):
    recorder.answers.append((200, [], b"[]"))
    api = api_for(url_of(recorder))

    assert api.current_user() is None  # no call needed to know that
    api.get("/api/tickets", params={"limit": "12", "cursor": ""})

    _, path, headers, _ = recorder.seen[0]
    assert len(recorder.seen) == 1
    assert path == "/api/tickets?limit=12"  # empty parameters are left out
    assert "Cookie" not in headers


def test_prices_are_decimals_never_floats(recorder):
    recorder.answers.append((200, [], b'[{"price": 19.99}, {"price": 1e2}]'))

    data = api_for(url_of(recorder)).get("/api/tickets").data

    assert data == [{"price": Decimal("19.99")}, {"price": Decimal("100")}]
    assert all(isinstance(item["price"], Decimal) for item in data)


def test_the_next_cursor_comes_from_the_link_header(recorder):
    link = '<http://x/api/tickets?limit=12&cursor=abc%3D%3D>; rel="next"'
    recorder.answers += [(200, [("Link", link)], b"[]"), (200, [], b"[]")]
    api = api_for(url_of(recorder))

    assert api.get("/api/tickets").next_cursor() == "abc=="
    assert api.get("/api/tickets").next_cursor() is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            400,
            b'{"errors": [{"message": "Title is required", "field": "title"}]}',
            [{"message": "Title is required", "field": "title"}],
        ),
        (
            402,
            b'{"errors": [{"message": "Your card was declined."}]}',
            [{"message": "Your card was declined."}],
        ),
        (400, b"not json", [{"message": "Something went wrong. Please try again."}]),
        (
            500,
            b'{"errors": [{"message": "Internal"}]}',
            [{"message": "Something went wrong. Please try again."}],
        ),
    ],
)
def test_errors_keep_the_apis_messages(recorder, status, body, expected):
    recorder.answers.append((status, [], body))

    with pytest.raises(ApiError) as raised:
        api_for(url_of(recorder)).post("/api/tickets", {})

    assert raised.type is ApiError
    assert (raised.value.status, raised.value.errors) == (status, expected)


@pytest.mark.parametrize(
    ("status", "body"),
    [(502, b'{"errors": [{"message": "Service unavailable"}]}'), (504, b""), (503, b"")],
)
def test_the_gateway_unable_to_answer_is_unavailable(recorder, status, body):
    recorder.answers.append((status, [], body))

    with pytest.raises(ApiUnavailable) as raised:
        api_for(url_of(recorder)).get("/api/tickets")

    assert raised.value.errors == [{"message": UNAVAILABLE_MESSAGE}]


def test_a_services_own_503_message_is_kept(recorder):
    body = b'{"errors": [{"message": "Payment provider unavailable"}]}'
    recorder.answers.append((503, [], body))

    with pytest.raises(ApiError) as raised:
        api_for(url_of(recorder)).post("/api/payments", {})

    assert raised.type is ApiError
    assert raised.value.message == "Payment provider unavailable"


@pytest.mark.parametrize("status", [429, 503])
def test_an_answer_with_retry_after_is_the_apis_answer_to_a_get_too(recorder, status):
    # The services send Retry-After with a 429 (and may with a 503): that is their answer,
    # with their message, not a failure to reach them.
    body = b'{"errors": [{"message": "Too many requests"}]}'
    recorder.answers.append((status, [("Retry-After", "30")], body))

    with pytest.raises(ApiError) as raised:
        api_for(url_of(recorder)).get("/api/payments/p1")

    assert raised.type is ApiError
    assert (raised.value.status, raised.value.message) == (status, "Too many requests")
    assert len(recorder.seen) == 1  # asked once, not again


def test_a_closed_port_is_unavailable_and_a_post_is_not_resent(recorder):
    port = recorder.server_address[1]
    recorder.shutdown()
    recorder.server_close()

    with pytest.raises(ApiUnavailable):
        api_for(f"http://127.0.0.1:{port}").post("/api/orders", {"ticketId": "x"})


def test_session_cookies_from_the_api_are_kept_and_used(stack):
    api = api_for(stack.url)
    email = unique_email("api")

    api.post("/api/users/signup", {"email": email, "password": PASSWORD})

    assert len(api.session_cookies) == 1
    assert api.session_cookies[0].startswith("session=")
    assert api.current_user()["email"] == email  # later calls act as the new session
    api.post("/api/users/signout")
    assert len(api.session_cookies) == 2
    assert api.session_token is None
    assert api.current_user() is None


def test_against_the_system_a_missing_ticket_is_a_404_in_the_error_shape(stack):
    with pytest.raises(ApiError) as raised:
        api_for(stack.url).get("/api/tickets/00000000-0000-4000-8000-000000000000")

    assert (raised.value.status, raised.value.errors) == (404, [{"message": "Not Found"}])


# --- who is signed in: the token, verified here ------------------------------------------

CURRENT_USER = "/api/users/currentuser"
HALF_LIFE_AGO = 900 // 2 + 10  # seconds: a token this old is due for renewal


def test_a_valid_token_says_who_is_signed_in_without_asking_auth(recorder, tokens):
    token = tokens(user_id="6f1c7d2a-58a6-4c5e-9a62-0b9d2a1f3e41", email="ann@example.com")
    api = api_for(url_of(recorder), token=token)

    api.begin()
    user = api.current_user()

    claims = jwt.decode(token, options={"verify_signature": False})
    assert user == {
        "id": "6f1c7d2a-58a6-4c5e-9a62-0b9d2a1f3e41",
        "email": "ann@example.com",
        "iat": claims["iat"],
        "exp": claims["exp"],
    }
    assert api.cookies_for_browser() == []
    assert recorder.seen == []  # nobody was asked


def _foreign_token() -> str:
    other = generate_keypair()
    now = int(time.time())
    claims = {"id": "6f1c7d2a-58a6-4c5e-9a62-0b9d2a1f3e41", "email": "x@example.com",
              "iat": now, "exp": now + 900}  # fmt: skip
    return jwt.encode(claims, other.private_pem, algorithm="EdDSA")


@pytest.mark.parametrize("kind", ["expired", "another key", "alg none", "garbage"])
def test_a_token_that_does_not_verify_is_nobody_and_asks_nobody(recorder, tokens, kind):
    token = {
        "expired": lambda: tokens(now=int(time.time()) - 1000),
        "another key": _foreign_token,
        "alg none": lambda: jwt.encode(
            jwt.decode(tokens(), options={"verify_signature": False}), None, algorithm="none"
        ),
        "garbage": lambda: "not.a.token",
    }[kind]()
    api = api_for(url_of(recorder), token=token)

    api.begin()

    assert api.current_user() is None
    assert api.cookies_for_browser() == []
    assert recorder.seen == []


def _renewed(token: str) -> tuple[int, list[tuple[str, str]], bytes]:
    claims = jwt.decode(token, options={"verify_signature": False})
    body = {"currentUser": {k: claims[k] for k in ("id", "email", "iat", "exp")}}
    cookie = f"session={token}; HttpOnly; Max-Age=900; Path=/; SameSite=Lax"
    return 200, [("Set-Cookie", cookie)], json.dumps(body).encode()


def test_a_token_due_for_renewal_is_renewed_beside_the_pages_own_call(recorder, tokens):
    old = tokens(email="bo@example.com", now=int(time.time()) - HALF_LIFE_AGO)
    new = tokens(email="bo@example.com")
    recorder.routes[CURRENT_USER] = _renewed(new)
    recorder.routes["/api/tickets"] = (200, [], b"[]")
    # Each call is answered only while the other is in flight too: in turn, both fail.
    recorder.answer_together({CURRENT_USER, "/api/tickets"}, 2)
    api = api_for(url_of(recorder), token=old)

    api.begin()
    listing = api.get("/api/tickets")

    assert listing.data == []
    renewed_claims = jwt.decode(new, options={"verify_signature": False})
    assert api.current_user()["iat"] == renewed_claims["iat"]
    assert api.cookies_for_browser() == [recorder.routes[CURRENT_USER][1][0][1]]
    renewal = next(seen for seen in recorder.seen if seen[1] == CURRENT_USER)
    assert renewal[2]["Cookie"] == f"session={old}"  # asked for the browser's token
    assert sorted(seen[1] for seen in recorder.seen) == ["/api/tickets", CURRENT_USER]


def test_the_pages_own_session_cookie_wins_over_a_renewal(recorder, tokens):
    old = tokens(now=int(time.time()) - HALF_LIFE_AGO)
    recorder.routes[CURRENT_USER] = _renewed(tokens())
    cleared = 'session=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/'
    recorder.routes["/api/users/signout"] = (200, [("Set-Cookie", cleared)], b"{}")
    api = api_for(url_of(recorder), token=old)

    api.begin()
    api.post("/api/users/signout")

    assert api.cookies_for_browser() == [cleared]
    assert api.current_user() is None


def test_a_renewal_that_finds_the_session_ended_signs_the_browser_out(recorder, tokens):
    cleared = 'session=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/'
    recorder.routes[CURRENT_USER] = (200, [("Set-Cookie", cleared)], b'{"currentUser": null}')
    api = api_for(url_of(recorder), token=tokens(now=int(time.time()) - HALF_LIFE_AGO))

    api.begin()

    assert api.current_user() is None
    assert api.cookies_for_browser() == [cleared]


def test_a_failed_renewal_leaves_the_token_as_it_is(recorder, tokens):
    recorder.routes[CURRENT_USER] = (502, [], b"")
    token = tokens(email="cy@example.com", now=int(time.time()) - HALF_LIFE_AGO)
    api = api_for(url_of(recorder), token=token)

    api.begin()

    assert api.current_user()["email"] == "cy@example.com"
    assert api.cookies_for_browser() == []
    assert [seen[1] for seen in recorder.seen] == [CURRENT_USER]

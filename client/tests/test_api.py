"""storefront.api against real HTTP servers: a recording server for what is sent, the
running system for what comes back."""

import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from storefront.api import UNAVAILABLE_MESSAGE, Api, ApiError, ApiUnavailable
from tests.conftest import PASSWORD, unique_email


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the status and body queued on the server, and keeps
    what it was sent."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.seen.append(
            (self.command, self.path, dict(self.headers), self.rfile.read(length))
        )
        status, headers, body = self.server.answers.pop(0)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def recorder():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.seen, server.answers = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def api_for(base_url, token=None, host="localhost"):
    return Api(
        session_token=token,
        client_ip="198.51.100.7",
        request_id="req-123",
        host=host,
        base_url=base_url,
    )


def url_of(server):
    return f"http://127.0.0.1:{server.server_address[1]}"


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

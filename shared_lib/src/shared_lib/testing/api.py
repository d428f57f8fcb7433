"""Checks of what every service's HTTP API answers alike: the error shape, JSON whatever a
browser's Accept, bounded JSON nesting, the admin's sign-on, the docs and the probes.

    from shared_lib.testing import api
    def test_deep(signed_in_client):
        api.assert_deep_json_refused(signed_in_client(), "/api/tickets", 400, JSON_TOO_DEEP)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# shared_lib's own modules are imported where used: they read Django's settings, and this
# module must import before (or without) them.

# What a browser sends on a page load; a server-rendered client may forward it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
# Accept headers that must still get JSON back (for `pytest.mark.parametrize`).
BROWSER_ACCEPTS = (BROWSER_ACCEPT, "text/html", "application/xml")
# The two ways a request carries a session token (for `carry_token`).
TOKEN_CARRIERS = ("cookie", "bearer")
# Nested far past any recursion limit: the parser must refuse it, not crash on it.
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def errors(*items: tuple[str, ...]) -> dict[str, list[dict[str, str]]]:
    """The error body: `errors((message,), (message, field))`."""
    return {"errors": [dict(zip(("message", "field"), item, strict=False)) for item in items]}


def bearer(token: str) -> dict[str, str]:
    """The request extras that carry session `token` as a Bearer token."""
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def carry_token(client: Any, token: str, carrier: str) -> None:
    """Make every request of `client` (DRF's APIClient) carry the session `token` the way
    `carrier` names: "cookie", the session cookie; "bearer", the Authorization header."""
    from shared_lib.auth import SESSION_COOKIE

    if carrier == "cookie":
        client.cookies[SESSION_COOKIE] = token
    else:
        assert carrier == "bearer", carrier
        client.credentials(**bearer(token))


def assert_json(response: Any, status: int) -> Any:
    """`response` is `status` with a JSON body; returns that body."""
    assert (response.status_code, response["Content-Type"]) == (status, "application/json")
    return response.json()


def assert_reads_answer_json(client: Any, accept: str, collection: str, item: Any) -> None:
    """Read with `accept`, `collection` lists exactly `item` and `collection/<id>` shows it,
    each a 200 JSON answer."""
    listed = client.get(collection, HTTP_ACCEPT=accept)
    shown = client.get(f"{collection}/{item['id']}", HTTP_ACCEPT=accept)

    assert assert_json(listed, 200) == [item]
    assert assert_json(shown, 200) == item


def assert_deep_json_refused(client: Any, path: str, status: int, message: str) -> None:
    """POSTing DEEP_JSON to `path` is `status` with the single error `message`."""
    response = client.generic("POST", path, DEEP_JSON, content_type="application/json")

    assert response.status_code == status
    assert response.json() == errors((message,))


def assert_deep_json_refused_signed_in_or_not(
    anonymous: Any, signed_in: Any, path: str, *, unwritten: Iterable[Any]
) -> None:
    """For an API that asks for a session before it reads a body: DEEP_JSON from
    `anonymous` is a 401 (never parsed), from `signed_in` the parser's 400; and neither
    wrote anything: no row of the `unwritten` models, no outbox event."""
    from shared_lib.errors import NOT_AUTHORIZED
    from shared_lib.models import OutboxEvent
    from shared_lib.parsers import JSON_TOO_DEEP

    assert_deep_json_refused(anonymous, path, 401, NOT_AUTHORIZED)
    assert_deep_json_refused(signed_in, path, 400, JSON_TOO_DEEP)
    for model in (*unwritten, OutboxEvent):
        assert not model.objects.exists(), model.__name__


def assert_docs_link_to_browsable_api(client: Any, schema: str, browsable: str) -> None:
    """The schema's description (the docs page's text) links to `browsable`, which a
    browser gets as DRF's HTML page."""
    description = client.get(schema, HTTP_ACCEPT="application/json").json()["info"]["description"]

    assert f"[{browsable}]({browsable})" in description
    page = client.get(browsable, HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Django REST framework" in page.content.decode()


def assert_admin_sends_anonymous_to_sign_in(client: Any, admin: str) -> None:
    """An anonymous visit to the admin at `admin` goes to the site's sign-in (single
    sign-on), which brings the visitor back."""
    response = client.get(admin)

    assert response.status_code == 302
    assert response["Location"] == f"/auth/signin?next={admin}"


def assert_unknown_route_is_json_404(client: Any, path: str) -> None:
    """A GET of `path`, which no route serves, is the JSON 404, not Django's HTML page."""
    from shared_lib.errors import NOT_FOUND

    response = client.get(path)

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


def assert_method_not_allowed(client: Any, method: str, path: str, allowed: str) -> None:
    """`method` on `path` is a JSON 405 whose Allow header lists `allowed`."""
    from shared_lib.errors import METHOD_NOT_ALLOWED

    response = getattr(client, method)(path, {}, format="json")

    assert response.status_code == 405
    assert response.json() == errors((METHOD_NOT_ALLOWED,))
    assert response["Allow"] == allowed


def assert_docs_page(client: Any, docs: str) -> None:
    """The Swagger UI page answers at `docs`."""
    response = client.get(docs)

    assert response.status_code == 200
    assert b"swagger" in response.content.lower()


def assert_ready_on_the_database_alone(client: Any) -> None:
    """/readyz is ready on the database's check alone: the broker is not among them."""
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


def one_winner(responses: Iterable[Any], loser_status: int, loser_message: str) -> Any:
    """Of racing requests exactly one succeeded (201) and every other lost with
    `loser_status` and `loser_message`; returns the winner's JSON body."""
    answers = list(responses)
    statuses = sorted(r.status_code for r in answers)
    assert statuses == sorted([201] + [loser_status] * (len(answers) - 1))
    for answer in answers:
        if answer.status_code == loser_status:
            assert answer.json() == errors((loser_message,))
    [winner] = [r.json() for r in answers if r.status_code == 201]
    return winner

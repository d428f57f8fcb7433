"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import pytest

from orders.models import Order
from shared_lib.errors import NOT_AUTHORIZED
from shared_lib.models import OutboxEvent
from shared_lib.parsers import JSON_TOO_DEEP
from tests.factories import order_json, order_row, ticket_replica

pytestmark = pytest.mark.django_db

# What a browser sends on a page load; the original web client forwards it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_reads_answer_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    listed = buyer.get("/api/orders", HTTP_ACCEPT=accept)
    shown = buyer.get(f"/api/orders/{order.id}", HTTP_ACCEPT=accept)

    assert (listed.status_code, listed["Content-Type"]) == (200, "application/json")
    assert listed.json() == [order_json(order)]
    assert (shown.status_code, shown["Content-Type"]) == (200, "application/json")
    assert shown.json() == order_json(order)


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_writes_answer_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    ticket = ticket_replica()

    created = buyer.post(
        "/api/orders", {"ticketId": str(ticket.id)}, format="json", HTTP_ACCEPT=accept
    )

    assert (created.status_code, created["Content-Type"]) == (201, "application/json")
    order = Order.objects.get()
    assert created.json() == order_json(order)

    cancelled = buyer.delete(f"/api/orders/{order.id}", HTTP_ACCEPT=accept)

    assert cancelled.status_code == 204
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED


def test_an_anonymous_read_is_a_json_401_for_a_browser(api_client):
    response = api_client.get("/api/orders", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert (response.status_code, response["Content-Type"]) == (401, "application/json")
    assert response.json() == {"errors": [{"message": NOT_AUTHORIZED}]}


def test_deeply_nested_json_is_a_400_with_a_session(signed_in_client):
    response = signed_in_client().generic(
        "POST", "/api/orders", DEEP, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": JSON_TOO_DEEP}]}
    assert not Order.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_deeply_nested_json_without_a_session_is_refused_before_it_is_read(api_client):
    # Order of checks: signed in first, so the body is never parsed.
    response = api_client.generic("POST", "/api/orders", DEEP, content_type="application/json")

    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": NOT_AUTHORIZED}]}
    assert not Order.objects.exists()


def test_the_docs_page_links_to_the_browsable_api(api_client):
    schema = api_client.get("/api/orders/schema", HTTP_ACCEPT="application/json").json()

    link = "[/api/orders?format=api](/api/orders?format=api)"
    assert link in schema["info"]["description"]
    page = api_client.get("/api/orders?format=api", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Django REST framework" in page.content.decode()

"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import base64

import pytest

from shared_lib.errors import NOT_AUTHORIZED
from shared_lib.models import OutboxEvent
from shared_lib.pagination import INVALID_CURSOR
from shared_lib.parsers import JSON_TOO_DEEP
from tests.factories import make_ticket, ticket_json
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

# What a browser sends on a page load; the original web client forwards it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_reads_answer_json_to_a_browser(api_client, accept):
    ticket = make_ticket()

    listed = api_client.get("/api/tickets", HTTP_ACCEPT=accept)
    shown = api_client.get(f"/api/tickets/{ticket.id}", HTTP_ACCEPT=accept)

    assert (listed.status_code, listed["Content-Type"]) == (200, "application/json")
    assert listed.json() == [ticket_json(ticket)]
    assert (shown.status_code, shown["Content-Type"]) == (200, "application/json")
    assert shown.json() == ticket_json(ticket)


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_a_write_answers_json_to_a_browser(seller, accept):
    response = seller.post(
        "/api/tickets", {"title": "Concert", "price": "20.50"}, format="json", HTTP_ACCEPT=accept
    )

    assert (response.status_code, response["Content-Type"]) == (201, "application/json")
    assert response.json() == ticket_json(Ticket.objects.get())


def test_an_anonymous_write_is_a_json_401_for_a_browser(api_client):
    response = api_client.post(
        "/api/tickets", {"title": "Concert", "price": "1"}, format="json", HTTP_ACCEPT="text/html"
    )

    assert (response.status_code, response["Content-Type"]) == (401, "application/json")
    assert response.json() == {"errors": [{"message": NOT_AUTHORIZED}]}


def test_the_browsable_api_is_served_on_request(api_client):
    response = api_client.get("/api/tickets?format=api")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"


def test_deeply_nested_json_is_a_400_with_a_session(seller):
    response = seller.generic("POST", "/api/tickets", DEEP, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": JSON_TOO_DEEP}]}
    assert not Ticket.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_a_deeply_nested_cursor_is_a_400_without_a_session(api_client):
    cursor = base64.urlsafe_b64encode(b"[" * 5_000).rstrip(b"=").decode()

    response = api_client.get("/api/tickets", {"cursor": cursor})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": INVALID_CURSOR, "field": "cursor"}]}


def test_the_docs_page_links_to_the_browsable_api(api_client):
    schema = api_client.get("/api/tickets/schema", HTTP_ACCEPT="application/json").json()

    link = "[/api/tickets?format=api](/api/tickets?format=api)"
    assert link in schema["info"]["description"]
    page = api_client.get("/api/tickets?format=api", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Django REST framework" in page.content.decode()

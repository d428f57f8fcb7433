"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import base64

import pytest

from shared_lib.errors import NOT_AUTHORIZED
from shared_lib.models import OutboxEvent
from shared_lib.pagination import INVALID_CURSOR
from shared_lib.parsers import JSON_TOO_DEEP
from shared_lib.testing import api
from tests.factories import make_ticket, ticket_json
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
def test_reads_answer_json_to_a_browser(api_client, accept):
    ticket = make_ticket()

    api.assert_reads_answer_json(api_client, accept, "/api/tickets", ticket_json(ticket))


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
def test_a_write_answers_json_to_a_browser(seller, accept):
    response = seller.post(
        "/api/tickets", {"title": "Concert", "price": "20.50"}, format="json", HTTP_ACCEPT=accept
    )

    assert api.assert_json(response, 201) == ticket_json(Ticket.objects.get())


def test_an_anonymous_write_is_a_json_401_for_a_browser(api_client):
    response = api_client.post(
        "/api/tickets", {"title": "Concert", "price": "1"}, format="json", HTTP_ACCEPT="text/html"
    )

    assert api.assert_json(response, 401) == api.errors((NOT_AUTHORIZED,))


def test_the_browsable_api_is_served_on_request(api_client):
    response = api_client.get("/api/tickets?format=api")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"


def test_deeply_nested_json_is_a_400_with_a_session(seller):
    api.assert_deep_json_refused(seller, "/api/tickets", 400, JSON_TOO_DEEP)

    assert not Ticket.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_a_deeply_nested_cursor_is_a_400_without_a_session(api_client):
    cursor = base64.urlsafe_b64encode(b"[" * 5_000).rstrip(b"=").decode()

    response = api_client.get("/api/tickets", {"cursor": cursor})

    assert response.status_code == 400
    assert response.json() == api.errors((INVALID_CURSOR, "cursor"))


def test_the_docs_page_links_to_the_browsable_api(api_client):
    api.assert_docs_link_to_browsable_api(
        api_client, "/api/tickets/schema", "/api/tickets?format=api"
    )

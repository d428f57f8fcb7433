"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import pytest

from orders.models import Order
from shared_lib.errors import NOT_AUTHORIZED
from shared_lib.testing import api
from tests.factories import order_json, order_row, ticket_replica

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
def test_reads_answer_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    api.assert_reads_answer_json(buyer, accept, "/api/orders", order_json(order))


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
def test_writes_answer_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    ticket = ticket_replica()

    created = buyer.post(
        "/api/orders", {"ticketId": str(ticket.id)}, format="json", HTTP_ACCEPT=accept
    )

    body = api.assert_json(created, 201)
    order = Order.objects.get()
    assert body == order_json(order)

    cancelled = buyer.delete(f"/api/orders/{order.id}", HTTP_ACCEPT=accept)

    assert cancelled.status_code == 204
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED


def test_an_anonymous_read_is_a_json_401_for_a_browser(api_client):
    response = api_client.get("/api/orders", HTTP_ACCEPT=api.BROWSER_ACCEPT)

    assert api.assert_json(response, 401) == api.errors((NOT_AUTHORIZED,))


def test_deeply_nested_json_is_refused_with_or_without_a_session(api_client, signed_in_client):
    # Without a session it is refused before it is read: sign-in is checked first.
    api.assert_deep_json_refused_signed_in_or_not(
        api_client, signed_in_client(), "/api/orders", unwritten=(Order,)
    )


def test_the_docs_page_links_to_the_browsable_api(api_client):
    api.assert_docs_link_to_browsable_api(
        api_client, "/api/orders/schema", "/api/orders?format=api"
    )

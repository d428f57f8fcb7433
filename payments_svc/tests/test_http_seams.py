"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import uuid

import pytest

from payments.models import Payment, PaymentAttempt
from shared_lib.errors import NOT_AUTHORIZED, NOT_FOUND
from shared_lib.models import OutboxEvent
from shared_lib.parsers import JSON_TOO_DEEP
from tests.factories import GOOD_CARD, order_replica

pytestmark = pytest.mark.django_db

# What a browser sends on a page load; the original web client forwards it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_a_payment_answers_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(
        "/api/payments",
        {"orderId": str(order.id), "token": GOOD_CARD},
        format="json",
        HTTP_ACCEPT=accept,
    )

    assert (response.status_code, response["Content-Type"]) == (201, "application/json")
    assert response.json() == {"id": str(Payment.objects.get(order=order).id)}


def test_an_error_answers_json_to_a_browser(signed_in_client):
    response = signed_in_client().post(
        "/api/payments",
        {"orderId": str(uuid.uuid4()), "token": GOOD_CARD},
        format="json",
        HTTP_ACCEPT=BROWSER_ACCEPT,
    )

    assert (response.status_code, response["Content-Type"]) == (404, "application/json")
    assert response.json() == {"errors": [{"message": NOT_FOUND}]}
    assert not PaymentAttempt.objects.exists()


def test_deeply_nested_json_is_a_400_with_a_session(signed_in_client):
    response = signed_in_client().generic(
        "POST", "/api/payments", DEEP, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": JSON_TOO_DEEP}]}
    assert not PaymentAttempt.objects.exists()
    assert not OutboxEvent.objects.exists()


def test_deeply_nested_json_without_a_session_is_refused_before_it_is_read(api_client):
    # Order of checks: signed in first, so the body is never parsed.
    response = api_client.generic("POST", "/api/payments", DEEP, content_type="application/json")

    assert response.status_code == 401
    assert response.json() == {"errors": [{"message": NOT_AUTHORIZED}]}
    assert not PaymentAttempt.objects.exists()


def test_the_docs_page_links_to_the_browsable_api(api_client):
    schema = api_client.get("/api/payments/schema", HTTP_ACCEPT="application/json").json()

    link = "[/api/payments?format=api](/api/payments?format=api)"
    assert link in schema["info"]["description"]
    page = api_client.get("/api/payments?format=api", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Django REST framework" in page.content.decode()

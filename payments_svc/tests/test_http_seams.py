"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import uuid

import pytest

from payments.models import Payment, PaymentAttempt
from shared_lib.errors import NOT_FOUND
from shared_lib.testing import api
from tests.factories import GOOD_CARD, order_replica

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
def test_a_payment_answers_json_to_a_browser(signed_in_client, accept):
    buyer = signed_in_client()
    order = order_replica(user_id=buyer.user_id)

    response = buyer.post(
        "/api/payments",
        {"orderId": str(order.id), "token": GOOD_CARD},
        format="json",
        HTTP_ACCEPT=accept,
    )

    assert api.assert_json(response, 201) == {"id": str(Payment.objects.get(order=order).id)}


def test_an_error_answers_json_to_a_browser(signed_in_client):
    response = signed_in_client().post(
        "/api/payments",
        {"orderId": str(uuid.uuid4()), "token": GOOD_CARD},
        format="json",
        HTTP_ACCEPT=api.BROWSER_ACCEPT,
    )

    assert api.assert_json(response, 404) == api.errors((NOT_FOUND,))
    assert not PaymentAttempt.objects.exists()


def test_deeply_nested_json_is_refused_with_or_without_a_session(api_client, signed_in_client):
    # Without a session it is refused before it is read: sign-in is checked first.
    api.assert_deep_json_refused_signed_in_or_not(
        api_client, signed_in_client(), "/api/payments", unwritten=(PaymentAttempt,)
    )


def test_the_docs_page_links_to_the_browsable_api(api_client):
    api.assert_docs_link_to_browsable_api(
        api_client, "/api/payments/schema", "/api/payments?format=api"
    )

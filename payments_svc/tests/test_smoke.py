import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from payments.models import OrderReplica, Payment

pytestmark = pytest.mark.django_db


def test_a_buyer_pays_for_their_order_through_stripe(signed_in_client):
    client = signed_in_client()
    order = OrderReplica.objects.create(
        id=uuid.uuid4(),
        user_id=client.user_id,
        price="20.50",
        status="created",
        expires_at=timezone.now() + timedelta(minutes=15),
        version=0,
    )

    response = client.post(
        "/api/payments", {"orderId": str(order.id), "token": "pm_card_visa"}, format="json"
    )

    assert response.status_code == 201
    payment = Payment.objects.get()
    assert response.json() == {"id": str(payment.id)}
    assert payment.amount_cents == 2050
    assert payment.stripe_id.startswith("pi_")

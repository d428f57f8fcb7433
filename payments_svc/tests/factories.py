"""Small factories: order replicas through the real consumer path, attempts as rows."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from payments.models import OrderReplica, PaymentAttempt
from shared_lib.events.consumer import Outcome
from shared_lib.events.registry import Event
from shared_lib.testing.events import deliver, make_event

GOOD_CARD = "pm_card_visa"
DECLINED_CARD = "pm_card_chargeCustomerFail"
# Stripe's test card whose holder must authenticate (3-D Secure 2) before any charge.
THREE_DS_CARD = "pm_card_threeDSecure2Required"
DECLINED = "Your card was declined."  # localstripe's message, as Stripe words it


def order_data(
    *,
    order_id: uuid.UUID | str | None = None,
    version: int = 0,
    status: str = "created",
    user_id: uuid.UUID | str | None = None,
    price: str = "20.50",
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """An order.created payload as orders_svc publishes it."""
    return {
        "id": str(order_id or uuid.uuid4()),
        "version": version,
        "status": status,
        "userId": str(user_id or uuid.uuid4()),
        "expiresAt": (expires_at or timezone.now() + timedelta(minutes=15)).isoformat(),
        "ticket": {"id": str(uuid.uuid4()), "price": price},
    }


def cancelled_event(order: OrderReplica | uuid.UUID | str, *, version: int = 1, **fields) -> Event:
    order_id = getattr(order, "id", order)
    data = {"id": str(order_id), "version": version, "ticket": {"id": str(uuid.uuid4())}}
    return make_event("order.cancelled", data, **fields)


def completed_event(order: OrderReplica | uuid.UUID | str, *, version: int = 1, **fields) -> Event:
    order_id = getattr(order, "id", order)
    return make_event("order.completed", {"id": str(order_id), "version": version}, **fields)


def order_replica(
    *,
    user_id: uuid.UUID | str | None = None,
    price: str = "20.50",
    status: str = "created",
    expires_in: timedelta = timedelta(minutes=15),
) -> OrderReplica:
    """An order as payments_svc learns of it: order.created (then its next event)."""
    data = order_data(user_id=user_id, price=price, expires_at=timezone.now() + expires_in)
    assert deliver(make_event("order.created", data)) is Outcome.APPLIED
    if status == OrderReplica.Status.CANCELLED:
        assert deliver(cancelled_event(data["id"])) is Outcome.APPLIED
    elif status == OrderReplica.Status.COMPLETE:
        assert deliver(completed_event(data["id"])) is Outcome.APPLIED
    return OrderReplica.objects.get(id=data["id"])


def attempt_row(
    order: OrderReplica,
    *,
    status: str,
    token: str = GOOD_CARD,
    age: timedelta = timedelta(0),
) -> PaymentAttempt:
    """An attempt left behind by an earlier request (in flight, crashed, or timed out)."""
    at = timezone.now() - age
    return PaymentAttempt.objects.create(
        order=order,
        token=token,
        amount_cents=order.amount_cents,
        status=status,
        created_at=at,
        updated_at=at,
    )

"""Small factories: ticket rows and the order events tickets_svc consumes.

Tickets are written straight to the table (no outbox row), so a test that counts
published events sees only the ones its own action caused.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from shared_lib.events.contracts import Subject
from shared_lib.events.registry import Event
from shared_lib.models import OutboxEvent
from shared_lib.testing.events import make_event
from tickets.models import Ticket


def make_ticket(
    *,
    user_id: uuid.UUID | str | None = None,
    title: str = "Concert",
    price: str = "20.00",
    order_id: uuid.UUID | None = None,
    version: int = 0,
    created_at: datetime | None = None,
    sold_at: datetime | None = None,
    withdrawn_at: datetime | None = None,
    user_email: str = "",
) -> Ticket:
    return Ticket.objects.create(
        user_id=user_id or uuid.uuid4(),
        title=title,
        price=Decimal(price),
        order_id=order_id,
        version=version,
        created_at=created_at or timezone.now(),
        sold_at=sold_at,
        withdrawn_at=withdrawn_at,
        user_email=user_email,
    )


def make_tickets(count: int, *, newest: datetime | None = None, **fields: Any) -> list[Ticket]:
    """`count` tickets one second apart, newest first (the list's order)."""
    newest = newest or timezone.now()
    rows = [
        Ticket(
            user_id=fields.get("user_id") or uuid.uuid4(),
            title=f"Ticket {index}",
            price=Decimal("10.00") + index,
            order_id=fields.get("order_id"),
            created_at=newest - timedelta(seconds=index),
        )
        for index in range(count)
    ]
    return Ticket.objects.bulk_create(rows)


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """The API's representation of a ticket row (price a JSON number)."""
    return {
        "id": str(ticket.id),
        "title": ticket.title,
        "price": float(ticket.price),
        "userId": str(ticket.user_id),
        "version": ticket.version,
        "orderId": str(ticket.order_id) if ticket.order_id else None,
        "status": ticket.status,
    }


def order_created(
    *, ticket_id: uuid.UUID, order_id: uuid.UUID, price: str = "20.00", **fields: Any
) -> Event:
    return make_event(
        Subject.ORDER_CREATED,
        {
            "id": str(order_id),
            "version": 0,
            "status": "created",
            "userId": str(uuid.uuid4()),
            "expiresAt": (timezone.now() + timedelta(minutes=15)).isoformat(),
            "ticket": {"id": str(ticket_id), "price": price},
        },
        **fields,
    )


def order_cancelled(
    *, ticket_id: uuid.UUID, order_id: uuid.UUID, version: int = 1, **fields: Any
) -> Event:
    return make_event(
        Subject.ORDER_CANCELLED,
        {"id": str(order_id), "version": version, "ticket": {"id": str(ticket_id)}},
        **fields,
    )


def order_completed(*, order_id: uuid.UUID, version: int = 1, **fields: Any) -> Event:
    return make_event(Subject.ORDER_COMPLETED, {"id": str(order_id), "version": version}, **fields)


def published() -> list[tuple[str, dict[str, Any]]]:
    """Every outbox row written so far, oldest first: [(subject, data), ...]."""
    return [(row.subject, row.data) for row in OutboxEvent.objects.order_by("created_at")]

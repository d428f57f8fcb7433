"""Small factories: ticket replicas through the real consumer path, orders as rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone

from orders.models import Order, TicketReplica
from shared_lib.events.consumer import Outcome
from shared_lib.testing.events import deliver, make_event


def ticket_data(
    *,
    ticket_id: uuid.UUID | str | None = None,
    version: int = 0,
    title: str = "Concert",
    price: str = "20.00",
    user_id: uuid.UUID | str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ticket.created / ticket.updated payload as tickets_svc publishes it."""
    return {
        "id": str(ticket_id or uuid.uuid4()),
        "version": version,
        "title": title,
        "price": price,
        "userId": str(user_id or uuid.uuid4()),
        **extra,
    }


def ticket_replica(**fields: Any) -> TicketReplica:
    """A ticket as orders_svc learns of it: a ticket.created event through the inbox."""
    data = ticket_data(**fields)
    assert deliver(make_event("ticket.created", data)) is Outcome.APPLIED
    return TicketReplica.objects.get(id=data["id"])


def ticket_update(ticket: TicketReplica, **fields: Any) -> Outcome:
    """Deliver ticket.updated for the next version (or the one given)."""
    data = ticket_data(
        ticket_id=ticket.id,
        version=fields.pop("version", ticket.version + 1),
        title=fields.pop("title", ticket.title),
        price=fields.pop("price", str(ticket.price)),
        user_id=fields.pop("user_id", ticket.user_id),
        **fields,
    )
    return deliver(make_event("ticket.updated", data))


def order_row(
    *,
    ticket: TicketReplica | None = None,
    user_id: uuid.UUID | str | None = None,
    status: str = Order.Status.CREATED,
    version: int = 0,
    created_at: datetime | None = None,
    expires_in: timedelta = timedelta(minutes=15),
    price: str | None = None,
    user_email: str = "",
) -> Order:
    """An order written straight to the table (no event): the state a test starts from.
    Its price is the ticket's unless given."""
    now = timezone.now()
    ticket = ticket or ticket_replica()
    return Order.objects.create(
        ticket=ticket,
        price=price if price is not None else ticket.price,
        user_id=uuid.UUID(str(user_id)) if user_id else uuid.uuid4(),
        user_email=user_email,
        status=status,
        version=version,
        created_at=created_at or now,
        updated_at=created_at or now,
        expires_at=(created_at or now) + expires_in,
    )


def iso(value: datetime) -> str:
    """A datetime as the API renders it (ISO 8601, UTC as Z)."""
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def order_json(order: Order) -> dict[str, Any]:
    """The API's view of an order, written out independently of its serializer."""
    order.refresh_from_db()
    ticket = TicketReplica.objects.get(id=order.ticket_id)
    return {
        "id": str(order.id),
        "userId": str(order.user_id),
        "status": order.status,
        "expiresAt": iso(order.expires_at),
        "ticket": {
            "id": str(ticket.id),
            "title": ticket.title,
            "price": float(order.price),
            "version": ticket.version,
        },
        "version": order.version,
    }

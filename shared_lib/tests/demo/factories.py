"""Small factories of valid event payloads (wire form: UUIDs and money as strings)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from shared_lib.events.contracts import Subject

EXPIRES_AT = "2030-01-01T12:15:00Z"


def new_id() -> str:
    return str(uuid.uuid4())


def ticket_data(
    *,
    id: str | None = None,
    version: int = 0,
    title: str = "Front row",
    price: str = "20.50",
    user_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id or new_id(),
        "version": version,
        "title": title,
        "price": price,
        "userId": user_id or new_id(),
        **extra,
    }


def order_created_data(
    *,
    id: str | None = None,
    version: int = 0,
    ticket_id: str | None = None,
    price: str = "20.50",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": id or new_id(),
        "version": version,
        "status": "created",
        "userId": new_id(),
        "expiresAt": EXPIRES_AT,
        "ticket": {"id": ticket_id or new_id(), "price": price},
        **extra,
    }


def order_cancelled_data(
    *, id: str | None = None, version: int = 1, ticket_id: str | None = None
) -> dict[str, Any]:
    return {"id": id or new_id(), "version": version, "ticket": {"id": ticket_id or new_id()}}


def example_data(subject: Subject) -> dict[str, Any]:
    """One valid payload per subject."""
    return {
        Subject.TICKET_CREATED: ticket_data,
        Subject.TICKET_UPDATED: lambda: ticket_data(version=1, orderId=new_id(), onSale=True),
        Subject.ORDER_CREATED: order_created_data,
        Subject.ORDER_CANCELLED: order_cancelled_data,
        Subject.ORDER_COMPLETED: lambda: {"id": new_id(), "version": 2},
        Subject.EXPIRATION_COMPLETE: lambda: {"orderId": new_id()},
        Subject.PAYMENT_CREATED: lambda: {
            "id": new_id(),
            "orderId": new_id(),
            "stripeId": "ch_3PqXyZ2eZvKYlo2C1a2b3c4d",
        },
    }[subject]()


def envelope(
    subject: Subject | str, data: Any, *, id: str | None = None, occurred_at: datetime | None = None
) -> dict[str, Any]:
    """A wire envelope `{id, subject, occurredAt, data}` as the outbox sends it."""
    occurred_at = occurred_at or datetime.now(UTC) - timedelta(seconds=1)
    return {
        "id": id or new_id(),
        "subject": str(subject),
        "occurredAt": occurred_at.isoformat(),
        "data": data,
    }

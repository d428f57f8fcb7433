"""Every order write and rule: buying (the reservation), cancelling, expiry, payment."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from orders.models import Order, TicketReplica
from shared_lib.errors import BadRequest, NotFound
from shared_lib.events import Subject, publish
from shared_lib.events.versioning import Applied, apply_to_replica
from shared_lib.ids import invalid_message, parse_id, required_message

logger = logging.getLogger(__name__)

TICKET_ID_REQUIRED = required_message("ticketId")  # "TicketId must be provided"
TICKET_ID_INVALID = invalid_message("ticketId")  # "TicketId must be a valid id"
TICKET_RESERVED = "Ticket is already reserved"
OWN_TICKET = "You cannot buy your own ticket"
ORDER_COMPLETE = "Cannot cancel a completed order"


def order_created_data(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "version": order.version,
        "status": order.status,
        "userId": order.user_id,
        "expiresAt": order.expires_at,
        "ticket": {"id": order.ticket_id, "price": order.ticket.price},
    }


def order_create(*, user_id: uuid.UUID, ticket_id: Any) -> Order:
    """Reserve a ticket: 404 unknown, 400 your own, 400 already reserved (by the database)."""
    parsed_id = parse_id(ticket_id, field="ticketId")
    ticket = TicketReplica.objects.filter(id=parsed_id).first()
    if ticket is None:
        raise NotFound()
    if ticket.user_id == user_id:
        raise BadRequest(OWN_TICKET)
    expires_at = timezone.now() + timedelta(seconds=settings.EXPIRATION_WINDOW_SECONDS)
    try:
        with transaction.atomic():
            order = Order.objects.create(user_id=user_id, ticket=ticket, expires_at=expires_at)
            publish(Subject.ORDER_CREATED, order_created_data(order))
    except IntegrityError:
        # orders_one_active_order_per_ticket: another buyer's order holds the ticket.
        raise BadRequest(TICKET_RESERVED) from None
    return order


def _move(order: Order, status: str) -> None:
    order.status = status
    order.version += 1
    order.updated_at = timezone.now()
    order.save(update_fields=["status", "version", "updated_at"])


def _cancel(order: Order) -> None:
    _move(order, Order.Status.CANCELLED)
    publish(
        Subject.ORDER_CANCELLED,
        {"id": order.id, "version": order.version, "ticket": {"id": order.ticket_id}},
    )


def order_cancel(*, order_id: uuid.UUID, user_id: uuid.UUID) -> Order:
    """The buyer cancels: idempotent for a cancelled order, refused for a complete one."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=order_id, user_id=user_id).first()
        if order is None:
            raise NotFound()
        if order.status == Order.Status.CANCELLED:
            return order  # already done: 204 again, and nothing new is published
        if not order.can_become(Order.Status.CANCELLED):
            raise BadRequest(ORDER_COMPLETE)
        _cancel(order)
        return order


def order_expire(*, order_id: uuid.UUID) -> Order | None:
    """The payment window ended: cancel unless paid. A repeat changes nothing."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=order_id).first()
        if order is None:
            logger.error("expiry for an unknown order", extra={"order_id": str(order_id)})
            return None
        if order.can_become(Order.Status.CANCELLED):
            _cancel(order)
        else:
            logger.info("expiry ignored", extra={"order_id": str(order.id), "status": order.status})
        return order


def order_complete(*, order_id: uuid.UUID) -> Order | None:
    """A payment succeeded: complete the order. A cancelled order stays cancelled (the
    payments service refunds the charge when it sees the cancellation)."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=order_id).first()
        if order is None:
            logger.error("payment for an unknown order", extra={"order_id": str(order_id)})
            return None
        if not order.can_become(Order.Status.COMPLETE):
            log = logger.warning if order.status == Order.Status.CANCELLED else logger.info
            log("payment ignored", extra={"order_id": str(order.id), "status": order.status})
            return order
        _move(order, Order.Status.COMPLETE)
        publish(Subject.ORDER_COMPLETED, {"id": order.id, "version": order.version})
        return order


def ticket_replica_apply(
    *, ticket_id: uuid.UUID, version: int, title: str, price: Any, user_id: uuid.UUID
) -> Applied:
    """Bring the ticket replica to `version` (in order; older events are skipped)."""
    return apply_to_replica(
        TicketReplica,
        id=ticket_id,
        version=version,
        fields={"title": title, "price": price, "user_id": user_id},
    )

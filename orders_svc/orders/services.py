"""Every order write and rule: buying (the reservation), cancelling, expiry, payment."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from orders.models import Order, TicketReplica
from shared_lib.correlation import current_correlation_id
from shared_lib.errors import BadRequest, NotFound
from shared_lib.events import NotYet, Subject, publish, publish_many
from shared_lib.events.versioning import Applied, apply_to_replica
from shared_lib.ids import invalid_message, parse_id, required_message
from shared_lib.mail import queue_email
from shared_lib.money import SMALLEST_CHARGE
from shared_lib.staff import Actor, record_staff_action
from shared_lib.text import plain_line

logger = logging.getLogger(__name__)

# The first key of the advisory lock that serialises one buyer's order creations.
_HOLDING_LOCK = 0x6F726472  # "ordr"

TICKET_ID_REQUIRED = required_message("ticketId")  # "TicketId must be provided"
TICKET_ID_INVALID = invalid_message("ticketId")  # "TicketId must be a valid id"
TICKET_RESERVED = "Ticket is already reserved"
OWN_TICKET = "You cannot buy your own ticket"
TICKET_OFF_SALE = "This ticket is no longer for sale"
# A ticket listed before tickets_svc refused prices a card cannot be charged.
TICKET_TOO_CHEAP = (
    f"This ticket is priced below {SMALLEST_CHARGE}, the smallest amount a card can be charged"
)
ORDER_COMPLETE = "Cannot cancel a completed order"


def too_many_unpaid_message(limit: int) -> str:
    return f"You already hold {limit} unpaid orders; pay or cancel one first"


def order_created_data(order: Order) -> dict[str, Any]:
    return {
        "id": order.id,
        "version": order.version,
        "status": order.status,
        "userId": order.user_id,
        "expiresAt": order.expires_at,
        "ticket": {"id": order.ticket_id, "price": order.price},
    }


def order_create(
    *,
    user_id: uuid.UUID,
    ticket_id: Any,
    user_email: str = "",
    expires_at: datetime | None = None,
) -> Order:
    """Reserve a ticket: 404 unknown, 400 your own, 400 already reserved (by the database).

    The payment window ends EXPIRATION_WINDOW_SECONDS from now unless `expires_at` says
    when (a benchmark's orders all due in one second)."""
    parsed_id = parse_id(ticket_id, field="ticketId")
    ticket = TicketReplica.objects.filter(id=parsed_id).first()
    if ticket is None:
        raise NotFound()
    if ticket.user_id == user_id:
        raise BadRequest(OWN_TICKET)
    if not ticket.on_sale:
        raise BadRequest(TICKET_OFF_SALE)
    if ticket.price < SMALLEST_CHARGE:
        raise BadRequest(TICKET_TOO_CHEAP)
    now = timezone.now()
    if expires_at is None:
        expires_at = now + timedelta(seconds=settings.EXPIRATION_WINDOW_SECONDS)
    try:
        with transaction.atomic():
            _refuse_over_holding_limit(user_id=user_id, now=now)
            order = Order.objects.create(
                user_id=user_id,
                user_email=user_email,
                ticket=ticket,
                price=ticket.price,
                expires_at=expires_at,
            )
            publish(Subject.ORDER_CREATED, order_created_data(order))
    except IntegrityError:
        # orders_one_active_order_per_ticket: another buyer's order holds the ticket.
        raise BadRequest(TICKET_RESERVED) from None
    return order


def _refuse_over_holding_limit(*, user_id: uuid.UUID, now: datetime) -> None:
    """One account must not hold the catalogue: at most ORDERS_MAX_ACTIVE_PER_USER unpaid
    orders. Called inside the order's transaction."""
    # Serialises one buyer's concurrent orders (a count alone lets parallel requests all
    # pass); other buyers never wait on it. Released at commit.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_HOLDING_LOCK, str(user_id)]
        )
    limit = settings.ORDERS_MAX_ACTIVE_PER_USER
    # An order past its window holds nothing the buyer can still pay for; its expiry
    # event is on the way, and the buyer must not wait for it to order again.
    unpaid = Order.objects.filter(
        user_id=user_id, status=Order.Status.CREATED, expires_at__gt=now
    ).count()
    if unpaid >= limit:
        raise BadRequest(too_many_unpaid_message(limit))


def _move(order: Order, status: str) -> None:
    order.status = status
    order.version += 1
    order.updated_at = timezone.now()
    order.save(update_fields=["status", "version", "updated_at"])


def _cancelled_data(order: Order) -> dict[str, Any]:
    return {"id": order.id, "version": order.version, "ticket": {"id": order.ticket_id}}


def _cancel(order: Order) -> None:
    _move(order, Order.Status.CANCELLED)
    publish(Subject.ORDER_CANCELLED, _cancelled_data(order))


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


def order_cancel_by_staff(*, order_id: uuid.UUID, actor: Actor) -> bool:
    """Staff cancel an unpaid order (the admin): as the buyer's cancel, its ticket goes
    back on sale and order.cancelled is published; recorded with who did it. False when
    it was cancelled already (nothing published or recorded); a paid order is refused."""
    with transaction.atomic():
        order = Order.objects.select_for_update().filter(id=order_id).first()
        if order is None:
            raise NotFound()
        if order.status == Order.Status.CANCELLED:
            return False
        if not order.can_become(Order.Status.CANCELLED):
            raise BadRequest(ORDER_COMPLETE)
        _cancel(order)
        record_staff_action(actor, action="order.cancel", target=order.id)
        return True


# Orders announced per transaction when completions are told again: each batch's outbox
# rows commit together, and the relay sends them while the next batch is written.
REPUBLISH_BATCH = 500


def order_completed_republish(*, actor: Actor, batch: int = REPUBLISH_BATCH) -> int:
    """Tell order.completed again for every complete order, in batches: for a service
    that began consuming it after those orders completed (docs/deploy.md). Each consumer
    applies a completion it has not seen and skips one it has (by version), so telling
    again changes nothing anywhere else. Recorded with who did it; the number told."""
    told, after, finished = 0, None, False
    try:
        while True:
            with transaction.atomic():
                complete = Order.objects.filter(status=Order.Status.COMPLETE)
                if after is not None:
                    complete = complete.filter(id__gt=after)
                rows = list(complete.order_by("id").values_list("id", "version")[:batch])
                if not rows:
                    break
                publish_many(
                    Subject.ORDER_COMPLETED,
                    [
                        ({"id": id_, "version": version}, current_correlation_id())
                        for id_, version in rows
                    ],
                )
            told, after = told + len(rows), rows[-1][0]
            logger.info("order completions told again", extra={"count": told})
        finished = True
    finally:
        # Recorded however the run ended: what it told went out either way.
        with transaction.atomic():
            record_staff_action(
                actor,
                action="order.completed.republish",
                target="orders",
                detail={"count": told, "finished": finished},
            )
    return told


def order_expire(*, order_id: uuid.UUID) -> Order | None:
    """The payment window ended: cancel unless paid. A repeat changes nothing; an
    announcement before expiresAt (by this service's clock) raises NotYet."""
    (order,) = order_expire_all(order_ids=[order_id])
    return order


def order_expire_all(
    *, order_ids: Sequence[uuid.UUID], correlation_ids: Sequence[str] | None = None
) -> list[Order | None]:
    """order_expire for a burst of expiries, in three statements whatever their number:
    the orders locked, the cancelled ones updated, their order.cancelled written (each
    with the correlation id of its expiry). One order whose window is still open raises
    NotYet for them all (the event consumer then applies each on its own)."""
    if correlation_ids is None:
        correlation_ids = [current_correlation_id()] * len(order_ids)
    with transaction.atomic():
        # In id order, so that two bursts sharing orders lock them in the same order.
        locked = Order.objects.select_for_update().filter(id__in=order_ids).order_by("id")
        orders = {order.id: order for order in locked}
        now = timezone.now()
        cancelled: list[tuple[Order, str]] = []
        for order_id, correlation_id in zip(order_ids, correlation_ids, strict=True):
            order = orders.get(order_id)
            if order is None:
                logger.error("expiry for an unknown order", extra={"order_id": str(order_id)})
            elif order.status == Order.Status.CREATED and now < order.expires_at:
                # The expiry was announced by a clock ahead of ours: the window the buyer
                # was promised is ours to keep, so the event comes back once it has ended.
                raise NotYet(f"order {order.id} expires at {order.expires_at.isoformat()}")
            elif order.can_become(Order.Status.CANCELLED):
                order.status, order.version, order.updated_at = (
                    Order.Status.CANCELLED,
                    order.version + 1,
                    now,
                )
                cancelled.append((order, correlation_id))
            else:  # paid, or this burst's earlier expiry of it
                logger.info(
                    "expiry ignored", extra={"order_id": str(order.id), "status": order.status}
                )
        if cancelled:
            Order.objects.filter(id__in=[order.id for order, _ in cancelled]).update(
                status=Order.Status.CANCELLED, version=F("version") + 1, updated_at=now
            )
            publish_many(
                Subject.ORDER_CANCELLED,
                [(_cancelled_data(order), correlation_id) for order, correlation_id in cancelled],
            )
    return [orders.get(order_id) for order_id in order_ids]


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
        queue_email(
            key=f"receipt:{order.id}",
            to=order.user_email,
            subject=f"Your ticket: {order.ticket.title}",
            body=receipt_text(order),
        )
        return order


def receipt_text(order: Order) -> str:
    """The buyer's receipt: what they bought, what they paid, where to see it."""
    return (
        f"Thank you for your purchase.\n\n"
        f"Ticket: {plain_line(order.ticket.title)}\n"
        f"Paid: ${order.price:,.2f}\n"
        f"Order: {order.id}\n\n"
        f"Your order: {settings.SITE_URL}/orders/{order.id}\n"
    )


def ticket_replica_apply(
    *,
    ticket_id: uuid.UUID,
    version: int,
    title: str,
    price: Any,
    user_id: uuid.UUID,
    on_sale: bool | None = None,
) -> Applied:
    """Bring the ticket replica to `version` (in order; older events are skipped). With
    `on_sale` None (an event that does not say) the replica keeps what it knew; a new
    replica is on sale."""
    fields = {"title": title, "price": price, "user_id": user_id}
    if on_sale is not None:
        fields["on_sale"] = on_sale
    return apply_to_replica(TicketReplica, id=ticket_id, version=version, fields=fields)

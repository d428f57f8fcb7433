"""Every ticket write and rule: selling, editing, and the reservation lock."""

from __future__ import annotations

import logging
import re
import unicodedata
import uuid
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from shared_lib.errors import BadRequest, Conflict, Forbidden, InvalidInput, NotFound
from shared_lib.events import NotYet, Subject, publish
from shared_lib.events.versioning import claim_version
from shared_lib.mail import queue_email
from shared_lib.money import SMALLEST_CHARGE
from shared_lib.staff import Actor, record_staff_action
from shared_lib.text import CONTROL, one_line, plain_line, shows_something
from tickets import selectors
from tickets.models import Ticket

logger = logging.getLogger(__name__)

TITLE_REQUIRED = "Title is required"
TITLE_TOO_LONG = "Title must be at most 200 characters"
TITLE_CONTROL = "Title must not contain control characters"
PRICE_POSITIVE = "Price must be greater than 0"
PRICE_DECIMALS = "Price must have at most 2 decimal places"
PRICE_TOO_HIGH = "Price must be less than 1000000"
PRICE_TOO_LOW = f"Price must be at least {SMALLEST_CHARGE}"
TICKET_RESERVED = "Cannot edit a reserved ticket"
TICKET_SOLD = "Cannot edit a sold ticket"
TICKET_WITHDRAWN = "Cannot edit a ticket taken off sale"
WITHDRAW_SOLD = "Cannot take a sold ticket off sale"
# GET /api/tickets?q=&minPrice=&maxPrice= (docs/api.md).
SEARCH_MAX_LENGTH = 200
SEARCH_MAX_WORDS = 10
SEARCH_TOO_LONG = f"q must be at most {SEARCH_MAX_LENGTH} characters"
SEARCH_TOO_MANY_WORDS = f"q must have at most {SEARCH_MAX_WORDS} words"
PRICE_FILTER_INVALID = "{field} must be an amount such as 20 or 19.99"
PRICE_RANGE_INVALID = "maxPrice must not be less than minPrice"

TITLE_MAX_LENGTH = 200
# A sale completes within its order's payment window of the reservation. One learnt much
# later (order completions told again for a backfill, docs/deploy.md) is old news: the
# listings show it, and no email goes.
SOLD_NEWS_WITHIN = timedelta(days=1)
PRICE_LIMIT = Decimal(1_000_000)
CENT = Decimal("0.01")
# A numeric string in plain decimal notation: no exponent, no thousands separators.
_PLAIN_DECIMAL = re.compile(r"^[+-]?\d+(\.\d+)?$")
# A price filter: a plain amount in cents below PRICE_LIMIT (ASCII digits only).
PRICE_FILTER_PATTERN = r"^[0-9]{1,6}(\.[0-9]{1,2})?$"
_PRICE_FILTER = re.compile(PRICE_FILTER_PATTERN)


def title_error(title: Any) -> tuple[str | None, str]:
    """The message of the rule `title` (as sent) breaks, or None; and the title on one
    line (trimmed, its whitespace one space at a time)."""
    if not isinstance(title, str):
        return TITLE_REQUIRED, ""
    # One line: line breaks, tabs and runs of spaces become one space. Composed form: an
    # accented letter typed either way is one letter, found by search.
    title = unicodedata.normalize("NFC", one_line(title))
    if not title:
        return TITLE_REQUIRED, title
    if CONTROL.search(title):
        return TITLE_CONTROL, title
    if not shows_something(title):  # only characters that show nothing
        return TITLE_REQUIRED, title
    if len(title) > TITLE_MAX_LENGTH:
        return TITLE_TOO_LONG, title
    return None, title


def price_error(price: Any) -> tuple[str | None, Decimal]:
    """The message of the rule `price` (a number or a numeric string) breaks, or None; and
    the amount, in cents when it is valid."""
    # bool is an int in Python; a JSON true is not a price.
    if isinstance(price, bool) or not isinstance(price, int | Decimal | str):
        return PRICE_POSITIVE, Decimal(0)
    if isinstance(price, str):
        if not _PLAIN_DECIMAL.match(price.strip()):
            return PRICE_POSITIVE, Decimal(0)
        price = price.strip()
    try:
        amount = Decimal(price)
    except InvalidOperation:
        return PRICE_POSITIVE, Decimal(0)
    if not amount.is_finite() or amount <= 0:
        return PRICE_POSITIVE, amount
    # The limit first: quantize() cannot represent a number of 28+ digits at cents.
    if amount >= PRICE_LIMIT:
        return PRICE_TOO_HIGH, amount
    if amount != amount.quantize(CENT):
        return PRICE_DECIMALS, amount
    if amount < SMALLEST_CHARGE:
        return PRICE_TOO_LOW, amount
    return None, amount.quantize(CENT)


def search_error(q: str) -> tuple[str | None, str]:
    """The message of the rule a search `q` breaks, or None; and `q` in Unicode's composed
    form (NFC), as titles are stored. Its words are PostgreSQL's to find, as in titles
    (tickets.selectors): a `q` in which it finds none filters nothing."""
    if len(q) > SEARCH_MAX_LENGTH:
        return SEARCH_TOO_LONG, q
    if _word_count(q) > SEARCH_MAX_WORDS:
        return SEARCH_TOO_MANY_WORDS, q
    return None, unicodedata.normalize("NFC", q)


def _word_count(text: str) -> int:
    """Runs of letters, digits and their marks: about the words PostgreSQL's parser finds
    (it splits at punctuation too, so `a,b,c` is three prefixes for the index to gather).
    Other numerals (`²`, `½`, `①`) split words there, so they do here; where the two still
    differ on a rare character, the search uses at most 16 words (migration 0007)."""
    count, inside = 0, False
    for char in text:
        category = unicodedata.category(char)
        part = category[0] in "LM" or category == "Nd"
        count += part and not inside
        inside = part
    return count


def price_filter_error(value: str, *, field: str) -> tuple[str | None, Decimal]:
    """The message a price filter breaks (as a query parameter carries it), or None; and
    the amount, exact."""
    if not _PRICE_FILTER.fullmatch(value):
        return PRICE_FILTER_INVALID.format(field=field), Decimal(0)
    return None, Decimal(value)


def validate_ticket_input(*, title: Any, price: Any) -> tuple[str, Decimal]:
    """(title, price) cleaned, or InvalidInput naming every bad field."""
    title_message, clean_title = title_error(title)
    price_message, clean_price = price_error(price)
    errors = [(m, f) for m, f in ((title_message, "title"), (price_message, "price")) if m]
    if errors:
        raise InvalidInput(errors)
    return clean_title, clean_price


def ticket_event_data(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "version": ticket.version,
        "title": ticket.title,
        "price": ticket.price,
        "userId": ticket.user_id,
        "orderId": ticket.order_id,
        "onSale": ticket.withdrawn_at is None,
    }


def ticket_create(*, user_id: uuid.UUID, title: Any, price: Any, user_email: str = "") -> Ticket:
    clean_title, clean_price = validate_ticket_input(title=title, price=price)
    with transaction.atomic():
        ticket = Ticket.objects.create(
            user_id=user_id, user_email=user_email, title=clean_title, price=clean_price
        )
        data = ticket_event_data(ticket)
        del data["orderId"], data["onSale"]  # not in ticket.created (docs/events.md)
        publish(Subject.TICKET_CREATED, data)
    return ticket


def ticket_for_update(*, ticket_id: uuid.UUID, user_id: uuid.UUID) -> Ticket:
    """The ticket `user_id` may edit: NotFound if there is none, Forbidden if it is
    someone else's. Asked before the edit is judged (docs/development.md: 404, then 403,
    then 400), so a non-owner learns nothing about the body or the lock. ticket_update
    writes only while the ticket is at the version read here, so the check still holds."""
    ticket = selectors.ticket_get(ticket_id=ticket_id)
    if ticket is None:
        raise NotFound()
    if ticket.user_id != user_id:
        raise Forbidden()
    return ticket


def ticket_update(*, ticket: Ticket, title: Any, price: Any) -> Ticket:
    """Edit `ticket`, as ticket_for_update found it for the editor: input, then the lock.

    Optimistic: the UPDATE applies only to the version that was read and only while the
    ticket is free, so an edit can never undo a lock taken meanwhile by an order.
    """
    clean_title, clean_price = validate_ticket_input(title=title, price=price)
    _refuse_edit(ticket)
    with transaction.atomic():
        changed = Ticket.objects.filter(
            id=ticket.id, version=ticket.version, order_id__isnull=True, withdrawn_at__isnull=True
        ).update(
            title=clean_title,
            price=clean_price,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if not changed:
            _refuse_edit(Ticket.objects.get(id=ticket.id))
            raise Conflict()  # another edit won the race; the client reloads and retries
        ticket.refresh_from_db()
        publish(Subject.TICKET_UPDATED, ticket_event_data(ticket))
    return ticket


def _refuse_edit(ticket: Ticket) -> None:
    """BadRequest unless its seller may still edit `ticket`."""
    if ticket.sold_at is not None:
        raise BadRequest(TICKET_SOLD)
    if ticket.order_id is not None:
        raise BadRequest(TICKET_RESERVED)
    if ticket.withdrawn_at is not None:
        raise BadRequest(TICKET_WITHDRAWN)


def _locked_ticket(ticket_id: uuid.UUID) -> Ticket | None:
    ticket = Ticket.objects.select_for_update().filter(id=ticket_id).first()
    if ticket is None:
        # Orders only know tickets from our own events, so this is a bug or a foreign
        # event; there is nothing to lock.
        logger.error("order event names an unknown ticket", extra={"ticket_id": str(ticket_id)})
    return ticket


def _save_and_announce(ticket: Ticket) -> None:
    ticket.version += 1
    ticket.updated_at = timezone.now()
    ticket.save(update_fields=["order_id", "version", "updated_at"])
    publish(Subject.TICKET_UPDATED, ticket_event_data(ticket))


def _sold(ticket: Ticket, order_id: uuid.UUID, error: str) -> bool:
    """Whether `ticket` is sold, logging `error` when an order event asks to move it."""
    if ticket.sold_at is None:
        return False
    logger.error(error, extra={"ticket_id": str(ticket.id), "order_id": str(order_id)})
    return True


def ticket_reserve(*, ticket_id: uuid.UUID, order_id: uuid.UUID) -> Ticket | None:
    """An order was created: lock the ticket for it.

    orders_svc allows one active order per ticket, so a ticket held by another order means
    that order's cancellation has not reached us yet (events travel on separate queues).
    NotYet rolls the handler back and retries later, once the cancel has freed the ticket;
    dropping the event instead would leave the new order's ticket unlocked for good.
    """
    with transaction.atomic():
        ticket = _locked_ticket(ticket_id)
        if ticket is None or ticket.order_id == order_id:
            return ticket
        if _sold(ticket, order_id, "order event names a sold ticket"):
            # orders_svc never places an order on a ticket it sold; waiting for this one
            # to be freed would wait forever.
            return ticket
        if ticket.order_id is not None:
            logger.warning(
                "ticket still held by another order; retrying later",
                extra={
                    "ticket_id": str(ticket.id),
                    "held_by": str(ticket.order_id),
                    "requested_by": str(order_id),
                },
            )
            raise NotYet(f"ticket {ticket.id} still held by order {ticket.order_id}")
        if ticket.withdrawn_at is not None:
            # orders_svc took the order before it heard of the withdrawal: its orders are
            # the reservation's source of truth, so the order stands (and may be cancelled
            # in its admin); the ticket stays off sale if the order ends unpaid.
            logger.warning(
                "an order raced the ticket's withdrawal; the order holds it",
                extra={"ticket_id": str(ticket.id), "order_id": str(order_id)},
            )
        ticket.order_id = order_id
        _save_and_announce(ticket)
        return ticket


def ticket_release(*, ticket_id: uuid.UUID, order_id: uuid.UUID) -> Ticket | None:
    """An order was cancelled: free the ticket only if that very order holds it."""
    with transaction.atomic():
        ticket = _locked_ticket(ticket_id)
        if ticket is None or ticket.order_id != order_id:
            return ticket
        if _sold(ticket, order_id, "cancellation of the order that bought a ticket"):
            # A completed order is never cancelled: this event is a bug or forged, and a
            # sold ticket is never offered again.
            return ticket
        ticket.order_id = None
        _save_and_announce(ticket)
        return ticket


def order_created_apply(
    *, order_id: uuid.UUID, version: int, ticket_id: uuid.UUID
) -> Ticket | None:
    """order.created: lock the ticket for the order, unless this version of the order was
    applied before (a redelivery)."""
    # The claim and the lock commit together or not at all; inside a handler's transaction
    # no savepoint is needed, as a failure here fails the whole event anyway.
    with transaction.atomic(savepoint=False):
        if not claim_version("order", id=order_id, version=version):
            return None
        return ticket_reserve(ticket_id=ticket_id, order_id=order_id)


def order_cancelled_apply(
    *, order_id: uuid.UUID, version: int, ticket_id: uuid.UUID
) -> Ticket | None:
    """order.cancelled: free the ticket if this order holds it.

    claim_version raises NotYet while the order's created event has not been applied: a
    cancel that overtook it waits instead of leaving the ticket locked forever."""
    with transaction.atomic(savepoint=False):
        if not claim_version("order", id=order_id, version=version):
            return None
        return ticket_release(ticket_id=ticket_id, order_id=order_id)


def ticket_sell(*, order_id: uuid.UUID) -> Ticket | None:
    """The order holding a ticket completed: the ticket is sold, for good (no edit, no
    other order). Nothing replicated changes, so no ticket.updated."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(order_id=order_id).first()
        if ticket is None:
            # order.created was applied (claim_version saw to it), so the ticket is held
            # by this order unless the events are forged or a bug freed it.
            logger.error("completed order holds no ticket", extra={"order_id": str(order_id)})
            return None
        if ticket.sold_at is None:
            reserved_at = ticket.updated_at  # its order's reservation (or a later change)
            ticket.sold_at = timezone.now()
            ticket.updated_at = ticket.sold_at
            ticket.save(update_fields=["sold_at", "updated_at"])
            if ticket.sold_at - reserved_at <= SOLD_NEWS_WITHIN:
                queue_email(
                    key=f"sold:{ticket.id}",
                    to=ticket.user_email,
                    subject=f"Your ticket sold: {ticket.title}",
                    body=sold_text(ticket),
                )
            else:
                logger.info(
                    "sale learnt long after it; seller not emailed",
                    extra={"ticket_id": str(ticket.id)},
                )
        return ticket


def sold_text(ticket: Ticket) -> str:
    """The seller's news: which ticket sold, for how much, where to see their listings."""
    return (
        f"Good news: your ticket sold.\n\n"
        f"Ticket: {plain_line(ticket.title)}\n"
        f"Price: ${ticket.price:,.2f}\n\n"
        f"Your listings: {settings.SITE_URL}/tickets/mine\n"
    )


def order_completed_apply(*, order_id: uuid.UUID, version: int) -> Ticket | None:
    """order.completed: the order's ticket is sold. Waits (NotYet) until the order's
    created event has been applied, so the ticket it names is the one it holds."""
    with transaction.atomic(savepoint=False):
        if not claim_version("order", id=order_id, version=version):
            return None
        return ticket_sell(order_id=order_id)


def ticket_withdraw_by_staff(*, ticket_id: uuid.UUID, actor: Actor) -> bool:
    """Staff take a ticket off sale (the admin): out of the list, no new order (orders_svc
    learns it from ticket.updated's onSale), no edit; recorded with who did it. An order
    already holding it may still complete; if it is cancelled instead, the ticket stays
    off sale. False when it was off sale already; a sold ticket is refused."""
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().filter(id=ticket_id).first()
        if ticket is None:
            raise NotFound()
        if ticket.sold_at is not None:
            raise BadRequest(WITHDRAW_SOLD)
        if ticket.withdrawn_at is not None:
            return False
        ticket.withdrawn_at = timezone.now()
        ticket.version += 1
        ticket.updated_at = ticket.withdrawn_at
        ticket.save(update_fields=["withdrawn_at", "version", "updated_at"])
        publish(Subject.TICKET_UPDATED, ticket_event_data(ticket))
        record_staff_action(actor, action="ticket.withdraw", target=ticket.id)
        return True

import uuid
from collections.abc import Sequence
from decimal import Decimal

from django.contrib.postgres.search import SearchQuery
from django.db import connection
from django.db.models import QuerySet

from tickets.models import Ticket


def search_words(q: str) -> list[str]:
    """`q`'s words as PostgreSQL's "simple" configuration finds them in a title (its own
    parser and lower-casing, so a word is split and folded the same way on both sides)."""
    if not q.strip():
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT tsvector_to_array(to_tsvector('simple', %s))", [q])
        return list(cursor.fetchone()[0])


def _prefix_query(words: Sequence[str]) -> str:
    """A tsquery of every word, each as a word's start: "'w1':* & 'w2':*". Each word is
    quoted (quotes and backslashes escaped), so nothing in it is tsquery syntax."""
    quoted = ("'" + w.replace("\\", "\\\\").replace("'", "''") + "':*" for w in words)
    return " & ".join(quoted)


def ticket_list_available(
    *,
    q: str = "",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> QuerySet[Ticket]:
    """Tickets for sale: those no order holds and staff did not withdraw (newest first
    is the paginator's job); with `q`, those whose title has each of its words as a word
    or the start of one (a `q` without words filters nothing); prices inclusive."""
    tickets = Ticket.objects.filter(order_id__isnull=True, withdrawn_at__isnull=True)
    words = search_words(q)
    if words:
        query = SearchQuery(_prefix_query(words), search_type="raw", config="simple")
        tickets = tickets.filter(title_search=query)
    if min_price is not None:
        tickets = tickets.filter(price__gte=min_price)
    if max_price is not None:
        tickets = tickets.filter(price__lte=max_price)
    return tickets


def ticket_list_for_seller(*, user_id: uuid.UUID) -> QuerySet[Ticket]:
    """Every ticket `user_id` listed, whatever its state (newest first is the paginator's)."""
    return Ticket.objects.filter(user_id=user_id)


def ticket_get(*, ticket_id: uuid.UUID) -> Ticket | None:
    return Ticket.objects.filter(id=ticket_id).first()

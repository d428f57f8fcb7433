import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import F, Lookup, Q, QuerySet

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


class _HasWords(Lookup):
    """`title_search` holds a tsquery's words: the condition SearchQuery compiles to, for
    about half the app CPU (which the list's lean path, bench/http_api.py, can measure)."""

    lookup_name = "has_words"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @@ to_tsquery('simple'::regconfig, {rhs})", [*lhs_params, *rhs_params]


def ticket_list_available(
    *,
    q: str = "",
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> QuerySet[Ticket]:
    """Tickets for sale: those no order holds and staff did not withdraw (newest first
    is the paginator's job); with `q`, those whose title has each of its words as a word
    or the start of one (a `q` without words filters nothing); prices inclusive."""
    conditions = Q(order_id__isnull=True, withdrawn_at__isnull=True)
    words = search_words(q)
    if words:
        conditions &= Q(_HasWords(F("title_search"), _prefix_query(words)))
    if min_price is not None:
        conditions &= Q(price__gte=min_price)
    if max_price is not None:
        conditions &= Q(price__lte=max_price)
    return Ticket.objects.filter(conditions)  # one filter(): each call copies the query


def ticket_list_for_seller(*, user_id: uuid.UUID) -> QuerySet[Ticket]:
    """Every ticket `user_id` listed, whatever its state (newest first is the paginator's)."""
    return Ticket.objects.filter(user_id=user_id)


def ticket_get(*, ticket_id: uuid.UUID) -> Ticket | None:
    return Ticket.objects.filter(id=ticket_id).first()

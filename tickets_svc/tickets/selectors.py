import uuid
from decimal import Decimal
from typing import Any

from django.db.models import F, Lookup, Q, QuerySet

from tickets.models import Ticket


class _HasWords(Lookup):
    """`title_search` holds every word of a search's `q`, each as a word or the start of
    one; true when `q` has no words. `tickets_title_words_query` (migration 0007) splits
    `q` as titles are split; given a constant, the planner folds both conditions into the
    one tsquery match the title index serves, in the list's own statement."""

    lookup_name = "has_words"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        query = f"tickets_title_words_query({rhs})"
        return f"({query} IS NULL OR {lhs} @@ {query})", [*rhs_params, *lhs_params, *rhs_params]


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
    if q.strip():
        conditions &= Q(_HasWords(F("title_search"), q))
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

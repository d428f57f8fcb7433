import uuid
from collections.abc import Sequence
from decimal import Decimal

from django.contrib.postgres.search import SearchQuery
from django.db.models import QuerySet

from tickets.models import Ticket


def ticket_list_available(
    *,
    words: Sequence[str] = (),
    min_price: Decimal | None = None,
    max_price: Decimal | None = None,
) -> QuerySet[Ticket]:
    """Tickets for sale: those no order holds (newest first is the paginator's job); with
    `words`, those whose title has each as a word or the start of one; prices inclusive."""
    tickets = Ticket.objects.filter(order_id__isnull=True)
    if words:
        # "w1:* & w2:*": every word, each as a prefix. The words are letters and digits
        # only (services.search_words_error), so nothing in them is tsquery syntax.
        query = SearchQuery(" & ".join(f"{w}:*" for w in words), search_type="raw", config="simple")
        tickets = tickets.filter(title_search=query)
    if min_price is not None:
        tickets = tickets.filter(price__gte=min_price)
    if max_price is not None:
        tickets = tickets.filter(price__lte=max_price)
    return tickets


def ticket_get(*, ticket_id: uuid.UUID) -> Ticket | None:
    return Ticket.objects.filter(id=ticket_id).first()

import uuid

from django.db.models import QuerySet

from tickets.models import Ticket


def ticket_list_available() -> QuerySet[Ticket]:
    """Tickets for sale: those no order holds (newest first is the paginator's job)."""
    return Ticket.objects.filter(order_id__isnull=True)


def ticket_get(*, ticket_id: uuid.UUID) -> Ticket | None:
    return Ticket.objects.filter(id=ticket_id).first()

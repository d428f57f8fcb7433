"""Order events: reserve and release tickets, in each order's version order."""

from shared_lib.events import Event, Subject, event_handler
from shared_lib.events.contracts import OrderCancelled, OrderCreated
from shared_lib.events.versioning import claim_version
from tickets import services


@event_handler(Subject.ORDER_CREATED)
def on_order_created(event: Event[OrderCreated]) -> None:
    if claim_version("order", id=event.data.id, version=event.data.version):
        services.ticket_reserve(ticket_id=event.data.ticket.id, order_id=event.data.id)


@event_handler(Subject.ORDER_CANCELLED)
def on_order_cancelled(event: Event[OrderCancelled]) -> None:
    # claim_version raises NotYet while the order's created event has not been applied:
    # a cancel that overtook it waits instead of leaving the ticket locked forever.
    if claim_version("order", id=event.data.id, version=event.data.version):
        services.ticket_release(ticket_id=event.data.ticket.id, order_id=event.data.id)

"""Order events: reserve, release and sell tickets, in each order's version order."""

from shared_lib.events import Event, Subject, event_handler
from shared_lib.events.contracts import OrderCancelled, OrderCompleted, OrderCreated
from tickets import services


@event_handler(Subject.ORDER_CREATED)
def on_order_created(event: Event[OrderCreated]) -> None:
    data = event.data
    services.order_created_apply(order_id=data.id, version=data.version, ticket_id=data.ticket.id)


@event_handler(Subject.ORDER_CANCELLED)
def on_order_cancelled(event: Event[OrderCancelled]) -> None:
    data = event.data
    services.order_cancelled_apply(order_id=data.id, version=data.version, ticket_id=data.ticket.id)


@event_handler(Subject.ORDER_COMPLETED)
def on_order_completed(event: Event[OrderCompleted]) -> None:
    services.order_completed_apply(order_id=event.data.id, version=event.data.version)

"""Order events keep the replica; a cancelled paid order is refunded."""

from payments import services
from shared_lib.events import Event, Subject, event_handler
from shared_lib.events.contracts import OrderCancelled, OrderCompleted, OrderCreated


@event_handler(Subject.ORDER_CREATED)
def on_order_created(event: Event[OrderCreated]) -> None:
    data = event.data
    services.order_created_apply(
        order_id=data.id,
        version=data.version,
        user_id=data.userId,
        price=data.ticket.price,
        status=data.status,
        expires_at=data.expiresAt,
    )


@event_handler(Subject.ORDER_CANCELLED)
def on_order_cancelled(event: Event[OrderCancelled]) -> None:
    services.order_cancelled_apply(order_id=event.data.id, version=event.data.version)


@event_handler(Subject.ORDER_COMPLETED)
def on_order_completed(event: Event[OrderCompleted]) -> None:
    services.order_completed_apply(order_id=event.data.id, version=event.data.version)

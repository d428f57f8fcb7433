from expiration import services
from shared_lib.events import Event, Subject, event_handler
from shared_lib.events.contracts import OrderCreated


@event_handler(Subject.ORDER_CREATED)
def on_order_created(event: Event[OrderCreated]) -> None:
    services.expiry_schedule(
        order_id=event.data.id, expires_at=event.data.expiresAt, correlation_id=event.correlation_id
    )

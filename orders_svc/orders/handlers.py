"""Ticket events feed the replica; expiry and payment move orders on."""

from orders import services
from shared_lib.events import Event, Subject, event_handler
from shared_lib.events.contracts import (
    ExpirationComplete,
    PaymentCreated,
    TicketCreated,
    TicketUpdated,
)


# ticket.updated carries the same fields, plus orderId (which orders_svc does not need:
# its own orders are the reservation's source of truth) and onSale.
@event_handler(Subject.TICKET_CREATED)
@event_handler(Subject.TICKET_UPDATED)
def on_ticket_created_or_updated(event: Event[TicketCreated | TicketUpdated]) -> None:
    data = event.data
    services.ticket_replica_apply(
        ticket_id=data.id,
        version=data.version,
        title=data.title,
        price=data.price,
        user_id=data.userId,
        on_sale=getattr(data, "onSale", None),  # None: the event does not say
    )


@event_handler(Subject.EXPIRATION_COMPLETE, batch=True)
def on_expiration_complete(events: list[Event[ExpirationComplete]]) -> None:
    # A flash sale's orders expire together: the burst is cancelled in one go.
    services.order_expire_all(
        order_ids=[event.data.orderId for event in events],
        correlation_ids=[event.correlation_id for event in events],
    )


@event_handler(Subject.PAYMENT_CREATED)
def on_payment_created(event: Event[PaymentCreated]) -> None:
    services.order_complete(order_id=event.data.orderId)

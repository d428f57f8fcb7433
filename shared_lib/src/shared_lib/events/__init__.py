"""The event bus: contracts, a transactional outbox, and idempotent, ordered consumers.

    from shared_lib.events import Subject, event_handler, publish
    with transaction.atomic():
        ticket = Ticket.objects.create(...)
        publish(Subject.TICKET_CREATED, {"id": ticket.id, ...})   # sent after commit

    @event_handler(Subject.ORDER_CREATED)       # in <app>/handlers.py
    def on_order_created(event): ...            # runs once per event, in a transaction

See docs/events.md for the guarantees and the flow.
"""

from typing import Any

__all__ = ["Event", "NotYet", "Subject", "event_handler", "publish", "publish_many"]

_EXPORTS = {
    "Subject": "shared_lib.events.contracts",
    "Event": "shared_lib.events.registry",
    "NotYet": "shared_lib.events.registry",
    "event_handler": "shared_lib.events.registry",
    "publish": "shared_lib.events.outbox",
    "publish_many": "shared_lib.events.outbox",
}


def __getattr__(name: str) -> Any:
    # Lazy, so that importing a submodule (the Celery app factory, before Django is set
    # up) does not import the models through the outbox.
    if name in _EXPORTS:
        from importlib import import_module

        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

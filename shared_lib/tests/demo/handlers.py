"""Demo handlers: a replica (ticket events) and an ordered reaction (order events)."""

import os
import time
import uuid

from django.db import DatabaseError, connection, transaction

from shared_lib.events import Event, Subject, event_handler, publish
from shared_lib.events.versioning import apply_to_replica, claim_version
from tests.demo.models import Effect, TicketReplica

POISON_TITLE = "poison"  # a handler bug: this title makes the ticket handler raise
# A handler that publishes (as tickets_svc does when an order locks a ticket): this title
# makes the ticket handler announce order.completed, which no demo handler consumes.
ECHO_TITLE = "echo"
# The database connection dies under this title's first delivery (its backend is
# terminated mid-transaction), as when PostgreSQL restarts in the middle of a batch.
CONNECTION_DIES_TITLE = "connection dies"
_connection_died: set = set()
# A handler bug of another kind: it catches a failed statement without an atomic block of
# its own, and returns with the transaction aborted (the rest of its work never runs).
SWALLOWS_DB_ERROR_TITLE = "swallows a database error"
# No bug: the handler's last step is an atomic block of its own that fails, and it
# carries on without that block's work (the usual Django pattern).
UNDOES_ITS_BLOCK_TITLE = "undoes its own block"
# The same by hand: a savepoint, a write, a rollback to the savepoint.
ROLLS_BACK_ITS_SAVEPOINT_TITLE = "rolls back to its savepoint"


def _slow_down() -> None:
    # Lets a test kill a worker while it is in the middle of a batch.
    delay_ms = int(os.environ.get("DEMO_HANDLER_SLEEP_MS", "0"))
    if delay_ms:
        time.sleep(delay_ms / 1000)


def _on_ticket(event: Event) -> None:
    _slow_down()
    data = event.data
    if data.title == POISON_TITLE:
        raise RuntimeError("simulated handler bug")
    if data.title == CONNECTION_DIES_TITLE and event.id not in _connection_died:
        _connection_died.add(event.id)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")
    if data.title == SWALLOWS_DB_ERROR_TITLE:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        except DatabaseError:
            return
    outcome = apply_to_replica(
        TicketReplica,
        id=data.id,
        version=data.version,
        fields={
            "title": data.title,
            "price": data.price,
            "user_id": data.userId,
            "order_id": getattr(data, "orderId", None),
        },
    )
    Effect.objects.create(
        event_id=event.id,
        subject=f"{event.subject}:{outcome.value}",
        aggregate_id=data.id,
        version=data.version,
    )
    if data.title == ECHO_TITLE:
        publish(Subject.ORDER_COMPLETED, {"id": str(data.id), "version": data.version})
    if data.title == UNDOES_ITS_BLOCK_TITLE:
        try:
            with transaction.atomic():
                Effect.objects.create(
                    event_id=uuid.uuid4(), subject="undone", aggregate_id=data.id, version=0
                )
                raise ValueError("changed its mind")
        except ValueError:
            pass
    if data.title == ROLLS_BACK_ITS_SAVEPOINT_TITLE:
        sid = transaction.savepoint()
        Effect.objects.create(
            event_id=uuid.uuid4(), subject="undone", aggregate_id=data.id, version=0
        )
        transaction.savepoint_rollback(sid)


event_handler(Subject.TICKET_CREATED)(_on_ticket)
event_handler(Subject.TICKET_UPDATED)(_on_ticket)


def _on_order(event: Event) -> None:
    _slow_down()
    if claim_version("order", id=event.data.id, version=event.data.version):
        Effect.objects.create(
            event_id=event.id,
            subject=event.subject,
            aggregate_id=event.data.id,
            version=event.data.version,
        )


event_handler(Subject.ORDER_CREATED)(_on_order)

# How many events each call of the batch handler below was given.
cancel_batches: list[int] = []


@event_handler(Subject.ORDER_CANCELLED, batch=True)
def _on_orders_cancelled(events: list[Event]) -> None:
    cancel_batches.append(len(events))
    for event in events:
        _on_order(event)

"""Expiries that could not be announced: parked in `expiration.tasks.dead`, replayable.

    park(order_id=..., correlation_id=..., due_at=..., error=exc)   # from the task
    replay()   # python -m expiration.deadletters replay: schedule each again, at once

`ticketing-dev status` counts them with every other dead-letter queue, so a parked
expiry is seen; a replayed one is announced like any other (orders_svc ignores an
expiry for an order that is complete or already cancelled).
"""

from __future__ import annotations

import sys
import uuid

from django.utils import timezone

from shared_lib.events import broker
from shared_lib.events.consumer import DEAD_AT_HEADER, ERROR_HEADER, ERROR_HEADER_MAX

DEAD_QUEUE = broker.dead_queue_name("expiration.tasks")


def park(
    *, order_id: str, correlation_id: str | None, due_at: str | None, error: Exception
) -> None:
    """Keep an expiry that cannot be announced, with the error that stopped it."""
    with broker.connection() as conn:
        channel = conn.channel()
        broker.dead_queue("expiration.tasks")(channel).declare()
        with conn.Producer(channel) as producer:
            broker.send(
                producer,
                body={"orderId": order_id, "correlationId": correlation_id, "dueAt": due_at},
                routing_key=DEAD_QUEUE,
                message_id=str(uuid.uuid4()),
                headers={
                    ERROR_HEADER: f"{type(error).__name__}: {error}"[:ERROR_HEADER_MAX],
                    DEAD_AT_HEADER: timezone.now().isoformat(),
                },
                correlation_id=correlation_id or "",
            )


def replay() -> int:
    """Schedule every parked expiry again (due at once); returns how many."""
    # The worker's Celery app routes the task to expiration.tasks (a bare shared_task
    # would go to Celery's default queue, which nothing here consumes).
    from expiration.tasks import expire_order
    from expiration_worker import celery  # noqa: F401 (the app the task must be bound to)

    replayed = 0
    with broker.connection() as conn:
        queue = broker.dead_queue("expiration.tasks")(conn.channel())
        queue.declare()
        while (message := queue.get(no_ack=False)) is not None:
            body = message.decode()
            expire_order.apply_async(
                args=[body["orderId"]],
                kwargs={"correlation_id": body.get("correlationId")},
                connection=conn,
            )
            message.ack()  # only once the task is with the broker: never lost between
            replayed += 1
    return replayed


if __name__ == "__main__":  # pragma: no cover - a thin command over replay()
    import django

    django.setup()
    if sys.argv[1:] != ["replay"]:
        sys.exit("usage: python -m expiration.deadletters replay")
    print(f"replayed {replay()} parked expiries")

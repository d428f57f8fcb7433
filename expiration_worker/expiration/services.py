"""Scheduling an order's expiry."""

import logging
import uuid
from datetime import datetime

from django.utils import timezone

from expiration.tasks import expire_order

logger = logging.getLogger(__name__)


def expiry_schedule(*, order_id: uuid.UUID, expires_at: datetime, correlation_id: str) -> None:
    """Publish the expiry task for `expires_at` (at once if it is already past).

    A redelivered order.created schedules a second task; orders_svc treats the repeated
    expiration.complete as a no-op, so no bookkeeping (and no database) is needed here.
    """
    remaining = (expires_at - timezone.now()).total_seconds()
    kwargs = {"correlation_id": correlation_id, "due_at": expires_at.isoformat()}
    if remaining >= 1:
        expire_order.apply_async(args=[str(order_id)], kwargs=kwargs, eta=expires_at)
    else:
        # Native delayed delivery counts whole seconds and refuses a countdown under one:
        # send it now; the task waits out the last fraction itself.
        expire_order.apply_async(args=[str(order_id)], kwargs=kwargs)
    logger.info(
        "expiry scheduled", extra={"order_id": str(order_id), "expires_at": expires_at.isoformat()}
    )

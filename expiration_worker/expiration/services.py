"""Scheduling an order's expiry."""

import logging
import uuid
from datetime import datetime

from expiration.tasks import expire_order

logger = logging.getLogger(__name__)


def expiry_schedule(*, order_id: uuid.UUID, expires_at: datetime, correlation_id: str) -> None:
    """Publish the expiry task for `expires_at` (at once if it is already past).

    A redelivered order.created schedules a second task; orders_svc treats the repeated
    expiration.complete as a no-op, so no bookkeeping (and no database) is needed here.
    """
    expire_order.apply_async(
        args=[str(order_id)], kwargs={"correlation_id": correlation_id}, eta=expires_at
    )
    logger.info(
        "expiry scheduled", extra={"order_id": str(order_id), "expires_at": expires_at.isoformat()}
    )

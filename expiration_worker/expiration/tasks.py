"""The expiry itself: announce that an order's payment window has ended."""

import time
from datetime import datetime

from celery import shared_task
from django.utils import timezone

from shared_lib.correlation import correlation_scope
from shared_lib.events import Subject
from shared_lib.events.direct import publish_now
from shared_lib.metrics import EXPIRY_LATENESS_SECONDS

# Retried until the broker takes the event (the task is acked late, so a worker death
# retries it too); the back-off stays short because every second is lateness.
RETRY_BACKOFF_MAX_SECONDS = 10
# Delayed delivery is whole seconds, so a task can only ever be this early.
MAX_EARLY_SECONDS = 1.5


@shared_task(
    name="expiration.expire_order",
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=1,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    max_retries=None,
)
def expire_order(
    self,  # noqa: ANN001
    order_id: str,
    correlation_id: str | None = None,
    due_at: str | None = None,
) -> None:
    if due_at:
        # Never early: a message sent with less than a second to go (see services) waits
        # out the remainder here; anything later than due runs at once.
        early = (datetime.fromisoformat(due_at) - timezone.now()).total_seconds()
        if 0 < early <= MAX_EARLY_SECONDS:
            time.sleep(early)
    with correlation_scope(correlation_id):
        publish_now(Subject.EXPIRATION_COMPLETE, {"orderId": order_id})
    if due_at:
        # Measured once the broker confirmed the event: what orders_svc waits for.
        lateness = (timezone.now() - datetime.fromisoformat(due_at)).total_seconds()
        EXPIRY_LATENESS_SECONDS.observe(lateness)

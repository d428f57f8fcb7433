"""The expiry itself: announce that an order's payment window has ended."""

from celery import shared_task

from shared_lib.correlation import correlation_scope
from shared_lib.events import Subject
from shared_lib.events.direct import publish_now

# Retried until the broker takes the event (the task is acked late, so a worker death
# retries it too); the back-off stays short because every second is lateness.
RETRY_BACKOFF_MAX_SECONDS = 10


@shared_task(
    name="expiration.expire_order",
    bind=True,
    autoretry_for=(Exception,),
    retry_backoff=1,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    max_retries=None,
)
def expire_order(self, order_id: str, correlation_id: str | None = None) -> None:  # noqa: ANN001
    with correlation_scope(correlation_id):
        publish_now(Subject.EXPIRATION_COMPLETE, {"orderId": order_id})

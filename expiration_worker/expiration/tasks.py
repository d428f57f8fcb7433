"""The expiry itself: announce that an order's payment window has ended."""

import logging
import time
from datetime import datetime

from amqp.exceptions import AMQPError
from celery import shared_task
from celery.exceptions import Reject
from django.utils import timezone
from kombu.exceptions import LimitExceeded, OperationalError

from expiration import deadletters
from shared_lib.correlation import correlation_scope
from shared_lib.events import Subject
from shared_lib.events.direct import publish_now
from shared_lib.metrics import EXPIRY_LATENESS_SECONDS

logger = logging.getLogger(__name__)

# What a publish meets while RabbitMQ is away, refusing or not confirming, or while every
# pooled producer is busy waiting on it: worth retrying.
BROKER_ERRORS = (OperationalError, AMQPError, OSError, LimitExceeded)
# Retried until the broker takes the event (the task is acked late, so a worker death
# retries it too); the back-off stays short because every second is lateness.
RETRY_BACKOFF_MAX_SECONDS = 10
# About ten minutes of retries at the capped back-off: far past a broker restart or a
# failover, short of hiding a lasting fault (a revoked permission) behind endless retries.
MAX_BROKER_RETRIES = 60
# Delayed delivery is whole seconds, so a task can only ever be this early.
MAX_EARLY_SECONDS = 1.5


def _backoff(retries: int) -> int:
    return min(2**retries, RETRY_BACKOFF_MAX_SECONDS)


@shared_task(name="expiration.expire_order", bind=True, max_retries=MAX_BROKER_RETRIES)
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
        try:
            publish_now(Subject.EXPIRATION_COMPLETE, {"orderId": order_id})
        except BROKER_ERRORS as exc:
            if self.request.retries < MAX_BROKER_RETRIES:
                raise self.retry(exc=exc, countdown=_backoff(self.request.retries)) from exc
            _give_up(order_id, correlation_id, due_at, exc)
            return
        except Exception as exc:  # a bug or bad data: retrying cannot change the outcome
            _give_up(order_id, correlation_id, due_at, exc)
            return
    if due_at:
        # Measured once the broker confirmed the event: what orders_svc waits for.
        lateness = (timezone.now() - datetime.fromisoformat(due_at)).total_seconds()
        EXPIRY_LATENESS_SECONDS.observe(lateness)


def _give_up(order_id: str, correlation_id: str | None, due_at: str | None, exc: Exception) -> None:
    logger.error(
        "expiry dead-lettered",
        extra={"order_id": order_id, "error": f"{type(exc).__name__}: {exc}"},
    )
    try:
        deadletters.park(order_id=order_id, correlation_id=correlation_id, due_at=due_at, error=exc)
    except BROKER_ERRORS as lost:
        # Not even the dead-letter queue takes it: hand the task back to RabbitMQ rather
        # than let Celery ack a failure, so the expiry is never lost.
        raise Reject(lost, requeue=True) from lost

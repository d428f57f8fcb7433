"""Publishing without an outbox, for a service that has no database (expiration_worker).

    publish_now(Subject.EXPIRATION_COMPLETE, {"orderId": order_id})   # confirmed, or raises

The broker confirms the message before this returns; on any failure it raises, and the
caller (a Celery task with acks_late) is retried, so the event goes out at least once.
Services with a database always use the transactional outbox instead (outbox.publish).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone

from shared_lib.correlation import current_correlation_id
from shared_lib.events import broker
from shared_lib.events.contracts import Subject, validate_data


def publish_now(subject: Subject | str, data: Any) -> uuid.UUID:
    payload = validate_data(subject, data).model_dump(mode="json")
    subject = Subject(subject)
    event_id = uuid.uuid4()
    correlation_id = current_correlation_id()
    with broker.producer() as pooled:
        broker.publish_event(
            pooled,
            event_id=str(event_id),
            subject=subject,
            occurred_at=timezone.now(),
            data=payload,
            correlation_id=correlation_id,
        )
    return event_id

"""Checks of what one delivered event leaves behind in a service's inbox and outbox.

event = make_event("ticket.created", data)
assert deliver(event) is Outcome.APPLIED
assert_consumed_without_reply(event, "orders.ticket.created")
"""

from __future__ import annotations

from typing import Any


def assert_consumed_without_reply(event: Any, consumer: str) -> None:
    """The inbox holds `event` alone, recorded for `consumer` under its subject, and the
    service published nothing in answer (a replica's update announces nothing)."""
    from shared_lib.models import InboxMessage, OutboxEvent

    inbox = InboxMessage.objects.get()
    assert (inbox.message_id, inbox.consumer, inbox.subject) == (
        event.id,
        consumer,
        event.subject,
    )
    assert OutboxEvent.objects.count() == 0

"""Handlers: plain functions registered per subject, discovered from `<app>/handlers.py`.

    @event_handler(Subject.TICKET_CREATED)
    def on_ticket_created(event: Event[TicketCreated]) -> None:
        ticket_replica_apply(id=event.data.id, version=event.data.version, ...)

A handler raises NotYet when the event cannot apply *yet* (a version gap, an entity not
replicated yet); the message comes back after a delay. Anything else it raises is a
failure: retried a bounded number of times, then dead-lettered.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.utils.module_loading import autodiscover_modules

from shared_lib.events.contracts import Payload, Subject

P = TypeVar("P", bound=Payload)


@dataclass(frozen=True)
class Event(Generic[P]):
    id: uuid.UUID
    subject: Subject
    occurred_at: datetime
    data: P
    correlation_id: str
    attempt: int = 0  # deliveries before this one that did not apply
    # The W3C trace context its producer sent ("" when none): shared_lib.tracing's parent.
    traceparent: str = ""
    tracestate: str = ""


class NotYet(Exception):
    """The event cannot apply yet; deliver it again after a delay."""


Handler = Callable[[Event], None] | Callable[[list[Event]], None]
_handlers: dict[Subject, Handler] = {}
_batched: set[Handler] = set()


def event_handler(subject: Subject | str, *, batch: bool = False) -> Callable[[Handler], Handler]:
    """Register the decorated function as this service's handler for `subject`.

    With `batch`, it takes a list of events instead of one: the new events of `subject`
    in a batch, in delivery order up to the first event of another subject, in one call
    (one statement for all, where the work allows). When anything in the batch fails,
    the batch runs again event by event and it is called with one event at a time, so
    each keeps its own fate."""
    key = Subject(subject)

    def register(function: Handler) -> Handler:
        existing = _handlers.get(key)
        if existing is not None and existing is not function:
            # One queue per (service, subject): a second handler would silently compete.
            raise RuntimeError(
                f"{key} already handled by {existing.__module__}.{existing.__qualname__}"
            )
        _handlers[key] = function
        if batch:
            _batched.add(function)
        return function

    return register


def takes_batches(handler: Handler) -> bool:
    return handler in _batched


def discover_handlers() -> dict[Subject, Handler]:
    """Import every installed app's `handlers` module; return subject -> handler."""
    autodiscover_modules("handlers")
    return dict(_handlers)


def unregister(subject: Subject | str) -> None:
    """Tests only: forget a handler registered by a test module."""
    _handlers.pop(Subject(subject), None)

"""Handlers: plain functions registered per subject, discovered from `<app>/handlers.py`.

    @event_handler(Subject.TICKET_CREATED)
    def on_ticket_created(event: Event[TicketCreated]) -> None:
        ticket_replica_apply(id=event.data.id, version=event.data.version, ...)

A handler raises NotYet when the event cannot apply *yet* (a version gap, an entity not
replicated yet); the message comes back after a delay. Anything else it raises is a
failure: retried a bounded number of times, then dead-lettered.

What a service handles must be what contracts.CONSUMERS declares it consumes:
check_handlers(service) says where they differ, and the worker does not start then.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from django.utils.module_loading import autodiscover_modules

from shared_lib.events.contracts import Payload, Subject, consumed_by

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


class HandlersMismatch(RuntimeError):
    """A service's handlers take other subjects than it is declared to consume."""

    def __init__(self, service: str, *, missing: list[Subject], undeclared: list[Subject]) -> None:
        self.service, self.missing, self.undeclared = service, missing, undeclared
        super().__init__(
            f"{service}: event handlers do not match contracts.CONSUMERS:"
            f" declared but not handled: {_names(missing)};"
            f" handled but not declared: {_names(undeclared)}"
        )


def _names(subjects: list[Subject]) -> str:
    return ", ".join(map(str, subjects)) or "none"


def check_handlers(
    service: str,
    handlers: Iterable[Subject] | None = None,
    *,
    declared: Iterable[Subject] | None = None,
) -> None:
    """Raise HandlersMismatch unless `handlers` (this process's, by default) take exactly
    the subjects `declared` for the service (contracts.CONSUMERS, by default).

    A subject declared but not handled would pile up in a queue nobody reads; one handled
    but not declared would get no queue from its publisher and no broker rights."""
    handled = set(discover_handlers() if handlers is None else map(Subject, handlers))
    expected = set(consumed_by(service) if declared is None else map(Subject, declared))
    if handled != expected:
        raise HandlersMismatch(
            service,
            missing=[subject for subject in Subject if subject in expected - handled],
            undeclared=[subject for subject in Subject if subject in handled - expected],
        )


def unregister(subject: Subject | str) -> None:
    """Tests only: forget a handler registered by a test module."""
    _handlers.pop(Subject(subject), None)

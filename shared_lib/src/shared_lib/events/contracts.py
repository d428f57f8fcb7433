"""Event contracts: every subject, who publishes and consumes it, its payload schema, and
the envelope around it.

    from shared_lib.events.contracts import Subject, consumed_by, validate_data
    data = validate_data(Subject.TICKET_CREATED, {"id": ..., "version": 0, ...})
    data.price   # Decimal("20.00"): money is never a float, on the wire it is a string
    consumed_by("orders")   # [Subject.TICKET_CREATED, ...]: what its handlers must take

Publishers validate before the outbox row is written; consumers validate again on
receipt, so a producer and a consumer that disagree fail loudly (dead letter), never
silently. Payloads ignore unknown fields (a producer may add one before consumers read
it) but a missing or mistyped field is an error. The JSON Schemas are snapshotted in
`schemas/`; a test fails when a contract changes without the snapshot changing too.
"""

from __future__ import annotations

import json
import re
import sys
import uuid
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

__all__ = [
    "CONSUMERS",
    "CONTRACTS",
    "PRODUCERS",
    "ContractError",
    "Envelope",
    "Subject",
    "ValidationError",
    "consumed_by",
    "validate_data",
]


class Subject(StrEnum):
    """`<aggregate>.<past tense>`; the routing key on the events exchange."""

    TICKET_CREATED = "ticket.created"
    TICKET_UPDATED = "ticket.updated"
    ORDER_CREATED = "order.created"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_COMPLETED = "order.completed"
    EXPIRATION_COMPLETE = "expiration.complete"
    PAYMENT_CREATED = "payment.created"


# The one service that publishes each subject (docs/events.md). Each service reaches the
# broker as its own user, named after the service: RabbitMQ lets that user publish only
# these subjects (topic permissions) and stamps its name on every message (`user_id`),
# so a consumer can tell a forged event from a real one.
PRODUCERS: dict[Subject, str] = {
    Subject.TICKET_CREATED: "tickets",
    Subject.TICKET_UPDATED: "tickets",
    Subject.ORDER_CREATED: "orders",
    Subject.ORDER_CANCELLED: "orders",
    Subject.ORDER_COMPLETED: "orders",
    Subject.EXPIRATION_COMPLETE: "expiration",
    Subject.PAYMENT_CREATED: "payments",
}

# The services that consume each subject (docs/events.md), each on a queue of its own.
# The one declaration: publishers declare these queues (an event published before its
# consumer first starts waits for it), the broker users' rights follow from it, and a
# worker whose handlers take other subjects than its own here refuses to start.
CONSUMERS: dict[Subject, tuple[str, ...]] = {
    Subject.TICKET_CREATED: ("orders",),
    Subject.TICKET_UPDATED: ("orders",),
    Subject.ORDER_CREATED: ("tickets", "payments", "expiration"),
    Subject.ORDER_CANCELLED: ("tickets", "payments"),
    Subject.ORDER_COMPLETED: ("tickets", "payments"),
    Subject.EXPIRATION_COMPLETE: ("orders",),
    Subject.PAYMENT_CREATED: ("orders",),
}


def consumed_by(service: str) -> list[Subject]:
    """The subjects `service` consumes (CONSUMERS), in Subject order."""
    return [subject for subject, services in CONSUMERS.items() if service in services]


class ContractError(ValueError):
    """A payload that does not match its subject's contract."""


# Exact decimal money, written as a plain decimal string ("20.50") so no JSON parser on
# the way turns it into a binary float; more than 2 decimals is a contract error.
Money = Annotated[
    Decimal,
    Field(gt=0, lt=1_000_000, max_digits=8, decimal_places=2),
    # Always two decimals on the wire ("20.500" in, "20.50" out).
    PlainSerializer(
        lambda value: format(value.quantize(Decimal("0.01")), "f"),
        return_type=str,
        when_used="json",
    ),
]
# Versions live in 32-bit integer columns on every side.
Version = Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)]
OrderStatus = Literal["created", "cancelled", "complete"]


class Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class TicketCreated(Payload):
    id: uuid.UUID
    version: Version
    title: str = Field(min_length=1, max_length=200)
    price: Money
    userId: uuid.UUID  # wire names are camelCase (docs/api.md)


class TicketUpdated(TicketCreated):
    orderId: uuid.UUID | None = None
    # False once staff took the ticket off sale. Absent (a producer that predates it): says
    # nothing, so a consumer keeps what it knew rather than putting the ticket back on sale.
    onSale: bool | None = None


class OrderTicket(Payload):
    id: uuid.UUID
    price: Money


class OrderCreated(Payload):
    id: uuid.UUID
    version: Version
    status: OrderStatus
    userId: uuid.UUID
    expiresAt: datetime
    ticket: OrderTicket


class TicketRef(Payload):
    id: uuid.UUID


class OrderCancelled(Payload):
    id: uuid.UUID
    version: Version
    ticket: TicketRef


class OrderCompleted(Payload):
    id: uuid.UUID
    version: Version


class ExpirationComplete(Payload):
    orderId: uuid.UUID


class PaymentCreated(Payload):
    id: uuid.UUID
    orderId: uuid.UUID
    stripeId: str = Field(min_length=1, max_length=255)


CONTRACTS: dict[Subject, type[Payload]] = {
    Subject.TICKET_CREATED: TicketCreated,
    Subject.TICKET_UPDATED: TicketUpdated,
    Subject.ORDER_CREATED: OrderCreated,
    Subject.ORDER_CANCELLED: OrderCancelled,
    Subject.ORDER_COMPLETED: OrderCompleted,
    Subject.EXPIRATION_COMPLETE: ExpirationComplete,
    Subject.PAYMENT_CREATED: PaymentCreated,
}


def validate_data(subject: Subject | str, data: Any) -> Payload:
    """The payload parsed against its subject's contract; ContractError if it does not fit."""
    try:
        contract = CONTRACTS[Subject(subject)]
    except ValueError:
        raise ContractError(f"Unknown subject {subject!r}") from None
    try:
        return contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{subject}: {exc.errors(include_url=False)}") from exc


# W3C Trace Context (https://www.w3.org/TR/trace-context/), as shared_lib.tracing writes
# it: version 00, a trace id and a parent id that are not all zeros, the flags.
_TRACEPARENT = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
# The spec's limit (32 members of at most 256 characters) is far above what any vendor
# sends; OpenTelemetry drops a longer one too. Printable ASCII only, as the spec says.
_TRACESTATE = re.compile(r"[\x20-\x7e]{1,512}")


def _dropped_unless(pattern: re.Pattern[str]) -> BeforeValidator:
    """An optional envelope field holds the pattern or nothing: a malformed value (a bug,
    a forgery) is dropped rather than rejected, so the event is still handled and only
    starts a trace of its own."""

    def checked(value: Any) -> str | None:
        return value if isinstance(value, str) and pattern.fullmatch(value) else None

    return BeforeValidator(checked)


# Left out of the wire form when absent: an untraced envelope is what it always was.
_ABSENT = Field(default=None, exclude_if=lambda value: value is None)
Traceparent = Annotated[str | None, _dropped_unless(_TRACEPARENT), _ABSENT]
Tracestate = Annotated[str | None, _dropped_unless(_TRACESTATE), _ABSENT]


class Envelope(BaseModel):
    """What travels on the wire: `{id, subject, occurredAt, data}`, and the W3C trace
    context of the publish (`traceparent`, `tracestate`) when its producer traces."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: uuid.UUID
    subject: Subject
    occurredAt: datetime
    data: dict[str, Any]
    traceparent: Traceparent
    tracestate: Tracestate

    def payload(self) -> Payload:
        return validate_data(self.subject, self.data)


SCHEMA_DIR = Path(__file__).parent / "schemas"


def json_schemas() -> dict[str, dict[str, Any]]:
    """Each subject's payload JSON Schema, as snapshotted in `schemas/<subject>.json`."""
    return {
        str(subject): contract.model_json_schema(mode="validation")
        for subject, contract in CONTRACTS.items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(exist_ok=True)
    written = []
    for subject, schema in json_schemas().items():
        path = directory / f"{subject}.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written


if __name__ == "__main__":
    # python -m shared_lib.events.contracts --write-schemas  (after a deliberate change)
    if sys.argv[1:] != ["--write-schemas"]:
        sys.exit("usage: python -m shared_lib.events.contracts --write-schemas")
    for path in write_schemas():
        print(path)

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared_lib.events.contracts import (
    CONSUMERS,
    CONTRACTS,
    PRODUCERS,
    ContractError,
    Envelope,
    Subject,
    consumed_by,
    validate_data,
)
from shared_lib.events.registry import HandlersMismatch, check_handlers
from tests.demo.factories import example_data, order_created_data, ticket_data

REPO_ROOT = Path(__file__).resolve().parents[2]
# docs/events.md: subject -> its data fields (optional ones included).
DESIGN_FIELDS = {
    "ticket.created": {"id", "version", "title", "price", "userId"},
    "ticket.updated": {"id", "version", "title", "price", "userId", "orderId", "onSale"},
    "order.created": {"id", "version", "status", "userId", "expiresAt", "ticket"},
    "order.cancelled": {"id", "version", "ticket"},
    "order.completed": {"id", "version"},
    "expiration.complete": {"orderId"},
    "payment.created": {"id", "orderId", "stripeId"},
}
OPTIONAL_FIELDS = {"ticket.updated": {"orderId", "onSale"}}


def test_every_subject_has_a_contract_a_producer_and_consumers():
    assert {str(s) for s in Subject} == set(DESIGN_FIELDS)
    assert set(CONTRACTS) == set(PRODUCERS) == set(CONSUMERS) == set(Subject)
    assert all(CONSUMERS.values())
    # A service never consumes what it publishes itself: it knows already.
    assert all(PRODUCERS[s] not in consumers for s, consumers in CONSUMERS.items())


def _subjects_table() -> dict[str, tuple[str, tuple[str, ...]]]:
    """docs/events.md's Subjects table: subject -> (producer, consumers)."""
    page = (REPO_ROOT / "docs" / "events.md").read_text()
    section = page.split("\n## Subjects\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {
        cells[0].strip(" `"): (
            cells[1].strip(),
            tuple(name.strip() for name in cells[2].split(",")),
        )
        for cells in rows
    }


def test_the_documented_producers_and_consumers_are_the_declared_ones():
    assert _subjects_table() == {
        str(subject): (PRODUCERS[subject], CONSUMERS[subject]) for subject in Subject
    }


def test_consumed_by_lists_a_services_subjects_in_subject_order():
    assert consumed_by("orders") == [
        Subject.TICKET_CREATED,
        Subject.TICKET_UPDATED,
        Subject.EXPIRATION_COMPLETE,
        Subject.PAYMENT_CREATED,
    ]
    assert consumed_by("expiration") == [Subject.ORDER_CREATED]
    assert consumed_by("auth") == []


def test_handlers_that_match_the_declaration_pass_the_check():
    check_handlers("payments", [Subject.ORDER_COMPLETED, "order.created", "order.cancelled"])
    check_handlers("auth", [])
    check_handlers("demo", ["ticket.created"], declared=[Subject.TICKET_CREATED])


def test_handlers_that_differ_from_the_declaration_fail_the_check_naming_both_sides():
    with pytest.raises(HandlersMismatch) as raised:
        check_handlers("tickets", [Subject.ORDER_CREATED, Subject.PAYMENT_CREATED])

    assert str(raised.value) == (
        "tickets: event handlers do not match contracts.CONSUMERS:"
        " declared but not handled: order.cancelled, order.completed;"
        " handled but not declared: payment.created"
    )
    assert raised.value.service == "tickets"
    assert raised.value.missing == [Subject.ORDER_CANCELLED, Subject.ORDER_COMPLETED]
    assert raised.value.undeclared == [Subject.PAYMENT_CREATED]


def test_a_service_missing_from_the_declaration_cannot_handle_anything():
    with pytest.raises(HandlersMismatch) as raised:
        check_handlers("auth", [Subject.TICKET_CREATED])

    assert str(raised.value) == (
        "auth: event handlers do not match contracts.CONSUMERS:"
        " declared but not handled: none;"
        " handled but not declared: ticket.created"
    )


@pytest.mark.parametrize("subject", list(Subject), ids=str)
def test_subject_is_aggregate_dot_past_tense_and_its_fields_match_the_design(subject):
    aggregate, _, verb = subject.value.partition(".")
    assert aggregate.isalpha()
    assert verb.isalpha()
    assert set(CONTRACTS[subject].model_fields) == DESIGN_FIELDS[subject]


@pytest.mark.parametrize("subject", list(Subject), ids=str)
def test_a_valid_example_validates_and_serializes_back_to_the_same_json(subject):
    data = example_data(subject)

    payload = validate_data(subject, data)

    assert type(payload) is CONTRACTS[subject]
    assert payload.model_dump(mode="json") == data


def test_ticket_payload_fields_are_parsed_to_their_types():
    data = ticket_data(version=3, price="20.50")

    payload = validate_data("ticket.created", data)

    assert payload.id == uuid.UUID(data["id"])
    assert payload.userId == uuid.UUID(data["userId"])
    assert payload.version == 3
    assert payload.title == "Front row"
    assert payload.price == Decimal("20.50")
    assert str(payload.price) == "20.50"


def test_money_string_stays_an_exact_decimal_and_is_serialized_as_a_string():
    payload = validate_data("ticket.created", ticket_data(price="20.50"))

    assert isinstance(payload.price, Decimal)
    assert payload.price.as_tuple() == Decimal("20.50").as_tuple()
    dumped = payload.model_dump(mode="json")
    assert dumped["price"] == "20.50"
    assert json.loads(json.dumps(dumped))["price"] == "20.50"
    assert payload.model_dump()["price"] == Decimal("20.50")  # python mode keeps the Decimal


@pytest.mark.parametrize(
    ("price", "wire"),
    [
        ("0.01", "0.01"),
        ("999999.99", "999999.99"),
        ("20", "20.00"),
        ("20.5", "20.50"),
        ("20.500", "20.50"),
        ("1e2", "100.00"),
    ],
)
def test_money_within_bounds_is_accepted_and_written_with_two_decimals(price, wire):
    payload = validate_data("ticket.created", ticket_data(price=price))

    assert payload.price == Decimal(price)
    assert payload.model_dump(mode="json")["price"] == wire


@pytest.mark.parametrize(
    ("price", "error_type"),
    [
        ("20.505", "decimal_max_places"),
        ("0.001", "decimal_max_places"),
        ("0", "greater_than"),
        ("0.00", "greater_than"),
        ("-1", "greater_than"),
        ("-0.01", "greater_than"),
        ("1000000", "decimal_whole_digits"),
        ("1000000.00", "decimal_whole_digits"),
        ("12345678.90", "decimal_max_digits"),
        ("NaN", "finite_number"),
        ("Infinity", "finite_number"),
        ("twenty", "decimal_parsing"),
        (True, "decimal_type"),
        (None, "decimal_type"),
    ],
)
def test_money_out_of_range_or_inexact_is_a_contract_error(price, error_type):
    with pytest.raises(ContractError) as raised:
        validate_data("ticket.created", ticket_data(price=price))

    message = str(raised.value)
    assert message.startswith("ticket.created: [")
    assert f"'type': '{error_type}'" in message
    assert "'loc': ('price',)" in message


def test_nested_money_in_order_created_is_exact_and_checked():
    payload = validate_data("order.created", order_created_data(price="99.90"))
    assert payload.ticket.price == Decimal("99.90")
    assert payload.model_dump(mode="json")["ticket"]["price"] == "99.90"

    with pytest.raises(ContractError, match=r"'loc': \('ticket', 'price'\)"):
        validate_data("order.created", order_created_data(price="1.999"))


def _required_fields():
    for subject in Subject:
        for field in sorted(DESIGN_FIELDS[subject] - OPTIONAL_FIELDS.get(subject, set())):
            yield pytest.param(subject, field, id=f"{subject}-{field}")


@pytest.mark.parametrize(("subject", "field"), list(_required_fields()))
def test_a_missing_required_field_is_a_contract_error(subject, field):
    data = example_data(subject)
    del data[field]

    with pytest.raises(ContractError) as raised:
        validate_data(subject, data)

    assert str(raised.value).startswith(f"{subject}: [")
    assert "'type': 'missing'" in str(raised.value)
    assert f"'loc': ('{field}',)" in str(raised.value)


@pytest.mark.parametrize(
    ("subject", "changes", "loc"),
    [
        ("ticket.created", {"id": "not-a-uuid"}, "('id',)"),
        ("ticket.created", {"version": "1"}, "('version',)"),  # strict: no string coercion
        ("ticket.created", {"version": 1.0}, "('version',)"),
        ("ticket.created", {"version": True}, "('version',)"),
        ("ticket.created", {"version": -1}, "('version',)"),
        ("ticket.created", {"title": ""}, "('title',)"),
        ("ticket.created", {"title": "x" * 201}, "('title',)"),
        ("ticket.created", {"title": 42}, "('title',)"),
        ("ticket.created", {"userId": None}, "('userId',)"),
        ("ticket.updated", {"orderId": "nope"}, "('orderId',)"),
        ("order.created", {"status": "shipped"}, "('status',)"),
        ("order.created", {"expiresAt": "tomorrow"}, "('expiresAt',)"),
        ("order.created", {"ticket": {"id": str(uuid.uuid4())}}, "('ticket', 'price')"),
        ("order.created", {"ticket": "abc"}, "('ticket',)"),
        ("order.cancelled", {"ticket": {}}, "('ticket', 'id')"),
        ("expiration.complete", {"orderId": 7}, "('orderId',)"),
        ("payment.created", {"stripeId": ""}, "('stripeId',)"),
    ],
)
def test_a_mistyped_field_is_a_contract_error(subject, changes, loc):
    data = {**example_data(Subject(subject)), **changes}

    with pytest.raises(ContractError) as raised:
        validate_data(subject, data)

    assert f"'loc': {loc}" in str(raised.value)
    assert isinstance(raised.value.__cause__, ValidationError)


@pytest.mark.parametrize("data", [None, [], "ticket", 42])
def test_a_payload_that_is_not_an_object_is_a_contract_error(data):
    with pytest.raises(ContractError, match=r"^ticket\.created: \["):
        validate_data("ticket.created", data)


def test_unknown_subject_is_a_contract_error():
    with pytest.raises(ContractError, match=r"^Unknown subject 'ticket\.deleted'$"):
        validate_data("ticket.deleted", ticket_data())


def test_unknown_fields_are_ignored_at_every_level():
    data = order_created_data(color="red")
    data["ticket"]["seat"] = "A1"

    payload = validate_data("order.created", data)

    dumped = payload.model_dump(mode="json")
    assert "color" not in dumped
    assert dumped["ticket"] == {"id": data["ticket"]["id"], "price": "20.50"}
    assert not hasattr(payload, "color")


def test_optional_order_id_defaults_to_none_and_accepts_null():
    data = ticket_data(version=1)

    assert validate_data("ticket.updated", data).orderId is None
    assert validate_data("ticket.updated", {**data, "orderId": None}).orderId is None
    order_id = str(uuid.uuid4())
    assert validate_data("ticket.updated", {**data, "orderId": order_id}).orderId == uuid.UUID(
        order_id
    )


def test_payloads_are_immutable():
    payload = validate_data("ticket.created", ticket_data())

    with pytest.raises(ValidationError):
        payload.title = "Changed"
    assert payload.title == "Front row"


def test_envelope_round_trips_through_json():
    data = ticket_data()
    event_id = uuid.uuid4()
    occurred_at = datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    original = Envelope(
        id=event_id, subject=Subject.TICKET_CREATED, occurredAt=occurred_at, data=data
    )

    wire = json.loads(json.dumps(original.model_dump(mode="json")))
    parsed = Envelope.model_validate(wire)

    assert wire == {
        "id": str(event_id),
        "subject": "ticket.created",
        "occurredAt": "2030-01-02T03:04:05.678000Z",
        "data": data,
    }
    assert parsed == original
    assert parsed.occurredAt == occurred_at
    assert parsed.payload() == validate_data("ticket.created", data)


def test_envelope_ignores_unknown_keys_and_checks_its_payload_only_on_demand():
    body = {
        "id": str(uuid.uuid4()),
        "subject": "ticket.created",
        "occurredAt": "2030-01-02T03:04:05+00:00",
        "data": {"id": "broken"},
        "producer": "tickets",
    }

    parsed = Envelope.model_validate(body)

    assert not hasattr(parsed, "producer")
    with pytest.raises(ContractError, match=r"'loc': \('id',\)"):
        parsed.payload()


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "not-a-uuid"},
        {"subject": "ticket.deleted"},
        {"occurredAt": "yesterday"},
        {"data": ["not", "an", "object"]},
        {"id": None},
    ],
    ids=["id", "subject", "occurredAt", "data", "null-id"],
)
def test_a_malformed_envelope_is_refused(changes):
    body = {
        "id": str(uuid.uuid4()),
        "subject": "ticket.created",
        "occurredAt": "2030-01-02T03:04:05+00:00",
        "data": ticket_data(),
        **changes,
    }

    with pytest.raises(ValidationError):
        Envelope.model_validate(body)

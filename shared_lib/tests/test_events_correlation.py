import contextvars
import json
import logging
import re
import sys
import uuid

import pytest

from shared_lib.correlation import (
    HEADER,
    CorrelationFilter,
    JsonFormatter,
    KeyValueFormatter,
    correlation_scope,
    current_correlation_id,
)
from shared_lib.events.outbox import relay_pending
from shared_lib.models import InboxMessage, OutboxEvent
from tests.demo import handlers
from tests.demo.bus import drain_demo, send_event
from tests.demo.factories import ticket_data

GENERATED = re.compile(r"^[0-9a-f]{32}$")
LOGGER = "shared_lib.events"


@pytest.mark.parametrize(
    "request_id",
    ["abc-123", "0f3c2a9e-6b1d-4c3e-9a51-2f8d7e6c5b4a", "gw:1700000000.42_x", "a" * 64],
)
def test_middleware_echoes_a_safe_request_id(client, request_id):
    response = client.get("/api/demo/ping", headers={HEADER: request_id})

    assert response.status_code == 200
    assert response[HEADER] == request_id


@pytest.mark.parametrize(
    "request_id",
    ["a" * 65, "has spaces", "semi;colon", "<script>", "ünïcode", ""],
    ids=["too-long", "spaces", "semicolon", "markup", "non-ascii", "empty"],
)
def test_middleware_replaces_an_unsafe_request_id(client, request_id):
    response = client.get("/api/demo/ping", headers={HEADER: request_id})

    assert response.status_code == 200
    assert GENERATED.match(response[HEADER])
    assert response[HEADER] != request_id


def test_middleware_generates_a_request_id_when_absent(client):
    first = client.get("/api/demo/ping")
    second = client.get("/api/demo/ping")

    assert GENERATED.match(first[HEADER])
    assert GENERATED.match(second[HEADER])
    assert first[HEADER] != second[HEADER]


def test_the_request_scope_ends_with_the_request(client):
    with correlation_scope("outer-work") as outer:
        client.get("/api/demo/ping", headers={HEADER: "inner-request"})

        assert current_correlation_id() == outer == "outer-work"


def test_scopes_nest_and_restore():
    with correlation_scope("outer"):
        with correlation_scope("inner"):
            assert current_correlation_id() == "inner"
        with correlation_scope(None) as fresh:
            assert GENERATED.match(fresh)
            assert current_correlation_id() == fresh
        assert current_correlation_id() == "outer"


def test_a_correlation_id_with_a_trailing_newline_is_replaced():
    with correlation_scope("abc\n") as value:
        assert GENERATED.match(value)


@pytest.mark.django_db
def test_events_published_during_a_request_carry_its_request_id(client, settings):
    settings.ROOT_URLCONF = "tests.demo.publishing"

    response = client.post("/demo/publish-ticket", headers={HEADER: "req-publish-1"})

    assert response.status_code == 200
    assert response[HEADER] == "req-publish-1"
    row = OutboxEvent.objects.get()
    assert str(row.id) == response.json()["eventId"]
    assert row.correlation_id == "req-publish-1"


@pytest.mark.django_db
def test_an_unsafe_request_id_is_not_copied_into_events(client, settings):
    settings.ROOT_URLCONF = "tests.demo.publishing"

    response = client.post("/demo/publish-ticket", headers={HEADER: "x" * 100})

    row = OutboxEvent.objects.get()
    assert row.correlation_id == response[HEADER]
    assert GENERATED.match(row.correlation_id)


@pytest.mark.usefixtures("transactional_db", "demo_queues")
def test_a_handler_that_publishes_passes_the_correlation_id_on(tap):
    ticket = ticket_data(title=handlers.ECHO_TITLE)
    event_id = send_event("ticket.created", ticket, correlation_id="corr-chain-9")

    drain_demo(until=lambda: OutboxEvent.objects.exists())
    assert relay_pending() == (1, False)

    assert InboxMessage.objects.get(message_id=event_id).correlation_id == "corr-chain-9"
    row = OutboxEvent.objects.get()
    assert (row.subject, row.correlation_id) == ("order.completed", "corr-chain-9")
    assert row.data == {"id": ticket["id"], "version": 0}
    messages = [m for m in tap.take() if m.delivery_info["routing_key"] == "order.completed"]
    [message] = messages
    assert message.properties["message_id"] == str(row.id)
    assert message.properties["correlation_id"] == "corr-chain-9"
    assert message.headers == {"correlation_id": "corr-chain-9"}


@pytest.mark.usefixtures("transactional_db", "demo_queues")
def test_consumer_log_lines_are_json_with_correlation_id_subject_and_event_id(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    event_id = send_event("ticket.created", ticket_data(), correlation_id="corr-log-3")

    drain_demo()

    [record] = [r for r in caplog.records if r.name == LOGGER and r.msg == "event handled"]
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed.pop("ms") >= 0
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", parsed.pop("time"))
    assert parsed == {
        "level": "INFO",
        "logger": LOGGER,
        "message": "event handled",
        "correlation_id": "corr-log-3",
        "subject": "ticket.created",
        "event_id": event_id,
        "queue": "demo.ticket.created",
        "attempt": 0,
    }


def test_the_filter_adds_the_current_correlation_id_to_plain_records():
    logger = logging.getLogger("tests.correlation")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    handler.addFilter(CorrelationFilter())
    logger.addHandler(handler)
    try:
        with correlation_scope("corr-plain"):
            logger.warning("inside %s", "scope", extra={"order_id": "o-1"})
        contextvars.Context().run(logger.warning, "outside")  # no request, no event
    finally:
        logger.removeHandler(handler)

    inside, outside = (json.loads(JsonFormatter().format(r)) for r in records)
    assert inside["message"] == "inside scope"
    assert inside["correlation_id"] == "corr-plain"
    assert inside["order_id"] == "o-1"
    assert inside["level"] == "WARNING"
    assert outside["message"] == "outside"
    assert outside["correlation_id"] is None
    text = KeyValueFormatter("%(levelname)s %(message)s").format(records[0])
    assert text == "WARNING inside scope correlation_id=corr-plain order_id=o-1"


def test_json_formatter_includes_the_exception_and_serializes_any_extra():
    record = logging.makeLogRecord(
        {"name": LOGGER, "levelno": logging.ERROR, "levelname": "ERROR", "msg": "boom"}
    )
    record.correlation_id = "corr-x"
    record.event_id = uuid.UUID(int=1)
    try:
        raise ValueError("bad input")
    except ValueError:
        record.exc_info = sys.exc_info()

    parsed = json.loads(JsonFormatter().format(record))

    assert parsed["event_id"] == "00000000-0000-0000-0000-000000000001"
    assert parsed["correlation_id"] == "corr-x"
    assert parsed["exception"].startswith("Traceback (most recent call last):")
    assert parsed["exception"].endswith("ValueError: bad input")

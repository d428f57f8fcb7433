"""Tracing: the trace context travels request -> outbox -> relay -> envelope -> handler, with
spans exported over OTLP/HTTP to a real receiver; off, nothing of it runs or is imported."""

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from shared_lib import tracing
from shared_lib.events.contracts import Envelope, Subject
from shared_lib.events.outbox import relay_pending
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.events import deliver_batch, make_event
from shared_lib.testing.otlp import OtlpReceiver
from tests.demo import handlers
from tests.demo.bus import drain_demo, nonempty_demo_queues, send_raw
from tests.demo.factories import envelope, order_cancelled_data, order_created_data, ticket_data
from tests.demo.models import TicketReplica

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"


def new_traceparent():
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def parts(traceparent):
    _, trace_id, span_id, _ = traceparent.split("-")
    return trace_id, span_id


@pytest.fixture
def traced(monkeypatch):
    """Tracing on for the test, exporting to a real OTLP/HTTP receiver; off afterwards."""
    with OtlpReceiver() as receiver:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        assert tracing.setup_tracing("demo") is True
        try:
            yield receiver
        finally:
            tracing.shutdown_tracing()


def exported(receiver, name, **options):
    tracing.force_flush()
    return receiver.wait_for(lambda span: span.name == name, **options)


# -- the envelope ---------------------------------------------------------------------------


def _envelope(**trace):
    return {**envelope(Subject.TICKET_CREATED, ticket_data()), **trace}


def test_an_envelope_keeps_a_well_formed_trace_context():
    parsed = Envelope.model_validate(_envelope(traceparent=TRACEPARENT, tracestate="vendor=a1,b=2"))

    assert (parsed.traceparent, parsed.tracestate) == (TRACEPARENT, "vendor=a1,b=2")


def test_an_envelope_without_a_trace_context_is_valid_as_before():
    parsed = Envelope.model_validate(_envelope())

    assert (parsed.traceparent, parsed.tracestate) == (None, None)
    assert parsed.payload().title


@pytest.mark.parametrize(
    "traceparent",
    [
        "",
        "garbage",
        TRACEPARENT.upper(),
        f"00-{'0' * 32}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-{SPAN_ID}-01",
        f"{TRACEPARENT}-extra",
        f" {TRACEPARENT}",
        f"{TRACEPARENT}\n",
        TRACEPARENT[:-1],
        12345,
        {"traceparent": TRACEPARENT},
        [TRACEPARENT],
    ],
)
def test_a_malformed_traceparent_is_dropped_not_rejected(traceparent):
    parsed = Envelope.model_validate(_envelope(traceparent=traceparent, tracestate="a=b"))

    assert parsed.traceparent is None
    assert parsed.payload().title  # the event itself is as valid as ever


@pytest.mark.parametrize("tracestate", ["a" * 513, "a=b\nc=d", "a=\x1b[31m", 7, ""])
def test_a_malformed_tracestate_is_dropped_not_rejected(tracestate):
    parsed = Envelope.model_validate(_envelope(traceparent=TRACEPARENT, tracestate=tracestate))

    assert (parsed.traceparent, parsed.tracestate) == (TRACEPARENT, None)


# -- off ------------------------------------------------------------------------------------

_OFF_SCRIPT = """
import gc, json, sys, threading
import django
from django.test.utils import setup_test_environment
django.setup()
setup_test_environment()
from django.test import Client
from shared_lib import tracing
from shared_lib.events import broker, consumer, outbox
from shared_lib.events.contracts import Envelope

# redis-py imports OpenTelemetry's metrics API whenever it is installed (for metrics of
# its own, off unless configured); the tracing SDK, exporter and propagator are ours.
TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter",
    "opentelemetry.proto",
    "opentelemetry.trace.propagation.tracecontext",
)
set_up = tracing.setup_tracing("demo")
status = Client().get("/api/demo/ping").status_code
with tracing.creating("ticket.created", count=1) as created:
    pass
with tracing.sending("ticket.created", event_id="e", exchange="x", correlation_id="c",
                     traceparent=sys.argv[1]) as sent:
    pass
with tracing.handling([], queue="demo.ticket.created"):
    pass
print(json.dumps({
    "set_up": set_up,
    "status": status,
    "created": created,
    "sent": sent,
    "modules": sorted(name for name in sys.modules if name.startswith(TRACING_MODULES)),
    "threads": [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")],
    "middleware": sum(isinstance(o, tracing.TracingMiddleware) for o in gc.get_objects()),
}))
"""


def test_with_tracing_off_nothing_is_imported_or_set_up():
    # A process of its own: this one may have imported the SDK in another test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    here = Path(__file__).resolve().parent.parent
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(here), env.get("PYTHONPATH")]))

    result = subprocess.run(
        [sys.executable, "-c", _OFF_SCRIPT, TRACEPARENT],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "set_up": False,
        "status": 200,
        "created": ["", ""],
        "sent": [TRACEPARENT, ""],  # the row's context passes through a relay that is off
        "modules": [],
        "threads": [],  # no BatchSpanProcessor
        "middleware": 0,  # Django left TracingMiddleware out of the chain
    }


@pytest.mark.usefixtures("transactional_db", "rabbitmq_vhost")
def test_with_tracing_off_the_outbox_row_and_the_envelope_carry_no_trace_context(
    client, settings, tap
):
    settings.ROOT_URLCONF = "tests.demo.publishing"
    assert not tracing.enabled()

    response = client.post("/demo/publish-ticket", headers={"traceparent": TRACEPARENT})
    assert relay_pending() == (1, False)

    row = OutboxEvent.objects.get()
    assert (row.traceparent, row.tracestate) == ("", "")
    [message] = tap.take()
    assert set(json.loads(message.body)) == {"id", "subject", "occurredAt", "data"}
    assert json.loads(message.body)["id"] == response.json()["eventId"]


# -- on -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db", "rabbitmq_vhost")
def test_a_request_s_event_carries_its_trace_through_the_outbox_and_the_relay(
    traced, client, settings, tap
):
    settings.ROOT_URLCONF = "tests.demo.publishing"

    response = client.post(
        "/demo/publish-ticket", headers={"traceparent": TRACEPARENT, "X-Request-ID": "req-t-1"}
    )
    assert relay_pending() == (1, False)

    [request] = exported(traced, "POST /demo/publish-ticket")
    [create] = exported(traced, "create ticket.created")
    [publish] = exported(traced, "publish ticket.created")
    # The request continues the caller's trace; the write and the send follow it.
    assert (request.trace_id, request.parent_span_id) == (TRACE_ID, SPAN_ID)
    assert (request.kind, request.service) == ("SERVER", "demo")
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["ticketing.correlation_id"] == "req-t-1"
    assert (create.trace_id, create.parent_span_id) == (TRACE_ID, request.span_id)
    assert (publish.trace_id, publish.parent_span_id) == (TRACE_ID, create.span_id)
    assert publish.kind == "PRODUCER"
    assert publish.attributes["messaging.message.id"] == response.json()["eventId"]
    # The row keeps the write's context; the envelope carries the send's.
    row = OutboxEvent.objects.get()
    assert parts(row.traceparent) == (TRACE_ID, create.span_id)
    [message] = tap.take()
    body = json.loads(message.body)
    assert parts(body["traceparent"]) == (TRACE_ID, publish.span_id)
    assert "tracestate" not in body


@pytest.mark.usefixtures("transactional_db", "demo_queues")
def test_a_handler_s_span_is_the_child_of_its_event_s_producer_context(traced):
    body = _envelope(traceparent=TRACEPARENT, tracestate="vendor=a1")
    send_raw(body, routing_key="ticket.created", message_id=body["id"])

    drain_demo(until=lambda: InboxMessage.objects.filter(message_id=body["id"]).exists())

    [handled] = exported(traced, "process ticket.created")
    assert (handled.trace_id, handled.parent_span_id) == (TRACE_ID, SPAN_ID)
    assert handled.kind == "CONSUMER"
    assert handled.attributes["messaging.message.id"] == body["id"]
    assert handled.attributes["messaging.destination.subscription.name"] == "demo.ticket.created"


@pytest.mark.usefixtures("transactional_db", "demo_queues")
@pytest.mark.parametrize(
    "forged", [f"00-{'0' * 32}-{SPAN_ID}-01", "00-zz-yy-01", {"not": "a string"}, "x" * 5000]
)
def test_a_malformed_traceparent_starts_a_new_trace_and_the_event_is_handled(traced, forged):
    body = _envelope(traceparent=forged)
    send_raw(body, routing_key="ticket.created", message_id=body["id"])

    drain_demo(until=lambda: InboxMessage.objects.filter(message_id=body["id"]).exists())

    assert TicketReplica.objects.filter(id=body["data"]["id"]).exists()
    assert nonempty_demo_queues() == {}  # neither retried nor dead-lettered
    [handled] = exported(traced, "process ticket.created")
    assert handled.parent_span_id == ""  # a root: a trace of its own
    assert handled.trace_id not in (TRACE_ID, "0" * 32)


@pytest.mark.django_db
def test_a_batch_handler_s_call_links_each_event_s_producer_context(traced):
    orders = [uuid.uuid4() for _ in range(3)]
    assert deliver_batch(
        [make_event(Subject.ORDER_CREATED, order_created_data(id=o)) for o in orders]
    )
    handlers.cancel_batches.clear()
    contexts = [new_traceparent() for _ in orders]
    first, second, third = (
        make_event(Subject.ORDER_CANCELLED, order_cancelled_data(id=o), traceparent=context)
        for o, context in zip(orders, contexts, strict=True)
    )
    between = make_event(Subject.TICKET_CREATED, ticket_data(title="between"))

    deliver_batch([first, second, between, third])

    assert handlers.cancel_batches == [2, 1]
    spans = exported(traced, "process order.cancelled", count=2)
    [batch] = [span for span in spans if span.links]
    [alone] = [span for span in spans if not span.links]
    # One call for two events: a trace of its own, linked to each event's producer.
    assert batch.parent_span_id == ""
    assert set(batch.links) == {parts(contexts[0]), parts(contexts[1])}
    assert batch.attributes["messaging.batch.message_count"] == 2
    # An event handled alone is its producer's child.
    assert (alone.trace_id, alone.parent_span_id) == parts(contexts[2])


def test_the_service_name_is_otel_service_name_when_set(traced, monkeypatch):
    tracing.shutdown_tracing()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "tickets-canary")
    assert tracing.setup_tracing("demo") is True

    with tracing.creating(Subject.TICKET_CREATED, count=1) as (traceparent, _):
        assert traceparent.startswith("00-")

    [create] = exported(traced, "create ticket.created")
    assert create.service == "tickets-canary"
    assert (create.trace_id, create.span_id) == parts(traceparent)


# -- the test receiver ----------------------------------------------------------------------


def _post_span(receiver, *, span_id, parent_span_id=""):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id = bytes.fromhex(TRACE_ID)
    span.span_id = bytes.fromhex(span_id)
    span.parent_span_id = bytes.fromhex(parent_span_id)
    span.name = span_id
    answer = requests.post(
        f"{receiver.endpoint}/v1/traces", data=request.SerializeToString(), timeout=5
    )
    assert answer.status_code == 200


def test_the_receiver_s_ancestry_waits_for_a_parent_exported_after_its_child():
    # Each process exports on its own schedule: the consumer's span can arrive before the
    # producer's, and a chain read at that moment would stop short.
    import threading

    with OtlpReceiver() as receiver:
        _post_span(receiver, span_id="00000000000000c1", parent_span_id="00000000000000b1")
        [child] = receiver.wait_for(lambda span: span.span_id == "00000000000000c1")
        late = threading.Timer(
            0.5,
            _post_span,
            (receiver,),
            {"span_id": "00000000000000b1", "parent_span_id": ""},
        )
        late.start()
        try:
            chain = receiver.ancestry(child, timeout=10)
        finally:
            late.join()
        assert [span.span_id for span in chain] == ["00000000000000c1", "00000000000000b1"]


def test_the_receiver_s_ancestry_names_the_chain_when_no_root_arrives():
    with OtlpReceiver() as receiver:
        _post_span(receiver, span_id="00000000000000c2", parent_span_id="00000000000000b2")
        [child] = receiver.wait_for(lambda span: span.span_id == "00000000000000c2")
        with pytest.raises(AssertionError, match=r"no root span above \[': 00000000000000c2'\]"):
            receiver.ancestry(child, timeout=0.3)

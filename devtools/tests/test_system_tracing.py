"""Distributed tracing across the real processes: a ticket sold in tickets_svc and its
replication into orders_svc are one trace, exported over OTLP/HTTP by every process.

One stack of its own, every process told OTEL_EXPORTER_OTLP_ENDPOINT of a receiver this
test runs (shared_lib.testing.otlp): gunicorn workers, Celery workers and all.
"""

import uuid

import pytest

from shared_lib.testing.otlp import OtlpReceiver
from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from tests import system
from ticketing_devtools.backing import rabbitmq_url
from ticketing_devtools.testing import StackSettings, running_stack


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    with OtlpReceiver() as receiver, throwaway_vhost(rabbitmq_url(), "ticketing-tracing") as vhost:
        settings = StackSettings(
            db_prefix=f"ticketing_tracing_{uuid.uuid4().hex[:8]}",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                # Exported within a fifth of a second, not the SDK's default five.
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            },
        )
        with running_stack(
            settings,
            broker_url=broker_url(rabbitmq_url(), vhost=vhost),
            directory=tmp_path_factory.mktemp("tracing"),
        ) as stack:
            yield stack, receiver


def test_a_ticket_sale_and_its_handling_in_orders_are_one_trace(traced):
    stack, receiver = traced
    seller = system.user(stack, "seller")

    sold = system.sell(stack, seller)  # POST /api/tickets, through the gateway

    [request] = receiver.wait_for(
        lambda span: (
            span.service == "tickets"
            and span.kind == "SERVER"
            and span.attributes.get("url.path") == "/api/tickets"
            and span.attributes.get("http.request.method") == "POST"
        )
    )
    [handled] = receiver.wait_for(
        lambda span: (
            span.service == "orders"
            and span.name == "process ticket.created"
            and span.trace_id == request.trace_id
        )
    )
    assert request.attributes["http.response.status_code"] == 201
    assert handled.kind == "CONSUMER"
    assert handled.attributes["messaging.destination.subscription.name"] == "orders.ticket.created"
    # The handler's ancestry reaches the HTTP request: request -> outbox write (tickets
    # web) -> relay's publish (tickets worker) -> handling (orders worker).
    chain = receiver.ancestry(handled)
    assert [(span.service, span.name) for span in chain] == [
        ("orders", "process ticket.created"),
        ("tickets", "publish ticket.created"),
        ("tickets", "create ticket.created"),
        ("tickets", request.name),
    ]
    assert chain[-1] == request
    assert {span.trace_id for span in chain} == {request.trace_id}
    # The replica it built is the sold ticket: orders takes an order for it.
    assert system.orderable(stack, system.user(stack, "buyer"), sold["id"]).status_code == 201

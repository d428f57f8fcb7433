"""Distributed tracing (OpenTelemetry): a request, the events it causes and their handling
in other services, as one trace.

    setup_tracing("tickets")        # at start-up: wsgi.py, and the Celery worker (worker_init)
    with tracing.handling([event], queue="orders.ticket.created"):
        handler(event)               # what the consumer does; a no-op when tracing is off

On when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: spans
go over OTLP/HTTP (protobuf) through a BatchSpanProcessor, as `service.name` the service's
name unless OTEL_SERVICE_NAME says otherwise; the SDK's other variables apply as usual
(OTEL_TRACES_SAMPLER, OTEL_BSP_SCHEDULE_DELAY, OTEL_EXPORTER_OTLP_HEADERS, ...), and
OTEL_SDK_DISABLED=true keeps it off. Off otherwise, and off costs nothing: the SDK is never
imported, TracingMiddleware takes itself out of the middleware chain at start-up, and the
event paths check one module global and pass through.

The spans of one write and its consequences:
  `POST api/tickets` (SERVER, TracingMiddleware; a valid incoming `traceparent` header is
  its parent, as W3C Trace Context intends)
    `create ticket.created` (INTERNAL, publish(): the outbox row, written in the request's
    transaction, keeps this span's context in its traceparent/tracestate columns)
      `publish ticket.created` (PRODUCER, the relay in the worker, later: its context goes
      into the envelope's `traceparent`/`tracestate`)
        `process ticket.created` (CONSUMER, the handler in each consuming service)
          `create ...` (whatever the handler publishes, and so on)
PRODUCER -> CONSUMER is the edge service-graph tools draw between two services. A relay
with tracing off passes the row's context on unchanged, so the chain holds as long as
both ends trace.

A batch handler (`@event_handler(..., batch=True)`) handles many events in one call, so
one `process` span covers the call and carries a span link to each event's producer
context (OpenTelemetry's convention for batch processing: a span has one parent, and
picking one event's trace would misfile the others). Each event handled on its own
(every plain handler, and a batch handler when its batch is rerun event by event) gets a
`process` span of its own whose parent is that event's producer context. An envelope
without a valid `traceparent` (none sent, or malformed: the contract drops it) starts a
new trace; it is never an error.

Fork safety: gunicorn loads the app in each worker after the fork (no preload_app in
shared_lib.gunicorn_conf), so wsgi.py sets tracing up in every worker, each with its own
exporter thread; were the app preloaded, the SDK re-creates the BatchSpanProcessor's
thread in each child itself (os.register_at_fork). Spans still queued are flushed at exit.

Django requests go through TracingMiddleware, a few lines of our own rather than
opentelemetry-instrumentation-django: that package rewrites settings.MIDDLEWARE when
instrumented and brings the WSGI instrumentation and its helpers along, where this needs
one span per request, named by the route our metrics already compute, and no middleware
at all when tracing is off.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import MiddlewareNotUsed
from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer

    from shared_lib.events.registry import Event

# Set by setup_tracing(); None means off, and every helper below passes through.
_tracer: Tracer | None = None
_provider: TracerProvider | None = None

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
MESSAGING_SYSTEM = "rabbitmq"
# What off yields where a context is expected: no traceparent, no tracestate.
_NO_CONTEXT = ("", "")
_OFF: contextlib.nullcontext[Any] = contextlib.nullcontext(_NO_CONTEXT)


def wanted() -> bool:
    """Whether the environment asks for tracing (an OTLP endpoint, the SDK not disabled)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(os.environ.get(name) for name in ENDPOINT_VARIABLES)


def enabled() -> bool:
    return _tracer is not None


def setup_tracing(service: str) -> bool:
    """Set tracing up for this process if the environment asks for it; whether it is on.
    Called once at start-up; a second call changes nothing."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    if not wanted():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # Batched in a thread of its own: a request or a handler never waits on the collector.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    # Global too, so that any OpenTelemetry instrumentation added later reports here (the
    # API takes only the first: after shutdown_tracing() the new one is ours alone).
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        trace.set_tracer_provider(provider)
    _provider = provider
    _tracer = provider.get_tracer("shared_lib")
    return True


def shutdown_tracing() -> None:
    """Export what is queued and turn tracing off (the SDK does the first at exit too)."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None:
        provider.shutdown()


def force_flush(timeout_millis: int = 10_000) -> bool:
    """Export every finished span now (tests, and a short-lived process before it exits)."""
    return _provider.force_flush(timeout_millis) if _provider is not None else True


def _extract(traceparent: str, tracestate: str) -> Any:
    """The context a W3C pair names; an empty one (a new trace) when it names none."""
    from opentelemetry.context import Context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if not traceparent:
        return Context()
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    # Whatever the propagator cannot parse it ignores, returning the empty context.
    return TraceContextTextMapPropagator().extract(carrier, context=Context())


def _inject() -> tuple[str, str]:
    """The current span's context as a W3C (traceparent, tracestate) pair."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", ""), carrier.get("tracestate", "")


# -- the outbox and the relay -------------------------------------------------------------


def creating(subject: str, *, count: int) -> contextlib.AbstractContextManager[tuple[str, str]]:
    """Around an outbox write of `count` events of `subject`: yields the (traceparent,
    tracestate) the rows keep, ("", "") when tracing is off."""
    if _tracer is None:
        return _OFF
    return _creating(_tracer, subject, count)


@contextlib.contextmanager
def _creating(tracer: Tracer, subject: str, count: int) -> Iterator[tuple[str, str]]:
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "create",
        "messaging.rabbitmq.destination.routing_key": str(subject),
    }
    if count > 1:
        attributes["messaging.batch.message_count"] = count
    with tracer.start_as_current_span(
        f"create {subject}", kind=SpanKind.INTERNAL, attributes=attributes
    ):
        yield _inject()


def sending(
    subject: str,
    *,
    event_id: str,
    exchange: str,
    correlation_id: str,
    traceparent: str = "",
    tracestate: str = "",
) -> contextlib.AbstractContextManager[tuple[str, str]]:
    """Around one event's publish to the broker: yields the (traceparent, tracestate) its
    envelope carries. The parent is the context the outbox row kept (none: the current
    one, as when a task publishes directly); off, the row's own pair goes on unchanged."""
    if _tracer is None:
        return contextlib.nullcontext((traceparent, tracestate))
    return _sending(_tracer, subject, event_id, exchange, correlation_id, traceparent, tracestate)


@contextlib.contextmanager
def _sending(
    tracer: Tracer,
    subject: str,
    event_id: str,
    exchange: str,
    correlation_id: str,
    traceparent: str,
    tracestate: str,
) -> Iterator[tuple[str, str]]:
    from opentelemetry.trace import SpanKind

    parent = _extract(traceparent, tracestate) if traceparent else None
    with tracer.start_as_current_span(
        f"publish {subject}",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": exchange,
            "messaging.rabbitmq.destination.routing_key": str(subject),
            "messaging.message.id": event_id,
            "ticketing.correlation_id": correlation_id,
        },
    ):
        yield _inject()


# -- the consumer -------------------------------------------------------------------------


def handling(events: Sequence[Event], *, queue: str) -> contextlib.AbstractContextManager[Any]:
    """Around one handler call: a `process` span, the child of the event's producer
    context (one event), or linked to each event's (a batch handler's call)."""
    if _tracer is None:
        return _OFF
    return _handling(_tracer, events, queue)


@contextlib.contextmanager
def _handling(tracer: Tracer, events: Sequence[Event], queue: str) -> Iterator[None]:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link, SpanKind, get_current_span

    first = events[0]
    attributes: dict[str, Any] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.destination.subscription.name": queue,
        "messaging.rabbitmq.destination.routing_key": str(first.subject),
    }
    links = []
    if len(events) == 1:
        parent = _extract(first.traceparent, first.tracestate)
        attributes["messaging.message.id"] = str(first.id)
        attributes["ticketing.correlation_id"] = first.correlation_id
        attributes["ticketing.event.attempt"] = first.attempt
    else:
        parent = Context()  # a trace of its own, linked to each event's
        attributes["messaging.batch.message_count"] = len(events)
        for event in events:
            producer = get_current_span(_extract(event.traceparent, event.tracestate))
            if producer.get_span_context().is_valid:
                links.append(
                    Link(
                        producer.get_span_context(),
                        {"messaging.message.id": str(event.id)},
                    )
                )
    with tracer.start_as_current_span(
        f"process {first.subject}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    ):
        yield


# -- HTTP ---------------------------------------------------------------------------------


class TracingMiddleware:
    """A SERVER span per request: `METHOD route`, its status, and as its parent a valid
    incoming `traceparent` header. With tracing off Django drops it at start-up
    (MiddlewareNotUsed), so a request never reaches it. Probes and scrapes are answered
    before it and are not traced."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        if _tracer is None:
            raise MiddlewareNotUsed("tracing is off")
        self.get_response = get_response
        self.tracer = _tracer

    def __call__(self, request: HttpRequest) -> HttpResponse:
        from opentelemetry.trace import SpanKind, Status, StatusCode

        from shared_lib.correlation import current_correlation_id
        from shared_lib.metrics import route_label

        parent = _extract(
            request.META.get("HTTP_TRACEPARENT", ""), request.META.get("HTTP_TRACESTATE", "")
        )
        method = request.method or "GET"
        with self.tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": request.path,
                "url.scheme": request.scheme,
                "ticketing.correlation_id": current_correlation_id(),
            },
        ) as span:
            response = self.get_response(request)
            route = route_label(request)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", response.status_code)
            if response.status_code >= 500:
                # A server span is in error only for 5xx: a 4xx is the client's.
                span.set_status(Status(StatusCode.ERROR))
            return response

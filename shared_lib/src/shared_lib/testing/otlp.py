"""A real OTLP/HTTP trace receiver for tests: what processes export, decoded.

    with OtlpReceiver() as receiver:                 # env OTEL_EXPORTER_OTLP_ENDPOINT=...
        start_the_processes(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)
        [handled] = receiver.wait_for(lambda s: s.name == "process ticket.created")

An http.server thread on 127.0.0.1 that accepts `POST /v1/traces` (protobuf, optionally
gzip), decodes each ExportTraceServiceRequest with opentelemetry-proto and keeps its spans,
as a collector would receive them from shared_lib.tracing's exporter.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from shared_lib.testing.processes import ServerThread

TRACES_PATH = "/v1/traces"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str  # the resource's service.name
    trace_id: str  # hex, as in a traceparent
    span_id: str
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # "SERVER", "CONSUMER", ...
    attributes: dict[str, Any] = field(default_factory=dict)
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id) of each linked span
    status: str = "UNSET"  # "OK", "ERROR"


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    value = getattr(any_value, kind)
    if kind == "array_value":
        return [_value(item) for item in value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value) for item in value.values}
    return value


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one serialized ExportTraceServiceRequest."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes=_attributes(span.attributes),
                        links=tuple(
                            (link.trace_id.hex(), link.span_id.hex()) for link in span.links
                        ),
                        status=Status.StatusCode.Name(span.status.code).removeprefix(
                            "STATUS_CODE_"
                        ),
                    )
                )
    return spans


class OtlpReceiver(ServerThread):
    """Receives spans on `endpoint` (OTEL_EXPORTER_OTLP_ENDPOINT's value) until stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self.requests = 0  # export requests answered, decodable or not
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != TRACES_PATH:
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = decode(body)
                with receiver._lock:
                    receiver._spans.extend(spans)
                    receiver.requests += 1
                # An empty ExportTraceServiceResponse: everything accepted.
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the exporters post every few hundred milliseconds: no access log

        super().__init__(Handler, name="otlp-receiver")

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def wait_for(
        self, condition: Callable[[ReceivedSpan], bool], *, count: int = 1, timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """The received spans that meet `condition`, once there are at least `count`;
        AssertionError (with what did arrive) after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            found = [span for span in self.spans if condition(span)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                names = sorted({f"{span.service}: {span.name}" for span in self.spans})
                raise AssertionError(f"{len(found)} of {count} spans in {timeout}s; got {names}")
            time.sleep(0.1)

    def ancestry(self, span: ReceivedSpan, *, timeout: float = 30.0) -> list[ReceivedSpan]:
        """`span`, its parent, its parent's parent... up to the trace's root span.

        Each process exports on its own schedule, so a parent can arrive after its child:
        waits up to `timeout` seconds for the chain to reach a root; AssertionError (with
        the chain so far) if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            by_id = {(s.trace_id, s.span_id): s for s in self.spans}
            chain = [span]
            while (parent := by_id.get((span.trace_id, chain[-1].parent_span_id))) is not None:
                chain.append(parent)
            if not chain[-1].parent_span_id:
                return chain
            if time.monotonic() > deadline:
                names = [f"{s.service}: {s.name}" for s in chain]
                raise AssertionError(f"no root span above {names} in {timeout}s")
            time.sleep(0.1)

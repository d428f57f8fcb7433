"""Prometheus metrics of every service: HTTP, events, outbox, expiry; served on /metrics.

    MIDDLEWARE = ["shared_lib.metrics.MetricsMiddleware", ...]   # first: times every request
    EVENTS_HANDLED.labels(queue="orders.ticket.created", subject="ticket.created",
                          outcome="applied").inc()              # what the consumer does

Web processes answer `GET /metrics` on their own port (before host checks, like /healthz),
only to a request that did not come through the gateway: the gateway always sets
X-Forwarded-For, a scrape of the pod (or of 127.0.0.1:<port> locally) never does, so the
web client's /metrics, which the gateway's catch-all route would otherwise expose, is a
plain 404 from the outside. Under gunicorn each worker process writes its samples to
PROMETHEUS_MULTIPROC_DIR (set up by shared_lib.gunicorn_conf) and whichever answers the
scrape adds them all up. Celery workers are one process: `MetricsServerStep`
(shared_lib.events.worker) serves the default registry on METRICS_PORT, with scrape-time
gauges of the outbox backlog and the service's queues.

Label values are bounded: a route is its URL pattern (`/api/tickets/<uuid:ticket_id>`),
never the raw path; methods outside the standard few are "other"; queues and subjects
come from the contracts, never from a message.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from datetime import datetime

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# The route label of a request no URL pattern matched (404s, bodies refused before
# routing, a disallowed Host) and of static files: one value each, whatever the path.
UNMATCHED_ROUTE = "<unmatched>"
STATIC_ROUTE = "<static>"
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Prometheus' default buckets, plus 30 s and 60 s: gunicorn and the gateway give up on a
# request at 60 s, so the slowest requests still land in a bucket of their own.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# Publish -> handled: milliseconds when all is well (bench: p99 9 ms), seconds while a
# version gap closes through the wait queues (1 s, 5 s, 30 s), minutes behind an outage.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
# 0 counts expiries that fired early or exactly on time (delayed delivery is whole
# seconds and the task waits out the rest, so anything above 1 s is the worker behind).
EXPIRY_BUCKETS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)

HTTP_REQUEST_SECONDS = Histogram(
    "ticketing_http_request_duration_seconds",
    "Time to answer an HTTP request (its _count is the request rate), by URL pattern, "
    "method and status.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
)
EVENTS_PUBLISHED = Counter(
    "ticketing_events_published",
    "Events sent to the events exchange and confirmed by the broker.",
    ["subject"],
)
EVENTS_HANDLED = Counter(
    "ticketing_events_handled",
    "Deliveries a consumer finished: applied, or a duplicate the inbox skipped.",
    ["queue", "subject", "outcome"],
)
EVENTS_RETRIED = Counter(
    "ticketing_events_retried",
    "Deliveries sent back through a wait queue; reason: not_yet, database or error.",
    ["queue", "subject", "reason"],
)
EVENTS_DEAD_LETTERED = Counter(
    "ticketing_events_dead_lettered",
    "Messages parked in <queue>.dead; reason: invalid, undecodable, or the last failure "
    "(not_yet, database, error) once the retry budget was spent.",
    ["queue", "subject", "reason"],
)
EVENT_LAG_SECONDS = Histogram(
    "ticketing_event_lag_seconds",
    "From an event's occurredAt to its handler's commit (applied events only): how far "
    "behind the producer this consumer's view is, outbox and retries included.",
    ["queue", "subject"],
    buckets=LAG_BUCKETS,
)
EVENT_BATCH_SIZE = Histogram(
    "ticketing_event_batch_size",
    "Deliveries a consumer settled together (one transaction, one ack): near 1 when it "
    "keeps up, towards EVENTS_BATCH_SIZE while it drains a backlog.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
EXPIRY_LATENESS_SECONDS = Histogram(
    "ticketing_expiry_lateness_seconds",
    "How long after an order's expiresAt its expiration.complete was confirmed sent.",
    buckets=EXPIRY_BUCKETS,
)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    """Every metric of this process, or of every gunicorn worker in multiprocess mode,
    and the service's WEB_METRICS_COLLECTORS (dotted paths of Collector classes, read at
    each scrape: e.g. the email backlog of a service whose web processes send email)."""
    if registry is not None:
        return generate_latest(registry)
    if multiprocess_dir():
        base = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)
    else:
        base = REGISTRY
    return generate_latest(_Together([base, *_web_collectors()]))  # type: ignore[arg-type]


def _web_collectors() -> list[Collector]:
    from django.conf import settings
    from django.utils.module_loading import import_string

    return [import_string(path)() for path in getattr(settings, "WEB_METRICS_COLLECTORS", ())]


class _Together:
    """Several collectors (or registries) read as one, for generate_latest."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def collect(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part.collect()


_NAMED_GROUP = re.compile(r"\(\?P<(\w+)>")


@functools.lru_cache(maxsize=1024)  # as many as the URL patterns: a handful per service
def route_template(route: str) -> str:
    """A matched pattern as a readable template: `^api/tickets/(?P<ticket_id>[0-9a-f-]+)/?$`
    (api_route's regex) becomes `/api/tickets/<ticket_id>`; path() patterns stay as written."""
    out: list[str] = []
    index = 0
    while index < len(route):
        group = _NAMED_GROUP.match(route, index)
        if group is None:
            out.append(route[index])
            index += 1
            continue
        depth, index = 1, group.end()
        while index < len(route) and depth:  # skip to the group's closing parenthesis
            char = route[index]
            if char == "\\":
                index += 2
                continue
            depth += 1 if char == "(" else -1 if char == ")" else 0
            index += 1
        out.append(f"<{group.group(1)}>")
    text = "".join(out).replace("^", "").replace("$", "").replace("/?", "")
    return "/" + text.lstrip("/")


def route_label(request: HttpRequest) -> str:
    """The request's URL pattern (bounded: a label, a log field), not its raw path."""
    from django.conf import settings

    from shared_lib.health import LIVENESS_PATH, READINESS_PATH

    match = getattr(request, "resolver_match", None)
    if match is not None:
        return route_template(match.route)
    path = request.path_info.rstrip("/")
    if path in (LIVENESS_PATH, READINESS_PATH):  # answered by HealthMiddleware, unrouted
        return path
    static_url = getattr(settings, "STATIC_URL", None)
    if static_url and request.path_info.startswith(str(static_url)):
        return STATIC_ROUTE
    return UNMATCHED_ROUTE


def _method(request: HttpRequest) -> str:
    method = (request.method or "").upper()
    return method if method in KNOWN_METHODS else "other"


def came_through_proxy(request: HttpRequest) -> bool:
    """The gateway (nginx locally, ingress-nginx in a cluster) always sets X-Forwarded-For;
    Prometheus scraping a pod, or anyone on 127.0.0.1 locally, sends neither header."""
    return "HTTP_X_FORWARDED_FOR" in request.META or "HTTP_FORWARDED" in request.META


class MetricsMiddleware:
    """Times every request and answers /metrics to direct (unproxied) requests.

    First in MIDDLEWARE: it sees every response, the probes' and the error handlers'
    included, and Prometheus scrapes with the pod IP as Host, which ALLOWED_HOSTS rightly
    does not list. A proxied /metrics goes on down the stack like any unknown path (404).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.rstrip("/") == METRICS_PATH and not came_through_proxy(request):
            return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
        started = time.perf_counter()
        response = self.get_response(request)
        HTTP_REQUEST_SECONDS.labels(
            route=route_label(request), method=_method(request), status=str(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


def age_seconds(oldest: datetime | None) -> float:
    """Seconds since `oldest`, a gauge's value: 0 when there is none (or a clock skew
    puts it in the future)."""
    from django.utils import timezone

    return max((timezone.now() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0


class DatabaseGaugesCollector(Collector):
    """Gauges read from the database when scraped: `gauges` maps a key of `values()` to
    (metric name, help). A database outage yields no samples: none beats a wrong one."""

    what: ClassVar[str] = ""  # names the collector in the warning when the database is down
    gauges: ClassVar[dict[str, tuple[str, str]]] = {}

    def values(self) -> dict[str, float]:
        raise NotImplementedError

    def describe(self) -> list[GaugeMetricFamily]:
        # Registering asks for the names; without this it would run a scrape to find them.
        return [GaugeMetricFamily(name, "") for name, _ in self.gauges.values()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import connection

        try:
            values = self.values()
        except Exception:
            logger.warning("%s metrics unavailable", self.what, exc_info=True)
            return
        finally:
            # A scrape runs in a thread of its own; its connection must not outlive it.
            if not connection.in_atomic_block:
                connection.close()
        for key, (name, documentation) in self.gauges.items():
            yield GaugeMetricFamily(name, documentation, value=values[key])


class OutboxCollector(DatabaseGaugesCollector):
    """At scrape time: unsent outbox rows and the age of the oldest (one indexed query)."""

    what = "outbox"
    gauges = {
        "unsent": (
            "ticketing_outbox_unsent_events",
            "Outbox rows not yet confirmed by the broker.",
        ),
        "oldest_age": (
            "ticketing_outbox_oldest_unsent_age_seconds",
            "Age of the oldest unsent outbox row (0 when there is none).",
        ),
    }

    def values(self) -> dict[str, float]:
        from shared_lib.models import OutboxEvent

        return _delivery_backlog(OutboxEvent.objects.all())


class EmailCollector(DatabaseGaugesCollector):
    """At scrape time: emails not yet sent, the oldest's age, and those whose last try
    failed (shared_lib.mail). For a worker that sends email: WORKER_METRICS_COLLECTORS;
    for web processes that send it (auth_svc): WEB_METRICS_COLLECTORS."""

    what = "email"
    gauges = {
        "unsent": ("ticketing_email_unsent", "Emails queued and not yet sent."),
        "oldest_age": (
            "ticketing_email_oldest_unsent_age_seconds",
            "Age of the oldest unsent email (0 when there is none).",
        ),
        "failing": (
            "ticketing_email_failing",
            "Unsent emails whose last try failed (SMTP refused or unreachable).",
        ),
        "undeliverable": (
            "ticketing_email_undeliverable",
            "Emails given up on, their address refused for good (kept EMAIL_RETENTION_DAYS).",
        ),
    }

    def values(self) -> dict[str, float]:
        from shared_lib.models import OutgoingEmail

        pending = OutgoingEmail.objects.filter(given_up_at__isnull=True)
        given_up = OutgoingEmail.objects.filter(sent_at__isnull=True, given_up_at__isnull=False)
        return {**_delivery_backlog(pending), "undeliverable": given_up.count()}


def _delivery_backlog(rows: Any) -> dict[str, float]:
    """The unsent ones of a delivery table's `rows` (a queryset of shared_lib.models' tables):
    how many, the oldest's age, and how many failed their last try; one query on the
    table's index of rows still to send.

    Sequential scans are priced out for it: the backlog is small however large the table,
    but the planner estimates `sent_at IS NULL AND given_up_at IS NULL` as if the two were
    unrelated (tens of thousands of rows where there are fifty) and, once that index has
    grown through a burst, reads the whole table at every scrape instead."""
    from django.db import connections, transaction
    from django.db.models import Count, Min, Q

    with transaction.atomic(using=rows.db), connections[rows.db].cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        backlog = rows.filter(sent_at__isnull=True).aggregate(
            count=Count("pk"),
            oldest=Min("created_at"),
            failing=Count("pk", filter=~Q(last_error="")),
        )
    return {
        "unsent": backlog["count"],
        "oldest_age": age_seconds(backlog["oldest"]),
        "failing": backlog["failing"],
    }


class QueueCollector(Collector):
    """At scrape time: messages ready in the service's queues and in their dead letters
    (passive declares on one short connection; a broker outage yields no samples)."""

    def __init__(self, queues: Iterable[str]) -> None:
        self.queues = sorted(queues)

    def describe(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("ticketing_queue_ready_messages", ""),
            GaugeMetricFamily("ticketing_queue_dead_letters", ""),
        ]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from shared_lib.events import broker

        ready = GaugeMetricFamily(
            "ticketing_queue_ready_messages",
            "Messages waiting in this service's consumer queue (the consumer's backlog).",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "ticketing_queue_dead_letters",
            "Messages parked in <queue>.dead, waiting for events_deadletters replay.",
            labels=["queue"],
        )
        try:
            with broker.connection() as conn:
                dead_names = {queue: broker.dead_queue_name(queue) for queue in self.queues}
                counts = broker.ready_counts(conn, [*self.queues, *dead_names.values()])
        except Exception:
            logger.warning("queue metrics unavailable", exc_info=True)
            return
        # A queue not declared yet (the worker declares its own at start) has no sample.
        for queue, dead_name in dead_names.items():
            if counts[queue] is not None:
                ready.add_metric([queue], counts[queue])
            if counts[dead_name] is not None:
                dead.add_metric([queue], counts[dead_name])
        yield ready
        yield dead


def serve_worker_metrics(
    *, port: int, address: str, collectors: Iterable[Collector] = ()
) -> Callable[[], None]:
    """Serve the default registry (plus `collectors`) over HTTP; returns a stop function.

    A port already taken raises: two workers must never answer on one port. A service adds
    collectors of its own with WORKER_METRICS_COLLECTORS (dotted paths of Collector classes).
    """
    from django.conf import settings
    from django.utils.module_loading import import_string
    from prometheus_client import start_http_server

    extra = list(collectors) + [
        import_string(path)() for path in getattr(settings, "WORKER_METRICS_COLLECTORS", ())
    ]
    for collector in extra:
        REGISTRY.register(collector)
    try:
        server, thread = start_http_server(port, addr=address)
    except BaseException:
        for collector in extra:
            REGISTRY.unregister(collector)
        raise
    logger.info("metrics served", extra={"address": address, "port": port})

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for collector in extra:
            REGISTRY.unregister(collector)

    return stop


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """This process's current value of one sample (0 when it was never touched): tests."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return value if value is not None else 0.0


def parse_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Samples of a scraped /metrics page keyed by (name, labels): tests, the status command."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples

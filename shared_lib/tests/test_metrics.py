"""Metrics: HTTP by route pattern, event counters, the worker's /metrics, gunicorn's sums.

Counters live in this process's registry for the whole session, so in-process tests
compare before and after; worker and gunicorn tests scrape fresh processes, whose values
are exact.
"""

import json
import logging
import os
import signal
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.db import transaction
from django.utils import timezone

from shared_lib.events import Subject, publish
from shared_lib.events.contracts import validate_data
from shared_lib.events.outbox import relay_pending
from shared_lib.ids import UUID_PATTERN
from shared_lib.metrics import parse_samples, route_template, sample
from shared_lib.models import OutboxEvent
from shared_lib.testing import processes
from shared_lib.testing.waiting import wait_for
from tests.demo import handlers
from tests.demo.bus import broker_unreachable, bus, drain_demo, send_event, send_raw
from tests.demo.factories import new_id, ticket_data
from tests.demo.models import TicketReplica

HTTP_COUNT = "ticketing_http_request_duration_seconds_count"
HTTP_BUCKET = "ticketing_http_request_duration_seconds_bucket"
HANDLED = "ticketing_events_handled_total"
RETRIED = "ticketing_events_retried_total"
DEAD = "ticketing_events_dead_lettered_total"
LAG_COUNT = "ticketing_event_lag_seconds_count"
PUBLISHED = "ticketing_events_published_total"
TICKETS = "demo.ticket.created"
ERRORS_ROUTE = "/api/demo/errors/<str:kind>"


def http(route, method, status):
    return sample(HTTP_COUNT, {"route": route, "method": method, "status": status})


def http_series():
    """Every (route, method, status) the HTTP histogram has seen in this process."""
    from prometheus_client import REGISTRY

    return {
        (s.labels["route"], s.labels["method"], s.labels["status"])
        for family in REGISTRY.collect()
        if family.name == "ticketing_http_request_duration_seconds"
        for s in family.samples
        if s.name == HTTP_COUNT
    }


def event_counts(queue=TICKETS, subject="ticket.created"):
    """The event counters of one queue, every label value the consumer uses."""
    labels = {"queue": queue, "subject": subject}
    return {
        "applied": sample(HANDLED, {**labels, "outcome": "applied"}),
        "duplicate": sample(HANDLED, {**labels, "outcome": "duplicate"}),
        **{
            f"retried:{reason}": sample(RETRIED, {**labels, "reason": reason})
            for reason in ("not_yet", "database", "error")
        },
        **{
            f"dead:{reason}": sample(DEAD, {**labels, "reason": reason})
            for reason in ("invalid", "undecodable", "not_yet", "database", "error")
        },
        "lag": sample(LAG_COUNT, labels),
    }


def moved(before, after):
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


# --- HTTP -------------------------------------------------------------------------------


def test_requests_are_counted_by_route_pattern_method_and_status(client):
    before = {
        "404": http(ERRORS_ROUTE, "GET", "404"),
        "409": http(ERRORS_ROUTE, "GET", "409"),
        "ping": http("/api/demo/ping", "GET", "200"),
    }

    client.get("/api/demo/errors/not-found")
    client.get("/api/demo/errors/not-found")
    client.get("/api/demo/errors/conflict")
    client.get("/api/demo/ping")

    assert http(ERRORS_ROUTE, "GET", "404") - before["404"] == 2
    assert http(ERRORS_ROUTE, "GET", "409") - before["409"] == 1
    assert http("/api/demo/ping", "GET", "200") - before["ping"] == 1
    # Every series is (pattern, method, status): the raw path never becomes a label.
    assert all(route.startswith(("/", "<")) for route, _, _ in http_series())
    assert not any("not-found" in route or "conflict" in route for route, _, _ in http_series())


@pytest.mark.parametrize(
    ("pattern", "template"),
    [
        (rf"^api/tickets/(?P<ticket_id>{UUID_PATTERN})/?$", "/api/tickets/<ticket_id>"),
        ("^api/tickets/?$", "/api/tickets"),
        ("api/demo/^schema/?$", "/api/demo/schema"),
        ("api/demo/errors/<str:kind>", "/api/demo/errors/<str:kind>"),
        (r"admin/demo/^(?P<app_label>demo|auth)/$", "/admin/demo/<app_label>/"),
        (r"^a/(?P<x>(\d+|\())/b$", "/a/<x>/b"),  # nested and escaped parentheses
    ],
)
def test_route_patterns_become_readable_templates(pattern, template):
    assert route_template(pattern) == template


def test_an_api_route_regex_is_labelled_by_its_template(client):
    before = http("/api/demo/schema", "GET", "200")

    assert client.get("/api/demo/schema/").status_code == 200
    assert client.get("/api/demo/schema").status_code == 200

    assert http("/api/demo/schema", "GET", "200") - before == 2


def test_a_path_no_pattern_matches_is_one_series_whatever_the_path(client):
    before = http("<unmatched>", "GET", "404")
    noise = uuid.uuid4().hex

    assert client.get(f"/no/such/{noise}").status_code == 404
    assert client.get(f"/api/demo/nothing-{noise}").status_code == 404

    assert http("<unmatched>", "GET", "404") - before == 2
    assert not any(noise in route for route, _, _ in http_series())


def test_unknown_methods_share_one_label_value(client):
    before = http("/api/demo/ping", "other", "405")

    response = client.generic("BREW", "/api/demo/ping")

    assert response.status_code == 405
    assert http("/api/demo/ping", "other", "405") - before == 1
    assert not any(method == "BREW" for _, method, _ in http_series())


def test_probes_are_timed_under_their_own_path(client):
    before = http("/healthz", "GET", "200")

    client.get("/healthz")

    assert http("/healthz", "GET", "200") - before == 1


def test_a_request_lands_in_latency_buckets_up_to_the_gateway_timeout(client):
    labels = {"route": "/api/demo/ping", "method": "GET", "status": "200"}
    before = {le: sample(HTTP_BUCKET, {**labels, "le": le}) for le in ("60.0", "+Inf")}

    client.get("/api/demo/ping")

    after = {le: sample(HTTP_BUCKET, {**labels, "le": le}) for le in ("60.0", "+Inf")}
    assert moved(before, after) == {"60.0": 1, "+Inf": 1}


def test_metrics_are_served_to_a_direct_request_on_any_host(client):
    client.get("/api/demo/ping")
    # Prometheus scrapes the pod IP, which ALLOWED_HOSTS does not list.
    response = client.get("/metrics", HTTP_HOST="10.244.1.17:8000")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse_samples(response.content.decode())
    key = frozenset({"route": "/api/demo/ping", "method": "GET", "status": "200"}.items())
    assert samples[(HTTP_COUNT, key)] == http("/api/demo/ping", "GET", "200")


def test_metrics_through_the_gateway_are_an_ordinary_404(client):
    unmatched = http("<unmatched>", "GET", "404")
    direct = {route for route, _, _ in http_series()}

    proxied = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9")
    forwarded = client.get("/metrics/", HTTP_FORWARDED="for=203.0.113.9")
    client.get("/metrics")  # a direct scrape is not itself counted

    for response in (proxied, forwarded):
        assert response.status_code == 404
        assert response.json() == {"errors": [{"message": "Not Found"}]}
        assert b"ticketing_" not in response.content
    assert http("<unmatched>", "GET", "404") - unmatched == 2
    assert {route for route, _, _ in http_series()} - direct <= {"<unmatched>"}


# --- events, consumed in this process -----------------------------------------------------


@bus
def test_an_applied_event_and_its_redelivery_are_counted_apart():
    before = event_counts()
    event_id = new_id()
    send_event("ticket.created", ticket_data(), id=event_id)
    send_event("ticket.created", ticket_data(), id=event_id)  # the same message again

    drain_demo()

    # Applied once (with its lag), skipped once; nothing retried or dead-lettered.
    assert moved(before, event_counts()) == {"applied": 1, "duplicate": 1, "lag": 1}


@bus
def test_a_handler_bug_counts_each_retry_then_one_dead_letter(caplog):
    caplog.set_level(logging.INFO, logger="shared_lib.events")
    before = event_counts()
    send_event("ticket.created", ticket_data(title=handlers.POISON_TITLE))
    send_event("ticket.created", ticket_data(title="Good"))

    drain_demo(until=lambda: any(r.getMessage() == "event dead-lettered" for r in caplog.records))

    # EVENTS_MAX_ATTEMPTS = 3 in the test settings: two retries, then parked.
    assert moved(before, event_counts()) == {
        "applied": 1,
        "lag": 1,
        "retried:error": 2,
        "dead:error": 1,
    }


@bus
def test_invalid_and_undecodable_messages_are_dead_lettered_under_their_reason():
    before = event_counts()
    send_event("ticket.created", ticket_data(price="cheap"))
    send_raw(
        b"\x00not json",
        routing_key="ticket.created",
        message_id=new_id(),
        serializer=None,
        content_type="application/json",
        content_encoding="utf-8",
    )

    drain_demo()

    assert moved(before, event_counts()) == {"dead:invalid": 1, "dead:undecodable": 1}


@bus
def test_a_confirmed_publish_is_counted_once_per_event():
    before = sample(PUBLISHED, {"subject": "ticket.created"})
    others = sample(PUBLISHED, {"subject": "ticket.updated"})

    with transaction.atomic():
        publish(Subject.TICKET_CREATED, ticket_data())
        publish(Subject.TICKET_CREATED, ticket_data())
    assert sample(PUBLISHED, {"subject": "ticket.created"}) == before  # not sent yet
    assert relay_pending() == (2, False)
    with transaction.atomic():
        publish(Subject.TICKET_CREATED, ticket_data())
    with broker_unreachable():
        assert relay_pending() == (0, True)  # not confirmed: not counted

    assert sample(PUBLISHED, {"subject": "ticket.created"}) - before == 2
    assert sample(PUBLISHED, {"subject": "ticket.updated"}) == others


# --- a real worker's /metrics ------------------------------------------------------------


def scrape(url):
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    return parse_samples(response.text)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


@pytest.mark.usefixtures("demo_queues")
def test_a_worker_serves_its_event_counters_outbox_and_queues(event_worker):
    worker = event_worker()
    # An unsent row two minutes old that the relay may not send yet (its back-off), as a
    # failed send leaves it.
    two_minutes_ago = timezone.now() - timedelta(minutes=2)
    stuck = OutboxEvent.objects.create(
        subject=Subject.TICKET_CREATED,
        data=validate_data(Subject.TICKET_CREATED, ticket_data(title="Stuck")).model_dump(
            mode="json"
        ),
        created_at=two_minutes_ago,
        occurred_at=two_minutes_ago,
        attempts=1,
        next_attempt_at=timezone.now() + timedelta(hours=1),
        last_error="OperationalError: [Errno 111] Connection refused",
    ).id
    send_event("ticket.created", ticket_data(title=handlers.POISON_TITLE))
    with transaction.atomic():
        good = publish(Subject.TICKET_CREATED, ticket_data(title="Good"))
    wait_for(
        lambda: value(scrape(worker.metrics_url), "ticketing_queue_dead_letters", queue=TICKETS)
    )

    samples = scrape(worker.metrics_url)
    labels = {"queue": TICKETS, "subject": "ticket.created"}
    assert value(samples, HANDLED, **labels, outcome="applied") == 1
    assert value(samples, HANDLED, **labels, outcome="duplicate") is None
    assert value(samples, RETRIED, **labels, reason="error") == 2
    assert value(samples, DEAD, **labels, reason="error") == 1
    assert value(samples, LAG_COUNT, **labels) == 1
    assert value(samples, "ticketing_queue_ready_messages", queue=TICKETS) == 0
    assert value(samples, "ticketing_queue_dead_letters", queue=TICKETS) == 1
    assert value(samples, "ticketing_queue_dead_letters", queue="demo.order.created") == 0
    assert value(samples, "ticketing_outbox_unsent_events") == 1
    assert 120 <= value(samples, "ticketing_outbox_oldest_unsent_age_seconds") < 180
    assert TicketReplica.objects.filter(title="Good").count() == 1
    assert OutboxEvent.objects.get(id=good).sent_at is not None

    # Due now: the relay sends it, and the backlog empties.
    OutboxEvent.objects.filter(id=stuck).update(next_attempt_at=timezone.now())
    wait_for(lambda: value(scrape(worker.metrics_url), HANDLED, **labels, outcome="applied") == 2)
    samples = scrape(worker.metrics_url)
    assert value(samples, "ticketing_outbox_unsent_events") == 0
    assert value(samples, "ticketing_outbox_oldest_unsent_age_seconds") == 0


@pytest.fixture
def taken_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.usefixtures("demo_queues")
def test_a_worker_whose_metrics_port_is_taken_does_not_start(event_worker, taken_port):
    with pytest.raises(RuntimeError, match="worker did not start") as failure:
        event_worker(METRICS_PORT=str(taken_port))

    assert "Address already in use" in str(failure.value)


def test_two_workers_get_ports_of_their_own(event_worker):
    first, second = event_worker(), event_worker()

    assert first.metrics_url != second.metrics_url
    for worker in (first, second):
        assert (
            value(scrape(worker.metrics_url), "ticketing_queue_ready_messages", queue=TICKETS) == 0
        )


# --- gunicorn: every worker process in one scrape ---------------------------------------


def workers(server):
    """The pids of the gunicorn master's worker processes."""
    pid = server.process.pid
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def count(server, route):
    samples = scrape(f"{server.url}/metrics")
    return value(samples, HTTP_COUNT, route=route, method="GET", status="200")


@pytest.fixture
def gunicorn(tmp_path):
    """Factory of gunicorn servers of the demo app, two workers each; stopped afterwards."""
    servers = []

    def start(**env):
        server = processes.gunicorn(
            "tests.wsgi",
            cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, "WEB_CONCURRENCY": "2", **env},
            log_path=tmp_path / f"gunicorn-{len(servers)}.log",
        )
        servers.append(server)
        server.start().wait_http("/healthz", timeout=30)
        wait_for(lambda: len(workers(server)) == 2, what="two gunicorn workers")
        return server

    yield start
    for server in servers:
        server.stop()


def ping(server, times):
    for _ in range(times):
        # A new connection each time, so the master's accept spreads them over workers.
        assert requests.get(f"{server.url}/api/demo/ping", timeout=10).status_code == 200


def test_gunicorn_workers_add_up_and_a_dead_workers_counts_stay(gunicorn):
    server = gunicorn()
    ping(server, 20)
    assert count(server, "/api/demo/ping") == 20

    old = workers(server)
    os.kill(old[0], signal.SIGKILL)
    wait_for(lambda: len(workers(server)) == 2 and workers(server) != old)
    ping(server, 5)

    assert count(server, "/api/demo/ping") == 25


def test_gunicorn_wipes_a_given_metrics_directory_and_removes_its_own(gunicorn, tmp_path):
    given = tmp_path / "metrics"
    given.mkdir()
    first = gunicorn(PROMETHEUS_MULTIPROC_DIR=str(given))
    ping(first, 3)
    assert count(first, "/api/demo/ping") == 3
    first.stop()
    assert list(given.glob("*.db"))  # a given directory is left in place

    second = gunicorn(PROMETHEUS_MULTIPROC_DIR=str(given))
    ping(second, 2)

    assert count(second, "/api/demo/ping") == 2  # not 5: the last run's files were wiped
    before = set(Path(tempfile.gettempdir()).glob("ticketing-metrics-*"))
    third = gunicorn()
    made = set(Path(tempfile.gettempdir()).glob("ticketing-metrics-*")) - before
    assert len(made) == 1
    third.stop()
    assert not any(path.exists() for path in made)


# --- the web process's log: JSON lines only ----------------------------------------------


def test_gunicorn_and_the_app_log_json_lines_with_one_access_line_per_request(gunicorn):
    server = gunicorn(LOG_FORMAT="json")
    response = requests.get(
        f"{server.url}/api/demo/ping", headers={"X-Request-ID": "req-access-42"}, timeout=10
    )
    assert response.status_code == 200
    requests.get(f"{server.url}/healthz", timeout=10)  # a probe: not logged
    server.stop()

    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line, gunicorn's own included
    assert any(p["logger"] == "gunicorn.error" and "Booting worker" in p["message"] for p in parsed)
    access = [p for p in parsed if p["logger"] == "ticketing.access"]
    assert len(access) == 1
    assert {k: access[0][k] for k in ("message", "method", "path", "route", "status")} == {
        "message": "request",
        "method": "GET",
        "path": "/api/demo/ping",
        "route": "/api/demo/ping",
        "status": 200,
    }
    assert access[0]["correlation_id"] == "req-access-42"
    assert access[0]["client"] == "127.0.0.1"
    assert 0 <= access[0]["duration_ms"] < 10_000


@bus
def test_a_queue_not_declared_yet_has_no_sample_and_spoils_no_other():
    from shared_lib.metrics import QueueCollector

    collector = QueueCollector([TICKETS, "demo.nothing.declared"])

    families = {family.name: family for family in collector.collect()}

    ready = {s.labels["queue"]: s.value for s in families["ticketing_queue_ready_messages"].samples}
    dead = {s.labels["queue"]: s.value for s in families["ticketing_queue_dead_letters"].samples}
    assert ready == {TICKETS: 0}
    assert dead == {TICKETS: 0}

"""The expiration worker's /metrics: how late each expiry fired, and its event counters."""

from datetime import UTC, datetime

import requests

from shared_lib.metrics import parse_samples
from shared_lib.testing.waiting import wait_for
from tests.test_expiry import expires_at, order_created, publish, receive

LATENESS = "ticketing_expiry_lateness_seconds"


def scrape(worker):
    response = requests.get(worker.metrics_url, timeout=10)
    assert response.status_code == 200
    return parse_samples(response.text)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def after_one_expiry(worker):
    return wait_for(lambda: (s := scrape(worker)) and value(s, f"{LATENESS}_count") and s)


def test_an_expiry_is_measured_as_late_as_it_fired_and_never_early(
    event_worker, rabbitmq_vhost, expirations
):
    worker = event_worker()
    assert value(scrape(worker), f"{LATENESS}_count") == 0

    envelope = order_created(expires_in=2.5)
    publish(rabbitmq_vhost, envelope)
    receive(expirations, timeout=15)
    samples = after_one_expiry(worker)
    # The worker measured before we scraped, so the figure cannot exceed what had passed by then.
    scraped_late = (datetime.now(UTC) - expires_at(envelope)).total_seconds()

    assert value(samples, f"{LATENESS}_count") == 1
    assert value(samples, f"{LATENESS}_bucket", le="0.0") == 0  # never early
    assert 0 < value(samples, f"{LATENESS}_sum") <= scraped_late
    handled = {"queue": "expiration.order.created", "subject": "order.created"}
    assert value(samples, "ticketing_events_handled_total", **handled, outcome="applied") == 1
    assert value(samples, "ticketing_event_lag_seconds_count", **handled) == 1
    assert value(samples, "ticketing_events_published_total", subject="expiration.complete") == 1
    # Queue depth at scrape time; no outbox here (no database).
    assert value(samples, "ticketing_queue_ready_messages", queue="expiration.order.created") == 0
    assert value(samples, "ticketing_queue_dead_letters", queue="expiration.order.created") == 0
    assert value(samples, "ticketing_outbox_unsent_events") is None


def test_an_expiry_already_past_is_measured_as_late_as_it_was(
    event_worker, rabbitmq_vhost, expirations
):
    worker = event_worker()

    envelope = order_created(expires_in=-30)
    publish(rabbitmq_vhost, envelope)
    receive(expirations, timeout=10)
    samples = after_one_expiry(worker)
    scraped_late = (datetime.now(UTC) - expires_at(envelope)).total_seconds()

    assert value(samples, f"{LATENESS}_count") == 1
    assert value(samples, f"{LATENESS}_bucket", le="10.0") == 0
    assert 30 <= value(samples, f"{LATENESS}_sum") <= scraped_late

"""`ticketing-dev status` and the metrics endpoints, against the whole system as `make up`
runs it (the session's stack: its own databases, vhost and ports)."""

import subprocess
import sys
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
import requests
from kombu import Connection, Exchange

from shared_lib.metrics import parse_samples
from shared_lib.testing.processes import free_port
from shared_lib.testing.waiting import wait_for
from tests import system
from ticketing_devtools.backing import admin_url
from ticketing_devtools.catalog import service
from ticketing_devtools.status import Target, collect, vhost_of

WEB = ["auth", "client", "orders", "payments", "tickets"]
WORKERS = ["tickets-worker", "orders-worker", "payments-worker", "expiration-worker"]
POISONED = "orders.ticket.created"


def status_command(stack):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ticketing_devtools.cli",
            "status",
            "--stack-file",
            str(stack.description_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def healthy_report(stack):
    """Status once in-flight work of earlier tests has settled (outbox rows in flight)."""
    target = Target.of_stack(stack)
    return wait_for(lambda: (r := collect(target)).healthy and r, timeout=30)


def test_status_of_a_healthy_system_shows_every_service_ready_and_exits_0(stack):
    report = healthy_report(stack)
    command = status_command(stack)

    assert [(r.service, r.ready) for r in report.readiness] == [(name, True) for name in WEB]
    # Each service's own checks, every one "ok" (the client depends on nothing).
    assert {r.service: r.detail.split(", ")[0] for r in report.readiness} == {
        "auth": "database ok",
        "client": "no dependencies",
        "orders": "database ok",
        "payments": "database ok",
        "tickets": "database ok",
    }
    assert all(
        check.endswith(" ok") for r in report.readiness for check in r.detail.split(", ")[1:]
    )
    assert [(o.service, o.unsent, o.error) for o in report.outboxes] == [
        ("tickets", 0, ""),
        ("orders", 0, ""),
        ("payments", 0, ""),
    ]
    assert report.dead_letters() == {}
    names = {q.name for q in report.queues}
    assert {"orders.ticket.created", "tickets.order.created", "expiration.tasks"} <= names
    assert f"{POISONED}.dead" in names
    assert command.returncode == 0, command.stdout + command.stderr
    out = command.stdout
    assert out.splitlines()[0] == "Readiness"
    for name in WEB:
        assert f"{name:<8}  ready      {stack.service_url(name)}  (" in out
    assert f"Queues (vhost {vhost_of(stack.describe()['rabbitmq_url'])})" in out
    assert "\nDead letters\n  none\n" in out
    assert out.rstrip().endswith("OK: every service ready, nothing stuck")


@pytest.fixture
def purge_dead_letters(stack):
    url = stack.describe()["rabbitmq_url"]
    yield url
    with Connection(url) as conn:
        conn.default_channel.queue_purge(f"{POISONED}.dead")


def worker_samples(stack, process):
    response = requests.get(stack.metrics_url(process), timeout=10)
    assert response.status_code == 200
    return parse_samples(response.text)


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_poison_message_is_a_dead_letter_in_status_and_in_metrics(stack, purge_dead_letters):
    dead_metric = {"queue": POISONED, "subject": "ticket.created", "reason": "invalid"}
    before = value(
        worker_samples(stack, "orders-worker"),
        "ticketing_events_dead_lettered_total",
        **dead_metric,
    )
    # From tickets' own broker user: from anyone else it would be refused as untrusted.
    with Connection(stack.env_for("tickets")["RABBITMQ_URL"]) as conn:
        conn.Producer().publish(
            {"not": "an event"},
            exchange=Exchange("ticketing.events", type="topic", durable=True),
            routing_key="ticket.created",
            serializer="json",
            message_id=str(uuid.uuid4()),
            delivery_mode=2,
            user_id="tickets",
        )
    target = Target.of_stack(stack)
    report = wait_for(lambda: (r := collect(target)).dead_letters() and r)

    command = status_command(stack)

    assert report.dead_letters() == {f"{POISONED}.dead": 1}
    assert report.problems() == [f"1 dead letter in {POISONED}.dead"]
    assert command.returncode == 1
    assert f"\nDead letters\n  {POISONED}.dead  1\n" in command.stdout
    assert command.stdout.rstrip().endswith(f"UNHEALTHY:\n  - 1 dead letter in {POISONED}.dead")
    samples = worker_samples(stack, "orders-worker")
    assert value(samples, "ticketing_events_dead_lettered_total", **dead_metric) == before + 1
    assert value(samples, "ticketing_queue_dead_letters", queue=POISONED) == 1
    # The consumer went on: the queue it was on is empty.
    assert value(samples, "ticketing_queue_ready_messages", queue=POISONED) == 0

    with Connection(purge_dead_letters) as conn:
        conn.default_channel.queue_purge(f"{POISONED}.dead")
    assert status_command(stack).returncode == 0


def test_a_service_that_is_not_ready_fails_status(stack):
    closed = f"http://127.0.0.1:{free_port()}"
    target = Target.of_stack(stack)
    target = Target(target.vhost, target.db_prefix, {**target.service_urls, "auth": closed})

    report = collect(target)

    [auth] = [r for r in report.readiness if r.service == "auth"]
    assert (auth.ready, auth.detail) == (False, "unreachable (ConnectionError)")
    assert report.problems() == ["auth not ready: unreachable (ConnectionError)"]


def test_status_without_a_running_system_says_so(tmp_path):
    missing = tmp_path / "stack.json"
    command = subprocess.run(
        [sys.executable, "-m", "ticketing_devtools.cli", "status", "--stack-file", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert command.returncode == 2
    assert f"No running system described at {missing}" in command.stdout


def web_samples(stack, name):
    response = requests.get(f"{stack.service_url(name)}/metrics", timeout=10)
    assert response.status_code == 200
    return parse_samples(response.text)


def wait_for_quiet_expiries(stack):
    """Until every earlier order's expiry has fired and been handled everywhere: none of
    theirs lands in our deltas."""
    url = admin_url(service("orders").database(stack.db_prefix))
    with psycopg.connect(url) as conn:
        (latest,) = conn.execute("SELECT max(expires_at) FROM orders_order").fetchone()
    if latest is None:
        return
    window = (latest - datetime.now(UTC)).total_seconds()
    wait_for(lambda: datetime.now(UTC) > latest, timeout=max(0.0, window) + 5)

    def settled():
        with psycopg.connect(url) as conn:
            (unexpired,) = conn.execute(
                "SELECT count(*) FROM orders_order WHERE status = 'created'"
            ).fetchone()
        # Cancelled everywhere: no order still waits, and no event is still on its way.
        report = collect(Target.of_stack(stack))
        in_flight = [q.name for q in report.queues if q.total and not q.name.endswith(".dead")]
        unsent = [o.service for o in report.outboxes if o.unsent]
        return unexpired == 0 and not in_flight and not unsent

    wait_for(settled, timeout=60)


HANDLED = "ticketing_events_handled_total"


def handled(samples, queue, subject):
    return value(samples, HANDLED, queue=queue, subject=subject, outcome="applied")


def test_metrics_move_with_a_purchase(stack, seller, buyer):
    wait_for_quiet_expiries(stack)
    http = "ticketing_http_request_duration_seconds_count"
    web_before = {name: web_samples(stack, name) for name in ("tickets", "orders", "payments")}
    workers_before = {p: worker_samples(stack, p) for p in WORKERS}

    ticket = system.sell(stack, seller)
    order = system.orderable(stack, buyer, ticket["id"])
    assert order.status_code == 201, order.text
    order_id = order.json()["id"]
    # Until payments_svc's order replica has the order (an event, a moment after the
    # order): a 404 before that is the API's answer, not a failure of the purchase.
    payment = system.first_answer(
        lambda: buyer.post(
            f"{stack.url}/api/payments",
            json={"orderId": order_id, "token": "pm_card_visa"},
            timeout=30,
        )
    )
    assert payment.status_code == 201, payment.text
    # The paid order's expiry still fires (orders_svc ignores it): its lateness is measured.
    late = "ticketing_expiry_lateness_seconds_count"

    def settled():
        payments = worker_samples(stack, "payments-worker")
        orders = worker_samples(stack, "orders-worker")
        expiration = worker_samples(stack, "expiration-worker")
        return (
            handled(payments, "payments.order.completed", "order.completed")
            > handled(
                workers_before["payments-worker"], "payments.order.completed", "order.completed"
            )
            and handled(orders, "orders.expiration.complete", "expiration.complete")
            > handled(
                workers_before["orders-worker"], "orders.expiration.complete", "expiration.complete"
            )
            and value(expiration, late) > value(workers_before["expiration-worker"], late)
        )

    wait_for(settled, timeout=system.EXPIRATION_WINDOW_SECONDS + 15)

    web_after = {name: web_samples(stack, name) for name in web_before}
    workers_after = {p: worker_samples(stack, p) for p in WORKERS}

    def web_moved(name, **labels):
        return value(web_after[name], http, **labels) - value(web_before[name], http, **labels)

    assert web_moved("tickets", route="/api/tickets", method="POST", status="201") == 1
    assert web_moved("orders", route="/api/orders", method="POST", status="201") == 1
    assert web_moved("payments", route="/api/payments", method="POST", status="201") == 1
    assert web_moved("tickets", route="/api/tickets", method="POST", status="400") == 0
    # Sent by the worker's outbox relay; the web process only writes the outbox row.
    published = "ticketing_events_published_total"
    assert (
        value(workers_after["tickets-worker"], published, subject="ticket.created")
        - value(workers_before["tickets-worker"], published, subject="ticket.created")
        == 1
    )
    assert value(web_after["tickets"], published, subject="ticket.created") == 0

    def worker_moved(process, queue, subject):
        return handled(workers_after[process], queue, subject) - handled(
            workers_before[process], queue, subject
        )

    assert worker_moved("orders-worker", "orders.ticket.created", "ticket.created") == 1
    assert worker_moved("orders-worker", "orders.payment.created", "payment.created") == 1
    assert worker_moved("orders-worker", "orders.expiration.complete", "expiration.complete") == 1
    assert worker_moved("tickets-worker", "tickets.order.created", "order.created") == 1
    assert worker_moved("tickets-worker", "tickets.order.cancelled", "order.cancelled") == 0
    assert worker_moved("payments-worker", "payments.order.created", "order.created") == 1
    assert worker_moved("payments-worker", "payments.order.completed", "order.completed") == 1
    assert worker_moved("expiration-worker", "expiration.order.created", "order.created") == 1
    lag = "ticketing_event_lag_seconds_count"
    labels = {"queue": "tickets.order.created", "subject": "order.created"}
    assert (
        value(workers_after["tickets-worker"], lag, **labels)
        - value(workers_before["tickets-worker"], lag, **labels)
        == 1
    )
    expiry = workers_after["expiration-worker"]
    assert value(expiry, late) - value(workers_before["expiration-worker"], late) == 1
    for process in ("tickets-worker", "orders-worker", "payments-worker"):
        assert value(workers_after[process], "ticketing_outbox_unsent_events") == 0


def test_metrics_are_not_reachable_through_the_gateway(stack):
    # Every path no route claims goes to the web client; its /metrics answers direct
    # scrapes only, and the gateway always sets X-Forwarded-For.
    for path in ("/metrics", "/metrics/"):
        through_gateway = requests.get(f"{stack.url}{path}", timeout=10)
        assert through_gateway.status_code == 404
        assert "ticketing_" not in through_gateway.text
    for name in WEB:
        direct = requests.get(f"{stack.service_url(name)}/metrics", timeout=10)
        assert direct.status_code == 200
        assert direct.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE ticketing_http_request_duration_seconds histogram" in direct.text


def test_an_outbox_row_stuck_for_minutes_fails_status(stack):
    # A row the relay may not send for an hour (its back-off), written two minutes ago.
    url = admin_url(service("tickets").database(stack.db_prefix))
    row = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO shared_lib_outboxevent (id, subject, data, occurred_at, correlation_id,"
            " created_at, sent_at, attempts, next_attempt_at, last_error) VALUES (%s,"
            " 'ticket.created', '{}', now() - interval '2 minutes', 'status-test',"
            " now() - interval '2 minutes', NULL, 1, now() + interval '1 hour', 'test')",
            [row],
        )
    try:
        report = collect(Target.of_stack(stack))
        command = status_command(stack)
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM shared_lib_outboxevent WHERE id = %s", [row])

    [tickets] = [o for o in report.outboxes if o.service == "tickets"]
    assert tickets.unsent == 1
    assert 120 <= tickets.oldest_age_seconds < 180
    assert report.problems() == [
        f"tickets outbox stuck: 1 unsent, oldest {tickets.oldest_age_seconds:.0f} s"
    ]
    assert command.returncode == 1
    assert "\n  tickets         1  oldest 12" in command.stdout


def test_a_failed_refund_fails_status_and_shows_in_the_workers_metrics(stack):
    # A refund Stripe refused for good (payments.services.refund_settle records it so):
    # the worker does not retry it, so a person must hear of it.
    url = admin_url(service("payments").database(stack.db_prefix))
    order, attempt, refund = (str(uuid.uuid4()) for _ in range(3))
    error = "invalid_request: No such payment_intent: 'pi_status_test'"
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO payments_orderreplica (id, user_id, price, status, expires_at,"
            " version, updated_at) VALUES (%s, %s, 5, 'cancelled', now(), 1, now())",
            [order, str(uuid.uuid4())],
        )
        conn.execute(
            "INSERT INTO payments_paymentattempt (id, order_id, token, amount_cents, status,"
            " stripe_intent_id, error, created_at, updated_at) VALUES (%s, %s,"
            " 'pm_card_visa', 500, 'succeeded', 'pi_status_test', '', now(), now())",
            [attempt, order],
        )
        conn.execute(
            "INSERT INTO payments_refund (id, attempt_id, order_id, payment_intent_id,"
            " amount_cents, status, tries, next_attempt_at, last_error, created_at,"
            " updated_at) VALUES (%s, %s, %s, 'pi_status_test', 500, 'failed', 1, now(), %s,"
            " now(), now())",
            [refund, attempt, order, error],
        )
    try:
        report = collect(Target.of_stack(stack))
        command = status_command(stack)
        metrics = worker_samples(stack, "payments-worker")
    finally:
        with psycopg.connect(url) as conn:
            conn.execute("DELETE FROM payments_refund WHERE id = %s", [refund])
            conn.execute("DELETE FROM payments_paymentattempt WHERE id = %s", [attempt])
            conn.execute("DELETE FROM payments_orderreplica WHERE id = %s", [order])

    assert report.problems() == [f"payments refund failed: pi_status_test (order {order}): {error}"]
    assert command.returncode == 1
    assert "\nRefunds (payments)\n  owed        0\n  failed      1\n" in command.stdout
    assert f"    pi_status_test  order {order}  {error}" in command.stdout
    assert value(metrics, "ticketing_refunds_failed") == 1
    assert value(metrics, "ticketing_refunds_owed") == 0

import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from shared_lib.correlation import correlation_scope
from shared_lib.events import Subject, publish
from shared_lib.events.deadletters import dead_letters
from shared_lib.events.worker import (
    HEARTBEAT_MAX_AGE_SECONDS,
    HEARTBEAT_SECONDS,
    SHUTDOWN_NOTICE_SECONDS,
)
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.events import Worker
from shared_lib.testing.events import test_database_url as database_url
from shared_lib.testing.processes import stop_group
from shared_lib.testing.waiting import wait_for
from tests.demo.bus import broker_unreachable, nonempty_demo_queues
from tests.demo.factories import new_id, ticket_data
from tests.demo.models import Effect, TicketReplica

worker_test = pytest.mark.usefixtures("demo_queues")


def _publish_versions(*, tickets: int, versions: int) -> tuple[list[uuid.UUID], dict[str, str]]:
    """ticket.created (v0) then ticket.updated v1.. for each ticket, interleaved across tickets."""
    users = {new_id(): new_id() for _ in range(tickets)}
    ids = []
    with transaction.atomic():
        for version in range(versions):
            subject = Subject.TICKET_CREATED if version == 0 else Subject.TICKET_UPDATED
            for ticket_id, user_id in users.items():
                data = ticket_data(
                    id=ticket_id, user_id=user_id, version=version, title=f"v{version}"
                )
                ids.append(publish(subject, data))
    return ids, users


def _assert_applied_exactly_once(ids, tickets, last_version):
    effects = list(Effect.objects.values_list("event_id", flat=True))
    assert len(effects) == len(ids)
    assert sorted(effects) == sorted(ids)
    inbox = list(InboxMessage.objects.values_list("message_id", flat=True))
    assert sorted(inbox) == sorted(ids)
    subjects = sorted(set(Effect.objects.values_list("subject", flat=True)))
    assert subjects == ["ticket.created:created", "ticket.updated:updated"]  # nothing stale
    final = set(TicketReplica.objects.values_list("id", "version", "title"))
    assert final == {(uuid.UUID(t), last_version, f"v{last_version}") for t in tickets}
    assert dead_letters(service="demo") == []


def _check_alive(heartbeat) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "shared_lib.events.worker", "--check-alive"],
        env={**os.environ, "WORKER_HEARTBEAT_FILE": str(heartbeat)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _age(path, seconds: float) -> float:
    """Set the file's mtime `seconds` into the past; return that time."""
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return stamp


@worker_test
def test_a_published_event_is_handled_by_the_worker(event_worker):
    worker = event_worker()
    data = ticket_data(title="Front row", price="20.50")

    with correlation_scope("corr-e2e"), transaction.atomic():
        event_id = publish(Subject.TICKET_CREATED, data)

    replica = wait_for(lambda: TicketReplica.objects.filter(id=data["id"]).first())
    assert (replica.title, replica.price, replica.version) == ("Front row", Decimal("20.50"), 0)
    assert str(replica.user_id) == data["userId"]
    assert list(InboxMessage.objects.values_list("message_id", "consumer", "correlation_id")) == [
        (event_id, "demo.ticket.created", "corr-e2e")
    ]
    assert list(Effect.objects.values_list("event_id", "subject")) == [
        (event_id, "ticket.created:created")
    ]
    assert OutboxEvent.objects.get(id=event_id).sent_at is not None
    wait_for(lambda: f"event_id={event_id} queue=demo.ticket.created attempt=0" in worker.log())
    assert "event handled correlation_id=corr-e2e subject=ticket.created" in worker.log()
    assert nonempty_demo_queues() == {}


@worker_test
def test_two_workers_on_the_same_queues_apply_every_event_exactly_once(event_worker):
    workers = [event_worker(), event_worker()]

    ids, users = _publish_versions(tickets=10, versions=20)

    assert len(ids) == 200
    wait_for(lambda: InboxMessage.objects.count() >= len(ids), timeout=60)
    wait_for(lambda: sum(w.log().count("event handled") for w in workers) >= len(ids))
    _assert_applied_exactly_once(ids, users, last_version=19)
    handled = [w.log().count("event handled") for w in workers]
    assert sum(handled) == 200
    assert all(handled)  # both workers took part
    assert all("event dead-lettered" not in w.log() for w in workers)
    assert nonempty_demo_queues() == {}


@worker_test
def test_a_worker_killed_mid_batch_loses_nothing_and_applies_nothing_twice(event_worker):
    slow = event_worker(DEMO_HANDLER_SLEEP_MS="30")
    # More events than one batch takes: the worker's own relay hands them to its consumer
    # at once, and a single batch must not hold them all.
    ids, users = _publish_versions(tickets=30, versions=3)
    assert len(ids) > settings.EVENTS_BATCH_SIZE
    wait_for(lambda: Effect.objects.count() >= 10, timeout=30)

    slow.kill()

    assert slow.process.returncode == -signal.SIGKILL
    applied_before_kill = Effect.objects.count()
    assert 10 <= applied_before_kill < len(ids)
    assert InboxMessage.objects.count() == applied_before_kill  # the killed txn rolled back

    replacement = event_worker()
    wait_for(lambda: InboxMessage.objects.count() >= len(ids), timeout=30)
    _assert_applied_exactly_once(ids, users, last_version=2)
    assert "event dead-lettered" not in replacement.log()
    wait_for(lambda: nonempty_demo_queues() == {})


@worker_test
def test_an_event_published_while_no_worker_ran_is_sent_by_the_next_one(event_worker):
    data = ticket_data(title="Left behind")
    with transaction.atomic():  # its NOTIFY reaches no relay
        event_id = publish(Subject.TICKET_CREATED, data)
    row = OutboxEvent.objects.get(id=event_id)
    assert (row.sent_at, row.attempts) == (None, 0)

    worker = event_worker()

    replica = wait_for(lambda: TicketReplica.objects.filter(id=data["id"]).first(), timeout=15)
    assert replica.title == "Left behind"
    row = wait_for(lambda: OutboxEvent.objects.filter(id=event_id, sent_at__isnull=False).first())
    assert row.attempts == 0
    assert list(Effect.objects.values_list("event_id", flat=True)) == [event_id]
    assert list(InboxMessage.objects.values_list("message_id", flat=True)) == [event_id]
    wait_for(lambda: "outbox relayed count=1" in worker.log())


@worker_test
def test_the_liveness_check_follows_the_worker_heartbeat(event_worker, tmp_path):
    worker = event_worker()
    beat = worker.heartbeat

    assert _check_alive(beat).returncode == 0

    # A live worker refreshes a stale heartbeat within HEARTBEAT_SECONDS.
    stale = _age(beat, 120)
    wait_for(lambda: beat.stat().st_mtime > stale + 100, timeout=HEARTBEAT_SECONDS * 3)
    assert _check_alive(beat).returncode == 0

    worker.kill()
    stale = _age(beat, HEARTBEAT_MAX_AGE_SECONDS + 5)

    assert _check_alive(beat).returncode == 1
    assert beat.stat().st_mtime == stale  # nobody beats for a dead worker


@worker_test
def test_an_idle_worker_stops_on_sigterm_within_a_couple_of_seconds(event_worker):
    # Celery acts on SIGTERM between two polls of its event loop; an idle loop used to
    # sleep up to 10 s until its next timer (PromptShutdownStep wakes it every second).
    worker = event_worker()
    time.sleep(SHUTDOWN_NOTICE_SECONDS * 3)  # idle: the loop is in a long poll, if any

    started = time.monotonic()
    stopped_cleanly = stop_group(worker.process, timeout=15)

    assert stopped_cleanly  # on SIGTERM, not killed
    # Under the 10 s an idle poll could last: the wake-up is at most one notice, and
    # Celery's own teardown took 4.7 s once on a CI machine running two suites at once.
    assert time.monotonic() - started < 8 * SHUTDOWN_NOTICE_SECONDS
    assert "Warm shutdown" in worker.log()


def test_the_liveness_check_compares_the_heartbeat_age_with_its_limit(tmp_path):
    beat = tmp_path / "beat"
    beat.touch()

    _age(beat, HEARTBEAT_MAX_AGE_SECONDS - 10)
    assert _check_alive(beat).returncode == 0
    _age(beat, HEARTBEAT_MAX_AGE_SECONDS + 1)
    assert _check_alive(beat).returncode == 1
    assert _check_alive(tmp_path / "never-started").returncode == 1

    usage = subprocess.run(
        [sys.executable, "-m", "shared_lib.events.worker"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 1
    assert usage.stderr.strip() == "usage: python -m shared_lib.events.worker --check-alive"


@pytest.mark.django_db
def test_readiness_reports_the_broker(client, rabbitmq_vhost):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}

    with broker_unreachable():
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "errors": [{"message": "Not ready: broker"}],
        "checks": {"database": "ok", "broker": "error"},
    }


@worker_test
def test_event_worker_starts_two_workers_side_by_side(event_worker):
    first = event_worker()
    second = event_worker()

    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and second.process.poll() is None:
        time.sleep(0.1)

    assert first.process.poll() is None
    assert second.process.poll() is None, second.log()[-2000:]


def test_a_worker_whose_handlers_disagree_with_its_declaration_does_not_start(
    rabbitmq_vhost, transactional_db, tmp_path
):
    # given: the demo declared to consume payment.created (no handler) but not
    # order.cancelled (handled)
    worker = Worker(
        app="tests.celery_app",
        cwd=Path.cwd(),
        env={
            **os.environ,
            "RABBITMQ_URL": settings.RABBITMQ_URL,
            "DATABASE_URL": database_url(),
            "WORKER_HEARTBEAT_FILE": str(tmp_path / "worker.alive"),
            "LOG_FORMAT": "text",
            "DEMO_DECLARED": "ticket.created,ticket.updated,order.created,payment.created",
        },
        log_path=tmp_path / "worker.log",
    )

    # when
    with pytest.raises(RuntimeError, match=r"^worker did not start: "):
        worker.start(timeout=60)

    # then: it exited by itself, saying why in one line, and never consumed
    assert worker.process.returncode == 1
    refusals = [line for line in worker.log().splitlines() if "event worker not started" in line]
    assert len(refusals) == 1
    assert (
        " CRITICAL shared_lib.events: event worker not started: demo: event handlers do not"
        " match contracts.CONSUMERS: declared but not handled: payment.created;"
        " handled but not declared: order.cancelled"
    ) in refusals[0]
    assert "event consumer starting" not in worker.log()
    assert not worker.heartbeat.exists()

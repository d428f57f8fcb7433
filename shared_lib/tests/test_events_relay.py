"""The relay as the worker runs it (worker.relay_loop), in a thread of this process: woken
by publish()'s NOTIFY, polling behind it for what no one heard."""

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection, connections, transaction

from shared_lib.events import Subject, publish, worker
from shared_lib.events.outbox import RELAY_CHANNEL
from shared_lib.models import OutboxEvent
from shared_lib.testing.waiting import wait_for
from tests.demo.factories import ticket_data

pytestmark = pytest.mark.usefixtures("transactional_db", "demo_queues")

# Far beyond any bound below: a relay that polls with this interval meets a bound only
# when a notification woke it.
SLOW_POLL_SECONDS = 60.0
# Publish to broker through a woken relay: milliseconds; seconds leave room for a loaded
# machine without coming near SLOW_POLL_SECONDS.
WOKEN_BOUND_SECONDS = 5.0


def _listeners() -> list[int]:
    """Backend pids LISTENing on the relay's channel in this database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            [f"LISTEN {RELAY_CHANNEL}"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def _run_relay(stop: threading.Event) -> None:
    try:
        worker.relay_loop(stop)
    finally:
        connections.close_all()  # this thread's own connections


@contextlib.contextmanager
def running_relay() -> Iterator[threading.Thread]:
    """relay_loop in a thread, listening before the block starts; stopped after it."""
    stop = threading.Event()
    thread = threading.Thread(target=_run_relay, args=(stop,), name="test-relay")
    thread.start()
    try:
        wait_for(lambda: len(_listeners()) == 1, timeout=10)
        yield thread
    finally:
        stop.set()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the relay did not stop within its join timeout"


def _publish_from_a_request(client, settings) -> str:
    settings.ROOT_URLCONF = "tests.demo.publishing"
    response = client.post("/demo/publish-ticket")
    assert response.status_code == 200
    return response.json()["eventId"]


def _published_within(tap, event_id: str, seconds: float) -> float:
    """Waits for the event on the tap; how long it took (fails past `seconds`)."""
    started = time.monotonic()
    [message] = wait_for(tap.take, timeout=seconds, interval=0.02)
    assert message.properties["message_id"] == event_id
    return time.monotonic() - started


def test_a_request_s_event_is_sent_by_the_relay_its_notify_woke(
    client, settings, tap, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="shared_lib.events")
    monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", SLOW_POLL_SECONDS)

    with running_relay():
        # Two in a row: the second comes while the relay waits out its (long) poll, so
        # only the notification can have woken it.
        for _ in range(2):
            event_id = _publish_from_a_request(client, settings)
            _published_within(tap, event_id, WOKEN_BOUND_SECONDS)
            # Marked sent when the relay commits, just after the broker's confirm.
            wait_for(lambda e=event_id: OutboxEvent.objects.get(id=e).sent_at, timeout=5)

    relayed = [r for r in caplog.records if r.getMessage() == "outbox relayed"]
    assert [r.count for r in relayed] == [1, 1]
    assert [r.threadName for r in relayed] == ["test-relay", "test-relay"]


def _publish_then_fail() -> None:
    with transaction.atomic():
        publish(Subject.TICKET_CREATED, ticket_data(title="Rolled back"))
        raise RuntimeError("declined")


def test_a_rolled_back_publish_wakes_the_relay_to_nothing(tap, monkeypatch):
    monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", SLOW_POLL_SECONDS)

    with running_relay():
        with pytest.raises(RuntimeError, match="declined"):
            _publish_then_fail()
        with transaction.atomic():
            kept = str(publish(Subject.TICKET_CREATED, ticket_data(title="Kept")))
        _published_within(tap, kept, WOKEN_BOUND_SECONDS)
        time.sleep(0.3)  # time enough for a stray send to arrive

    assert tap.count() == 0
    assert [str(i) for i in OutboxEvent.objects.values_list("id", flat=True)] == [kept]


def test_an_event_published_while_no_relay_listened_is_sent_when_one_starts(tap, monkeypatch):
    monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", SLOW_POLL_SECONDS)
    with transaction.atomic():  # its NOTIFY reaches nobody
        event_id = str(publish(Subject.TICKET_CREATED, ticket_data()))
    time.sleep(0.3)
    assert tap.count() == 0

    with running_relay():
        _published_within(tap, event_id, WOKEN_BOUND_SECONDS)


def test_a_notify_lost_with_the_listening_connection_is_sent_by_the_poll(tap, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="shared_lib.events")
    monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", 1.0)

    with running_relay():
        [listener] = _listeners()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [listener])
        with transaction.atomic():
            lost = str(publish(Subject.TICKET_CREATED, ticket_data(title="Lost notify")))

        # The poll sends it; then the relay listens again, on a new connection.
        _published_within(tap, lost, 1.0 + WOKEN_BOUND_SECONDS)
        wait_for(lambda: len(_listeners()) == 1 and _listeners() != [listener], timeout=10)
        monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", SLOW_POLL_SECONDS)
        time.sleep(1.5)  # the 1 s wait under way ends; the relay now waits on the slow poll
        with transaction.atomic():
            heard = str(publish(Subject.TICKET_CREATED, ticket_data(title="Heard")))
        _published_within(tap, heard, WOKEN_BOUND_SECONDS)

    assert "outbox relay stopped listening" in [r.getMessage() for r in caplog.records]
    assert OutboxEvent.objects.filter(sent_at__isnull=True).count() == 0


def test_an_unexpected_error_between_passes_does_not_end_the_relay(tap, monkeypatch, caplog):
    # A relay thread that died would leave every later event unsent, the worker alive.
    caplog.set_level(logging.INFO, logger="shared_lib.events")
    monkeypatch.setattr(worker, "RELAY_INTERVAL_SECONDS", 0.2)
    real_close = worker.close_old_connections
    raised = []

    def close_once_failing() -> None:
        if not raised:
            raised.append(True)
            raise RuntimeError("simulated: closing a connection failed")
        real_close()

    monkeypatch.setattr(worker, "close_old_connections", close_once_failing)

    with running_relay() as thread:
        wait_for(lambda: raised, timeout=10)
        with transaction.atomic():
            event_id = str(publish(Subject.TICKET_CREATED, ticket_data(title="After")))
        _published_within(tap, event_id, WOKEN_BOUND_SECONDS)
        assert thread.is_alive()

    errors = [r for r in caplog.records if r.getMessage() == "event worker loop error"]
    assert [r.exc_info[1].args[0] for r in errors] == ["simulated: closing a connection failed"]

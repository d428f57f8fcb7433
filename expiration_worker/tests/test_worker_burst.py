"""The worker's event loop hands a burst of due expiries to the pool together."""

from datetime import UTC, datetime, timedelta

from kombu.asynchronous import Hub
from kombu.asynchronous.timer import Timer

from expiration_worker.celery import MAX_TIMERS_PER_PASS, fire_due_timers_together


def due_timers(hub: Hub, count: int) -> list[int]:
    """`count` eta tasks fallen due, as Celery's strategy enters them (call_at an eta)."""
    fired: list[int] = []
    due = datetime.now(UTC) - timedelta(milliseconds=1)
    for index in range(count):
        hub.call_at(due, fired.append, index)
    return fired


def test_a_burst_of_due_expiries_is_fired_in_one_pass_of_the_event_loop():
    hub = Hub(Timer())
    fired = due_timers(hub, 300)
    fire_due_timers_together(hub)

    hub.fire_timers()

    assert sorted(fired) == list(range(300))


def test_a_pass_still_ends_after_its_limit_so_the_loop_reads_its_sockets():
    hub = Hub(Timer())
    fired = due_timers(hub, MAX_TIMERS_PER_PASS + 5)
    fire_due_timers_together(hub)

    hub.fire_timers()
    assert len(fired) == MAX_TIMERS_PER_PASS
    hub.fire_timers()
    assert len(fired) == MAX_TIMERS_PER_PASS + 5

"""The worker's event loop hands a burst of due expiries to the pool together, and its
pool threads publish without waiting on each other."""

from contextlib import ExitStack
from datetime import UTC, datetime, timedelta

import pytest
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


def test_every_pool_thread_has_a_pooled_producer_and_a_larger_pool_stays():
    from kombu import pools

    from expiration_worker.celery import producer_for_every_thread

    before = pools.get_limit()
    try:
        producer_for_every_thread(before + 22)
        assert pools.get_limit() == before + 22
        producer_for_every_thread(2)
        assert pools.get_limit() == before + 22
    finally:
        pools.set_limit(before)


def test_a_busy_producer_pool_is_retried_as_a_broker_error_not_parked(rabbitmq_vhost):
    from kombu import pools

    from expiration.tasks import BROKER_ERRORS
    from shared_lib.events import broker

    with ExitStack() as held:
        for _ in range(pools.get_limit()):
            held.enter_context(broker.producer())
        # Every producer is out (threads waiting on a stalled broker): the next waits for
        # one, then gives up with an error the task retries.
        with pytest.raises(BROKER_ERRORS), broker.producer():
            pass

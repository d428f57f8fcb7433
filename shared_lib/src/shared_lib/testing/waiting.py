"""Waiting for something another process does: poll a condition until it holds.

    from shared_lib.testing.waiting import wait_for
    row = wait_for(lambda: Replica.objects.filter(id=ticket_id).first(), timeout=10)
    wait_for(lambda: worker.heartbeat.exists(), what="the worker's heartbeat")

Events, workers and servers answer in their own time; a test (or a tool) polls for the
effect rather than sleeping a fixed time, and fails with a message that names what never
came.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Often enough that a test does not wait noticeably longer than the effect takes, rarely
# enough that polling a database or a broker costs them nothing.
POLL_INTERVAL_SECONDS = 0.05


def wait_for(
    condition: Callable[[], T],
    *,
    timeout: float = 20.0,
    interval: float = POLL_INTERVAL_SECONDS,
    what: str = "",
) -> T:
    """Poll until `condition()` is truthy and return that value; AssertionError (a test
    failure) naming `what` (a noun phrase; by default the condition) when `timeout`
    seconds pass first. The condition may raise to fail at once, e.g. when the process
    it waits on has exited."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or condition}")
        time.sleep(interval)

import itertools
import threading

from shared_lib.periodic import periodic_loop
from shared_lib.testing.waiting import wait_for
from tests.demo import periodic

INTERVAL = 0.1


def test_periodic_tasks_run_at_their_interval_and_survive_a_failure(caplog):
    periodic.calls.clear()
    periodic.fail_next["flag"] = True
    stop = threading.Event()
    tasks = {"tests.demo.periodic.record": INTERVAL}
    thread = threading.Thread(target=periodic_loop, args=(stop, tasks))

    thread.start()
    try:
        # the first call fails; the loop goes on calling
        wait_for(lambda: len(periodic.calls) >= 4, timeout=20)
    finally:
        stop.set()
        thread.join(timeout=5)

    assert not thread.is_alive()  # stop ends the loop, even mid-wait
    calls = list(periodic.calls)
    # Never sooner than the interval after the previous call ended (a slow machine only
    # makes the gaps longer, so no upper bound is asserted).
    assert all(later - earlier >= INTERVAL * 0.99 for earlier, later in itertools.pairwise(calls))
    assert [r.getMessage() for r in caplog.records if r.name == "shared_lib.events"] == [
        "periodic task failed"
    ]

import threading
import time

from shared_lib.events.worker import periodic_loop
from tests.demo import periodic


def test_periodic_tasks_run_at_their_interval_and_survive_a_failure(settings, caplog):
    settings.WORKER_PERIODIC_TASKS = {"tests.demo.periodic.record": 0.1}
    periodic.calls.clear()
    periodic.fail_next["flag"] = True
    stop = threading.Event()
    thread = threading.Thread(target=periodic_loop, args=(stop,))

    thread.start()
    time.sleep(0.55)
    stop.set()
    thread.join(timeout=5)

    assert not thread.is_alive()
    # Every 0.1 s for about half a second, the failed first call included.
    assert 4 <= len(periodic.calls) <= 7
    assert [r.getMessage() for r in caplog.records if r.name == "shared_lib.events"] == [
        "periodic task failed"
    ]

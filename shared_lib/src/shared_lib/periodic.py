"""Upkeep a process repeats: {"dotted.path": seconds} called in a thread of its own.

A service's event worker runs WORKER_PERIODIC_TASKS (shared_lib.events.worker); a web
process runs WEB_PERIODIC_TASKS (shared_lib.gunicorn_conf), for a service with no worker.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import close_old_connections

logger = logging.getLogger("shared_lib.events")


def periodic_loop(stop: threading.Event, paths: dict[str, float]) -> None:
    """Call each task of `paths` every so many seconds until `stop` is set; each call runs
    under its own correlation id, and a failure is logged and tried at the next interval."""
    from django.utils.module_loading import import_string

    from shared_lib.correlation import correlation_scope

    tasks = {import_string(path): float(seconds) for path, seconds in paths.items()}
    due = dict.fromkeys(tasks, 0.0)
    while not stop.is_set():
        for task, interval in tasks.items():
            if time.monotonic() < due[task]:
                continue
            with correlation_scope(None):
                try:
                    task()
                except Exception:
                    logger.exception("periodic task failed", extra={"task": task.__name__})
                finally:
                    close_old_connections()
            due[task] = time.monotonic() + interval
        stop.wait(min(due.values()) - time.monotonic() if due else 1.0)

"""gunicorn settings every service's web process uses.

gunicorn -c python:shared_lib.gunicorn_conf tickets_svc.wsgi
# GUNICORN_BIND (default 0.0.0.0:8000) and WEB_CONCURRENCY tune it per deployment.
# PROMETHEUS_MULTIPROC_DIR: where workers keep their metrics (default: a fresh temp dir).

Metrics (shared_lib.metrics) run in prometheus_client's multiprocess mode: each worker
process writes its samples to files in PROMETHEUS_MULTIPROC_DIR and whichever worker
answers /metrics adds them all up, so a scrape sees the whole server, not one worker.
"""

import glob
import os
import shutil
import tempfile
from typing import Any

from shared_lib.settings.logs import LINE_FORMATTER

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
# One worker per core plus one keeps the cores busy while a worker waits on the database,
# without oversubscribing; Kubernetes scales out with replicas rather than workers.
workers = int(os.environ.get("WEB_CONCURRENCY", (os.cpu_count() or 1) + 1))
# A request that runs longer than this is stuck; the gateway gives up at 60 s too.
timeout = 60
graceful_timeout = 20
# Keep-alive between the gateway and gunicorn; shorter than nginx's upstream idle time.
keepalive = 5
# No gunicorn access log: the app writes one structured line per request with its request
# id (shared_lib.correlation.CorrelationIdMiddleware), in the format of every other line.
accesslog = None
errorlog = "-"
# gunicorn's own lines (booting, worker timeouts) in that format too (LOG_FORMAT). Both
# loggers are named, since this dict replaces gunicorn's defaults.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": LINE_FORMATTER},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "formatter": "line",
            "stream": "ext://sys.stderr",
        }
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["stderr"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False},
    },
    "root": {"level": "INFO", "handlers": []},
}
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
# gunicorn >= 25 opens a control socket at one fixed path per user (~/.gunicorn/
# gunicorn.ctl), so several services on one machine would fight over it; nothing here
# uses gunicornc, so it stays off.
control_socket_disable = True


# Set in the master before any worker forks, and before anything imports
# prometheus_client (no preload_app: the app is imported in each worker), so every
# worker starts in multiprocess mode.
def on_starting(server: Any) -> None:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        # A given directory (a pod's emptyDir) may hold files of a previous run, whose
        # counters would be added to this one's: the client's docs say wipe it first.
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
        server._metrics_dir_created = None
    else:
        directory = tempfile.mkdtemp(prefix="ticketing-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        server._metrics_dir_created = directory


def post_worker_init(worker: Any) -> None:
    # A service with no event worker runs its upkeep (auth_svc: sending the email its
    # requests queue) in each web worker process: WEB_PERIODIC_TASKS.
    import threading

    from django.conf import settings

    tasks = getattr(settings, "WEB_PERIODIC_TASKS", None)
    if tasks:
        from shared_lib.periodic import periodic_loop

        threading.Thread(
            target=periodic_loop, args=(threading.Event(), tasks), name="periodic", daemon=True
        ).start()


def child_exit(server: Any, worker: Any) -> None:
    # A dead worker's counters stay (totals never go down); only its live gauges go.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    created = getattr(server, "_metrics_dir_created", None)
    if created:
        shutil.rmtree(created, ignore_errors=True)

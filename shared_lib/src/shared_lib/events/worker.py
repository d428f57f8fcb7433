"""The service worker: `celery -A <project> worker` consumes events and relays the outbox.

    # <project>/celery.py
    from shared_lib.events.worker import make_celery_app
    app = make_celery_app("tickets_svc")

Two bootsteps do the work. EventConsumerStep (consumer blueprint) runs the event
consumer loop in a thread with its own broker connection: it declares this service's
queues, feeds deliveries to the Dispatcher a batch at a time, and reconnects when the
connection drops. It first checks the service's handlers against contracts.CONSUMERS
and stops the worker (exit status 1, one log line naming the difference) when they
disagree. OutboxRelayStep (worker blueprint) runs the relay in a thread. MetricsServerStep
serves Prometheus metrics on METRICS_PORT (shared_lib.metrics); PromptShutdownStep lets a
SIGTERM stop an idle worker within a second. A heartbeat file,
touched from the consumer loop, is what the Kubernetes liveness probe checks:
`python -m shared_lib.events.worker --check-alive`.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps, signals
from celery.exceptions import WorkerShutdown
from celery.platforms import EX_FAILURE
from django.conf import settings
from django.db import close_old_connections

from shared_lib.events.contracts import Subject, consumed_by
from shared_lib.periodic import periodic_loop

logger = logging.getLogger("shared_lib.events")

# The consumer loop touches the heartbeat file at most this often: it costs nothing.
HEARTBEAT_SECONDS = 2.0
# Long enough for a slow handler (the loop cannot beat while a handler runs), short
# enough that Kubernetes restarts a hung worker within a minute.
HEARTBEAT_MAX_AGE_SECONDS = 45.0
# The relay's poll, behind publish()'s NOTIFY: how late a row whose notification nobody
# heard (the relay restarting, its LISTEN connection lost) is sent at worst.
RELAY_INTERVAL_SECONDS = 1.0
RELAY_MAX_BACKOFF_SECONDS = 30.0
PURGE_INTERVAL_SECONDS = 3600.0


def heartbeat_path() -> Path:
    return Path(os.environ.get("WORKER_HEARTBEAT_FILE", "/tmp/ticketing-worker-heartbeat"))  # noqa: S108


class EventConsumerStep(bootsteps.StartStopStep):
    """Consumes this service's event queues in a thread of its own, with a connection of
    its own: the loop takes what has arrived, settles it as one batch (consumer.py) and
    touches the heartbeat; it reconnects with back-off when the broker goes away."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def declared_subjects(self, service: str) -> Iterable[Subject]:
        """What the service is declared to consume; its handlers must take exactly that."""
        return consumed_by(service)

    def start(self, parent: Any) -> None:
        from shared_lib.events.consumer import Dispatcher
        from shared_lib.events.registry import HandlersMismatch, check_handlers, discover_handlers

        service = settings.EVENTS_SERVICE
        handlers = discover_handlers()
        try:
            check_handlers(service, handlers, declared=self.declared_subjects(service))
        except HandlersMismatch as exc:
            # Consuming anyway would leave a declared queue unread or read one that its
            # publishers do not feed: neither shows until events go missing.
            logger.critical("event worker not started: %s", exc)
            raise WorkerShutdown(EX_FAILURE) from exc
        dispatcher = Dispatcher(service=service, handlers=handlers)
        logger.info(
            "event consumer starting",
            extra={"service": service, "subjects": sorted(map(str, handlers))},
        )
        # A new flag per start: a thread that outlived stop()'s join keeps its own, set.
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=consume_loop, args=(dispatcher, self._stop), name="events", daemon=True
        )
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            # A batch in progress finishes (or, past this, is redelivered to another).
            self._thread.join(timeout=30)
            self._thread = None

    shutdown = stop


def consume_loop(dispatcher: Any, stop: threading.Event) -> None:
    """Consume until `stop` is set, reconnecting after any failure (what was not acked
    comes back); the heartbeat file is touched while the loop is consuming."""
    from shared_lib.events import broker

    beat = _Heartbeat()
    failures = 0
    while not stop.is_set():
        try:
            with broker.consumer_connection() as conn:
                conn.ensure_connection(max_retries=1)
                failures = 0
                dispatcher.consume(conn, should_stop=stop.is_set, on_tick=beat)
        except Exception as exc:
            failures += 1
            logger.warning(
                "event consumer reconnecting",
                exc_info=not isinstance(exc, (OSError, *_connection_errors())),
                extra={"error": f"{type(exc).__name__}: {exc}"[:300], "failures": failures},
            )
        finally:
            _quietly(close_old_connections)
        # No beat while disconnected: a worker that cannot consume for
        # HEARTBEAT_MAX_AGE_SECONDS is restarted, which costs nothing in an outage and
        # ends a wedged reconnection.
        stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)) if failures else 0)


def _connection_errors() -> tuple[type[BaseException], ...]:
    from kombu import Connection

    return Connection("amqp://").connection_errors


class _Heartbeat:
    """Touches the heartbeat file at most every HEARTBEAT_SECONDS."""

    def __init__(self) -> None:
        self._last = float("-inf")

    def __call__(self) -> None:
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            touch_heartbeat()
            self._last = time.monotonic()


class _LoopThreadStep(bootsteps.StartStopStep):
    """Runs `loop(stop)` in a daemon thread from the worker's start until its stop."""

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def loop(self, stop: threading.Event) -> None:
        raise NotImplementedError

    def start(self, parent: Any) -> None:
        # A new flag per start: a thread that outlived stop()'s join keeps its own, set.
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.loop, args=(self._stop,), daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


class PeriodicStep(_LoopThreadStep):
    """Runs the service's WORKER_PERIODIC_TASKS ({"dotted.path": seconds}) in a thread.

    For upkeep that must happen eventually and repeat harmlessly (payments reconciles
    refunds owed); each call runs under its own correlation id, and a failure is logged
    and tried again at the next interval.
    """

    def include_if(self, parent: Any) -> bool:
        return bool(getattr(settings, "WORKER_PERIODIC_TASKS", None))

    def loop(self, stop: threading.Event) -> None:
        periodic_loop(stop, settings.WORKER_PERIODIC_TASKS)


class MetricsServerStep(bootsteps.StartStopStep):
    """Serves this worker's metrics over HTTP on METRICS_PORT (0 turns it off).

    A worker is one process (solo or threads pool), so the default registry holds all of
    its samples; the outbox backlog (services with a database) and the depth of the
    service's queues are read when scraped. A port already taken stops the worker: two
    workers must never answer on one port (the local stack gives each its own).
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop: Any = None

    def include_if(self, parent: Any) -> bool:
        return bool(getattr(settings, "METRICS_PORT", 0))

    def start(self, parent: Any) -> None:
        from shared_lib import metrics
        from shared_lib.events import broker
        from shared_lib.events.registry import discover_handlers

        collectors: list[Any] = [
            metrics.QueueCollector(
                broker.queue_name(settings.EVENTS_SERVICE, subject)
                for subject in discover_handlers()
            )
        ]
        if settings.DATABASES:  # every service with a database publishes through its outbox
            collectors.append(metrics.OutboxCollector())
        self._stop = metrics.serve_worker_metrics(
            port=settings.METRICS_PORT, address=settings.METRICS_ADDRESS, collectors=collectors
        )

    def stop(self, parent: Any) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None


class OutboxRelayStep(_LoopThreadStep):
    """Sends the service's outbox: woken by publish()'s NOTIFY, polling behind it, backing
    off while the broker fails; purges sent outbox rows and inbox rows past
    EVENTS_RETENTION_DAYS."""

    def loop(self, stop: threading.Event) -> None:
        relay_loop(stop)


def relay_loop(stop: threading.Event) -> None:
    from shared_lib.events import outbox
    from shared_lib.events.consumer import purge_inbox

    wakeup = outbox.RelayWakeup()
    failures = 0
    last_purge = float("-inf")  # purge once at start, then every PURGE_INTERVAL_SECONDS
    try:
        while not stop.is_set():
            try:
                # Listening before the pass: a row committed after its query wakes the wait.
                wakeup.listen()
                sent, failed = outbox.relay_pending()
                if time.monotonic() - last_purge > PURGE_INTERVAL_SECONDS:
                    purged = outbox.purge(), purge_inbox()
                    logger.info("events purged", extra={"outbox": purged[0], "inbox": purged[1]})
                    last_purge = time.monotonic()
            except Exception:  # the database may be down; keep trying with back-off
                logger.exception("outbox relay error")
                sent, failed = 0, True
            # Whatever fails, the loop goes on: a relay thread that died would leave every
            # event of this service unsent while the worker looked alive.
            _quietly(close_old_connections)
            failures = failures + 1 if failed else 0
            if failed:
                # Broker or database away: at most one pass a second, and none before the
                # back-off ends unless new events arrive.
                backoff = min(RELAY_MAX_BACKOFF_SECONDS, RELAY_INTERVAL_SECONDS * 2**failures)
                if not stop.wait(RELAY_INTERVAL_SECONDS):
                    _quietly(wakeup.wait, backoff - RELAY_INTERVAL_SECONDS, stop)
            elif sent < outbox.RELAY_BATCH:
                _quietly(wakeup.wait, RELAY_INTERVAL_SECONDS, stop)
            # A full batch: go again at once, more rows are waiting.
    finally:
        wakeup.close()


def _quietly(call: Any, *args: Any) -> None:
    """Run `call`; an exception is logged, never raised (a worker thread's loop goes on)."""
    try:
        call(*args)
    except Exception:
        logger.exception("event worker loop error", extra={"call": getattr(call, "__name__", "")})
        time.sleep(RELAY_INTERVAL_SECONDS)  # never a busy loop


def touch_heartbeat() -> None:
    path = heartbeat_path()
    path.touch()


def is_alive(max_age: float = HEARTBEAT_MAX_AGE_SECONDS) -> bool:
    try:
        return time.time() - heartbeat_path().stat().st_mtime < max_age
    except FileNotFoundError:
        return False


def setup_worker_tracing(**_: Any) -> None:
    """worker_init: tracing for the worker's event consumer and relay (shared_lib.tracing).
    The pools here are solo and threads, one process; a prefork child would inherit it
    (the SDK restarts its export thread after a fork)."""
    from shared_lib.tracing import setup_tracing

    setup_tracing(settings.EVENTS_SERVICE)


# How long a stop request (SIGTERM) may wait for Celery's own event loop to notice it.
SHUTDOWN_NOTICE_SECONDS = 1.0


class PromptShutdownStep(bootsteps.StartStopStep):
    """Wakes the worker's event loop every SHUTDOWN_NOTICE_SECONDS.

    Celery acts on a SIGTERM between two polls of that loop, and an idle loop polls until
    its next timer, up to 10 s (kombu's hub): without a timer of its own a stop (a deploy,
    a scale-down, every test's teardown) waits that long doing nothing.
    """

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._entry: Any = None

    def start(self, parent: Any) -> None:
        timer = getattr(parent, "timer", None)
        if timer is not None:
            self._entry = timer.call_repeatedly(SHUTDOWN_NOTICE_SECONDS, _wake)

    def stop(self, parent: Any) -> None:
        if self._entry is not None:
            self._entry.cancel()
            self._entry = None

    shutdown = stop


def _wake() -> None:
    """Nothing: the timer firing is what wakes the loop."""


def make_celery_app(
    project: str, *, outbox: bool = True, consumer_step: type[bootsteps.Step] | None = None
) -> Celery:
    """The service's Celery app: the event consumer, and the outbox relay unless the
    service has no database (`outbox=False`)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", f"{project}.settings")
    # In the worker process, before any bootstep starts a thread that publishes or consumes.
    signals.worker_init.connect(setup_worker_tracing, weak=False)
    app = Celery(project)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    app.steps["consumer"].add(consumer_step or EventConsumerStep)
    app.steps["consumer"].add(PromptShutdownStep)
    app.steps["worker"].add(MetricsServerStep)
    if outbox:
        app.steps["worker"].add(OutboxRelayStep)
        app.steps["worker"].add(PeriodicStep)
    return app


if __name__ == "__main__":
    if sys.argv[1:] == ["--check-alive"]:
        sys.exit(0 if is_alive() else 1)
    sys.exit("usage: python -m shared_lib.events.worker --check-alive")

"""Settings of the event bus (shared_lib.events) and of a service's Celery worker.

    from shared_lib.settings.events import *  # noqa: E402, F403  (after name_service)
    EVENTS_INBOX = False             # only for a service with no database (expiration_worker)

EVENTS_SERVICE, the service's name on the bus (its queues), is the one name_service gave.

Required variable: RABBITMQ_URL. A service on the bus runs a worker; its web process's
readiness does not include the broker: the outbox keeps every write while RabbitMQ is away,
so a broker outage must not take the API out of the load balancer (the worker's liveness and
the status command watch the broker instead).
"""

from shared_lib.conf import env, env_int, env_list
from shared_lib.settings import named_service

EVENTS_SERVICE = named_service().name
RABBITMQ_URL = env("RABBITMQ_URL")
# Handlers run in a transaction with an inbox row; a service with no database
# (expiration_worker) turns this off and keeps its handlers idempotent by nature.
EVENTS_INBOX = True
EVENTS_EXCHANGE = env("EVENTS_EXCHANGE", default="ticketing.events")
# Wait-queue delays for retries: the n-th retry waits the n-th delay (the last repeats).
# Short first, so a version gap closes quickly; capped, so a fault that lasts minutes is
# not hammered.
EVENTS_RETRY_DELAYS_MS = [
    int(ms) for ms in env_list("EVENTS_RETRY_DELAYS_MS", default=["1000", "5000", "30000"])
]
# Deliveries of a failing message before it is dead-lettered (about a minute and a half
# with the delays above): a transient fault passes, a bug does not loop.
EVENTS_MAX_ATTEMPTS = env_int("EVENTS_MAX_ATTEMPTS", default=5, minimum=1)
# Deliveries a worker settles in one transaction and one ack, at most: it takes what it
# already holds, never waiting for a batch to fill.
EVENTS_BATCH_SIZE = env_int("EVENTS_BATCH_SIZE", default=64, minimum=1)
# Unacked messages per consumer: twice a batch, so the next batch arrives while one is
# applied; few enough that a dying worker hands back little to redeliver.
EVENTS_PREFETCH = env_int("EVENTS_PREFETCH", default=128, minimum=1)
EVENTS_RETENTION_DAYS = env_int("EVENTS_RETENTION_DAYS", default=7, minimum=1)

# The worker's /metrics (MetricsServerStep). A pod has a network namespace of its own, so
# one fixed port is safe there; several workers on one machine need a port each (the local
# stack and the test fixtures pass one). 0 turns it off.
METRICS_PORT = env_int("METRICS_PORT", default=9100, minimum=0, maximum=65535)
METRICS_ADDRESS = env("METRICS_ADDRESS", default="0.0.0.0")  # noqa: S104 (a pod's)

CELERY_BROKER_URL = RABBITMQ_URL
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Tasks a worker publishes (expiry timers) are confirmed by the broker before the event
# that caused them is acked.
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1

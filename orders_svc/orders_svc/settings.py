"""orders_svc settings: the shared base, on the event bus, plus the reservation window."""

from shared_lib.conf import env, env_int
from shared_lib.settings import name_service

name_service("orders", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.base import *  # noqa: E402, F403
from shared_lib.settings.base import INSTALLED_APPS  # noqa: E402
from shared_lib.settings.events import *  # noqa: E402, F403

INSTALLED_APPS = [*INSTALLED_APPS, "orders"]

# How long an order holds its ticket while the buyer pays (15 minutes by default).
EXPIRATION_WINDOW_SECONDS = env_int("EXPIRATION_WINDOW_SECONDS", default=900, minimum=1)

# Unpaid orders one buyer may hold at once, so one account cannot reserve the catalogue.
ORDERS_MAX_ACTIVE_PER_USER = env_int("ORDERS_MAX_ACTIVE_PER_USER", default=5, minimum=1)
# Orders one buyer may place (DRF rate syntax); counted in Redis across every replica.
RATE_LIMIT_ORDERS = env("RATE_LIMIT_ORDERS", default="30/min")

# Receipts queued when orders complete (shared_lib.mail), sent by the worker.
WORKER_PERIODIC_TASKS = {"shared_lib.mail.send_pending_emails": 5}
# Its backlog on the worker's /metrics (docs/operations.md).
WORKER_METRICS_COLLECTORS = ["shared_lib.metrics.EmailCollector"]

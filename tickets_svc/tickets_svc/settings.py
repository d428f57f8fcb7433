"""tickets_svc settings: the shared base, on the event bus."""

from shared_lib.settings import name_service

name_service("tickets", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.base import *  # noqa: E402, F403
from shared_lib.settings.base import INSTALLED_APPS  # noqa: E402
from shared_lib.settings.events import *  # noqa: E402, F403

INSTALLED_APPS = [*INSTALLED_APPS, "tickets"]

# "Your ticket sold" emails queued when a sale completes (shared_lib.mail), sent by the worker.
WORKER_PERIODIC_TASKS = {"shared_lib.mail.send_pending_emails": 5}
# Its backlog on the worker's /metrics (docs/operations.md).
WORKER_METRICS_COLLECTORS = ["shared_lib.metrics.EmailCollector"]

"""payments_svc settings: the shared base, on the event bus, plus Stripe."""

from pathlib import Path

from shared_lib.conf import env, env_int
from shared_lib.settings.base import *  # noqa: F403
from shared_lib.settings.base import INSTALLED_APPS, SPECTACULAR_SETTINGS, rate_limit_key_prefix
from shared_lib.settings.events import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent
INSTALLED_APPS = [*INSTALLED_APPS, "payments"]
ROOT_URLCONF = "payments_svc.urls"
WSGI_APPLICATION = "payments_svc.wsgi.application"

# This service's URL space and admin cookies behind the one gateway host.
STATIC_URL = "/static/payments/"
STATIC_ROOT = BASE_DIR / "staticfiles"
ADMIN_URL_PREFIX = "admin/payments/"
SESSION_COOKIE_NAME = "payments_admin_session"
SESSION_COOKIE_PATH = "/admin/payments/"
CSRF_COOKIE_NAME = "payments_csrftoken"
CSRF_COOKIE_PATH = "/admin/payments/"
RATE_LIMIT_KEY_PREFIX = rate_limit_key_prefix("payments")
SPECTACULAR_SETTINGS = {"TITLE": "Ticketing payments API", **SPECTACULAR_SETTINGS}
EVENTS_SERVICE = "payments"

STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY")
# Where the SDK sends requests: Stripe itself unless set (localstripe in tests and
# local runs, e.g. http://127.0.0.1:8420).
STRIPE_API_BASE = env("STRIPE_API_BASE", default="") or None
# Signs Stripe's webhooks to POST /api/payments/webhooks/stripe (whsec_..., from the
# webhook endpoint's page in Stripe's dashboard). Empty: every webhook is refused (400),
# and payments settle by the buyer's GET and the worker alone.
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
# A charge that takes longer than this is treated as an outage (503); its outcome is
# settled by retrying the same attempt under the same idempotency key.
# Kept well under payments.services.STALE_ATTEMPT (2 min), after which a pending attempt
# counts as abandoned.
STRIPE_TIMEOUT_SECONDS = env_int("STRIPE_TIMEOUT_SECONDS", default=20, minimum=1, maximum=60)

# Refunds owed for cancelled orders, retried until Stripe takes them (docs/events.md).
WORKER_PERIODIC_TASKS = {"payments.services.payments_reconcile": 30}
# Refunds failed and owed, on the worker's /metrics beside the outbox backlog.
WORKER_METRICS_COLLECTORS = ["payments.metrics.RefundCollector"]

"""payments_svc settings: the shared base, on the event bus, plus Stripe."""

from shared_lib.conf import env, env_int
from shared_lib.settings import name_service

name_service("payments", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.base import *  # noqa: E402, F403
from shared_lib.settings.base import INSTALLED_APPS  # noqa: E402
from shared_lib.settings.events import *  # noqa: E402, F403

INSTALLED_APPS = [*INSTALLED_APPS, "payments"]

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

# Per buyer (payments.throttles): card attempts, and checks of a payment, each a call to
# Stripe. A buyer's few declines and retries pass; card testing and polling storms do not.
RATE_LIMIT_PAYMENTS = env("RATE_LIMIT_PAYMENTS", default="10/min")
RATE_LIMIT_PAYMENT_CHECKS = env("RATE_LIMIT_PAYMENT_CHECKS", default="60/min")
# Declined cards one order may take before its payment is refused (400): a buyer's typo
# and a second card pass, a list of stolen cards does not.
PAYMENTS_MAX_DECLINES_PER_ORDER = env_int("PAYMENTS_MAX_DECLINES_PER_ORDER", default=5, minimum=1)

# Refunds owed for cancelled orders, retried until Stripe takes them (docs/events.md).
WORKER_PERIODIC_TASKS = {"payments.services.payments_reconcile": 30}
# Refunds failed and owed, on the worker's /metrics beside the outbox backlog.
WORKER_METRICS_COLLECTORS = ["payments.metrics.RefundCollector"]

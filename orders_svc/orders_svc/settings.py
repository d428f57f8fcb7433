"""orders_svc settings: the shared base, on the event bus, plus the reservation window."""

from pathlib import Path

from shared_lib.conf import env, env_int
from shared_lib.settings.base import *  # noqa: F403
from shared_lib.settings.base import INSTALLED_APPS, SPECTACULAR_SETTINGS, rate_limit_key_prefix
from shared_lib.settings.events import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent
INSTALLED_APPS = [*INSTALLED_APPS, "orders"]
ROOT_URLCONF = "orders_svc.urls"
WSGI_APPLICATION = "orders_svc.wsgi.application"

# This service's URL space and admin cookies behind the one gateway host.
STATIC_URL = "/static/orders/"
STATIC_ROOT = BASE_DIR / "staticfiles"
ADMIN_URL_PREFIX = "admin/orders/"
SESSION_COOKIE_NAME = "orders_admin_session"
SESSION_COOKIE_PATH = "/admin/orders/"
CSRF_COOKIE_NAME = "orders_csrftoken"
CSRF_COOKIE_PATH = "/admin/orders/"
RATE_LIMIT_KEY_PREFIX = rate_limit_key_prefix("orders")
SPECTACULAR_SETTINGS = {"TITLE": "Ticketing orders API", **SPECTACULAR_SETTINGS}
EVENTS_SERVICE = "orders"

# How long an order holds its ticket while the buyer pays (15 minutes by default).
EXPIRATION_WINDOW_SECONDS = env_int("EXPIRATION_WINDOW_SECONDS", default=900, minimum=1)

# Unpaid orders one buyer may hold at once, so one account cannot reserve the catalogue.
ORDERS_MAX_ACTIVE_PER_USER = env_int("ORDERS_MAX_ACTIVE_PER_USER", default=5, minimum=1)
# Orders one buyer may place (DRF rate syntax); counted in Redis across every replica.
RATE_LIMIT_ORDERS = env("RATE_LIMIT_ORDERS", default="30/min")

"""tickets_svc settings: the shared base, on the event bus."""

from pathlib import Path

from shared_lib.settings.base import *  # noqa: F403
from shared_lib.settings.base import INSTALLED_APPS, SPECTACULAR_SETTINGS, rate_limit_key_prefix
from shared_lib.settings.events import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent
INSTALLED_APPS = [*INSTALLED_APPS, "tickets"]
ROOT_URLCONF = "tickets_svc.urls"
WSGI_APPLICATION = "tickets_svc.wsgi.application"

# This service's URL space and admin cookies behind the one gateway host.
STATIC_URL = "/static/tickets/"
STATIC_ROOT = BASE_DIR / "staticfiles"
ADMIN_URL_PREFIX = "admin/tickets/"
SESSION_COOKIE_NAME = "tickets_admin_session"
SESSION_COOKIE_PATH = "/admin/tickets/"
CSRF_COOKIE_NAME = "tickets_csrftoken"
CSRF_COOKIE_PATH = "/admin/tickets/"
RATE_LIMIT_KEY_PREFIX = rate_limit_key_prefix("tickets")
SPECTACULAR_SETTINGS = {"TITLE": "Ticketing tickets API", **SPECTACULAR_SETTINGS}
EVENTS_SERVICE = "tickets"

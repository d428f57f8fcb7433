"""Settings for shared_lib's own tests: the shared base with a small demo app."""

import os

from shared_lib.events.broker import url_user
from shared_lib.events.contracts import Subject

# Set before the shared settings below read them. Tests only: the key signs nothing that
# leaves the test run; short retry delays make retry and dead-letter tests take seconds.
os.environ.setdefault("SECRET_KEY", "shared-lib-tests-only")
os.environ.setdefault("EVENTS_RETRY_DELAYS_MS", "200,400")
os.environ.setdefault("EVENTS_MAX_ATTEMPTS", "3")

from shared_lib.settings import name_service

name_service("demo", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.base import *  # noqa: E402, F403
from shared_lib.settings.base import HEALTH_CHECKS, INSTALLED_APPS, STORAGES  # noqa: E402
from shared_lib.settings.events import *  # noqa: E402, F403
from shared_lib.settings.events import RABBITMQ_URL  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.demo"]

# The demo app plays every service: it publishes and consumes subjects that belong to
# different services, all through the one broker user of RABBITMQ_URL.
EVENTS_PRODUCERS = dict.fromkeys(Subject, url_user(RABBITMQ_URL))
# The broker check the status command uses, on the demo's readiness to test it there.
HEALTH_CHECKS = {**HEALTH_CHECKS, "broker": "shared_lib.health.check_broker"}

# The demo throttle's rate; tests lower or raise it with the `settings` fixture.
RATE_LIMIT_DEMO = "3/min"

# No collectstatic before tests: templates (admin, Swagger UI, DRF's browsable API) resolve
# static URLs without the manifest, and WhiteNoise has no collected directory to serve.
STORAGES = {
    **STORAGES,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = None

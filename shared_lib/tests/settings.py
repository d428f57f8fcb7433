"""Settings for shared_lib's own tests: the shared base with a small demo app."""

import os
from pathlib import Path

from shared_lib.events.broker import url_user
from shared_lib.events.contracts import Subject
from shared_lib.service_settings import base_settings

# Tests only: the value signs nothing that leaves the test run.
os.environ.setdefault("SECRET_KEY", "shared-lib-tests-only")
# Short retry delays so retry and dead-letter tests take seconds, not minutes.
os.environ.setdefault("EVENTS_RETRY_DELAYS_MS", "200,400")
os.environ.setdefault("EVENTS_MAX_ATTEMPTS", "3")

globals().update(
    base_settings(
        service="demo", base_dir=Path(__file__).resolve().parent, apps=["tests.demo"], events=True
    )
)
ROOT_URLCONF = "tests.urls"
# The demo app plays every service: it publishes and consumes subjects that belong to
# different services, all through the one broker user of RABBITMQ_URL.
EVENTS_PRODUCERS = dict.fromkeys(Subject, url_user(RABBITMQ_URL))  # noqa: F821
# The broker check the status command uses, on the demo's readiness to test it there.
HEALTH_CHECKS = {**HEALTH_CHECKS, "broker": "shared_lib.health.check_broker"}  # noqa: F821

# The demo throttle's rate; tests lower or raise it with the `settings` fixture.
RATE_LIMIT_DEMO = "3/min"

# No collectstatic before tests: templates (admin, Swagger UI, DRF's browsable API) resolve
# static URLs without the manifest, and WhiteNoise has no collected directory to serve.
STORAGES = {
    **STORAGES,  # noqa: F821 (set by base_settings above)
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = None

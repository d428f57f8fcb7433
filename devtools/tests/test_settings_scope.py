"""Each service's settings: the shared modules, plus the lines that name the service.

What names a service (URL space, admin cookies, rate-limit keys) is derived from the one name
each settings.py gives shared_lib.settings.name_service; two services sharing a cookie or a
counter behind the one gateway host would be a name given twice.
"""

import json
import subprocess
import sys

import pytest

from ticketing_devtools.catalog import SERVICES, DjangoService

# Only what the settings modules require: every optional variable keeps its default.
REQUIRED_ENV = {
    "SECRET_KEY": "k",
    "DATABASE_URL": "postgres://u:p@db.example:5432/x",
    "JWT_PUBLIC_KEY": "pem",
    "JWT_PRIVATE_KEY": "pem",
    "RABBITMQ_URL": "amqp://u:p@mq.example:5672/v",
    "STRIPE_SECRET_KEY": "sk_test_x",
}

WITH_DATABASE = [s for s in SERVICES if s.has_database]
WITHOUT_DATABASE = [s for s in SERVICES if not s.has_database]

READ = """
import importlib, json, os
from shared_lib.settings.logs import LOGGING
module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
values = {name: value for name, value in vars(module).items() if name.isupper()}
values["LOGGING_IS_THE_SHARED_ONE"] = values["LOGGING"] is LOGGING
print(json.dumps(values, default=str))
"""


def settings_of(service: DjangoService) -> dict:
    """The names the service's settings module sets, loaded in a process of its own as the
    service's processes load it."""
    done = subprocess.run(
        [sys.executable, "-c", READ],
        cwd=service.directory,
        env={
            "PATH": "/usr/bin:/bin",
            "DJANGO_SETTINGS_MODULE": f"{service.project}.settings",
            **REQUIRED_ENV,
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("service", WITH_DATABASE, ids=lambda s: s.name)
def test_a_service_names_its_url_space_cookies_and_counters_after_itself(service):
    values = settings_of(service)

    name = service.name
    assert values["ROOT_URLCONF"] == f"{service.project}.urls"
    assert values["WSGI_APPLICATION"] == f"{service.project}.wsgi.application"
    assert values["STATIC_URL"] == f"/static/{name}/"
    assert values["STATIC_ROOT"] == str(service.directory / "staticfiles")
    assert values["ADMIN_URL_PREFIX"] == f"admin/{name}/"
    assert values["SESSION_COOKIE_NAME"] == f"{name}_admin_session"
    assert values["SESSION_COOKIE_PATH"] == f"/admin/{name}/"
    assert values["CSRF_COOKIE_NAME"] == f"{name}_csrftoken"
    assert values["CSRF_COOKIE_PATH"] == f"/admin/{name}/"
    assert values["RATE_LIMIT_KEY_PREFIX"] == f"ticketing:{name}:ratelimit"
    assert values["SPECTACULAR_SETTINGS"]["TITLE"] == f"Ticketing {name} API"
    assert values["INSTALLED_APPS"].count("shared_lib") == 1
    assert values.get("EVENTS_SERVICE") == (name if service.events else None)
    assert values["LOGGING_IS_THE_SHARED_ONE"] is True


@pytest.mark.parametrize("service", WITHOUT_DATABASE, ids=lambda s: s.name)
def test_a_service_without_a_database_still_logs_the_shared_way(service):
    values = settings_of(service)

    assert values["DATABASES"] == {}
    assert values["LOGGING_IS_THE_SHARED_ONE"] is True
    if service.events:
        assert values["EVENTS_SERVICE"] == service.name
        assert values["EVENTS_INBOX"] is False

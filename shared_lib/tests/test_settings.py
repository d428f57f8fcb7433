"""The shared settings modules, each read fresh under the environment a test sets."""

import importlib.util
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

import shared_lib.settings
from shared_lib.conf import MissingSetting

BASE = "shared_lib.settings.base"
EVENTS = "shared_lib.settings.events"
REQUIRED = {
    BASE: ("SECRET_KEY", "DATABASE_URL", "JWT_PUBLIC_KEY"),
    EVENTS: ("RABBITMQ_URL",),
    "shared_lib.settings.logs": (),
}
OPTIONAL = (
    "DEBUG",
    "ALLOWED_HOSTS",
    "SESSION_TTL_SECONDS",
    "SESSION_COOKIE_SECURE",
    "TEST_DATABASE_SUFFIX",
    "RATE_LIMIT_KEY_PREFIX",
    "EVENTS_EXCHANGE",
    "EVENTS_RETRY_DELAYS_MS",
    "EVENTS_MAX_ATTEMPTS",
    "EVENTS_BATCH_SIZE",
    "EVENTS_PREFETCH",
    "EVENTS_RETENTION_DAYS",
    "METRICS_PORT",
    "METRICS_ADDRESS",
    "LOG_LEVEL",
    "LOG_FORMAT",
)


def load(module: str) -> dict:
    """The module's names as a service's settings import would see them, read now (the
    imported module keeps what it read when the test settings loaded it)."""
    return runpy.run_path(importlib.util.find_spec(module).origin)


@pytest.fixture
def minimal_env(monkeypatch):
    """The variables the shared settings require, and none of their optional ones."""
    for name in (*(n for names in REQUIRED.values() for n in names), *OPTIONAL):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    monkeypatch.setenv("SECRET_KEY", "k")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.example:5432/tickets")
    monkeypatch.setenv("JWT_PUBLIC_KEY", "pem")
    monkeypatch.setenv("RABBITMQ_URL", "amqp://tickets:secret@mq.example:5672/ticketing")
    return monkeypatch


@pytest.mark.parametrize(
    ("module", "name"), [(module, name) for module, names in REQUIRED.items() for name in names]
)
def test_a_missing_required_variable_stops_the_import_naming_it(minimal_env, module, name):
    minimal_env.delenv(name)

    with pytest.raises(MissingSetting) as excinfo:
        load(module)
    assert excinfo.value.name == name


def test_the_base_from_a_minimal_environment(minimal_env):
    values = load(BASE)

    assert values["SECRET_KEY"] == "k"
    assert values["JWT_PUBLIC_KEY"] == "pem"
    assert values["DEBUG"] is False
    assert values["SESSION_TTL_SECONDS"] == 900
    assert values["SESSION_COOKIE_SECURE"] is True
    assert values["CSRF_COOKIE_SECURE"] is True
    assert values["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert values["APPEND_SLASH"] is False
    assert values["INSTALLED_APPS"][-1] == "shared_lib"
    assert values["HEALTH_CHECKS"] == {"database": "shared_lib.health.check_database"}
    assert values["DATABASES"] == {
        "default": {
            "ENGINE": "shared_lib.postgresql",
            "NAME": "tickets",
            "USER": "u",
            "PASSWORD": "p",
            "HOST": "db.example",
            "PORT": 5432,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": False,
            "DISABLE_SERVER_SIDE_CURSORS": False,
            "OPTIONS": {"connect_timeout": 5},
        }
    }
    assert values["RATE_LIMIT_KEY_PREFIX"] == "ticketing:demo:ratelimit"
    assert values["LOGGING"]["root"] == {"handlers": ["stderr"], "level": "INFO"}


@pytest.mark.parametrize(
    ("module", "name", "raw", "value"),
    [
        (BASE, "DEBUG", "true", True),
        (BASE, "ALLOWED_HOSTS", "shop.example, api.example", ["shop.example", "api.example"]),
        (BASE, "SESSION_TTL_SECONDS", "120", 120),
        (BASE, "SESSION_COOKIE_SECURE", "false", False),
        (EVENTS, "EVENTS_EXCHANGE", "stack2.events", "stack2.events"),
        (EVENTS, "EVENTS_RETRY_DELAYS_MS", "200,400", [200, 400]),
        (EVENTS, "EVENTS_MAX_ATTEMPTS", "3", 3),
        (EVENTS, "EVENTS_BATCH_SIZE", "8", 8),
        (EVENTS, "EVENTS_PREFETCH", "16", 16),
        (EVENTS, "EVENTS_RETENTION_DAYS", "2", 2),
        (EVENTS, "METRICS_PORT", "0", 0),
        (EVENTS, "METRICS_ADDRESS", "127.0.0.1", "127.0.0.1"),
    ],
)
def test_an_optional_variable_becomes_the_setting_of_its_name(
    minimal_env, module, name, raw, value
):
    minimal_env.setenv(name, raw)

    read = load(module)[name]

    assert (type(read), read) == (type(value), value)


def test_the_base_derives_settings_from_optional_variables(minimal_env):
    minimal_env.setenv("SESSION_COOKIE_SECURE", "false")
    minimal_env.setenv("TEST_DATABASE_SUFFIX", "run7")
    minimal_env.setenv("RATE_LIMIT_KEY_PREFIX", "stack2:ratelimit")

    values = load(BASE)

    assert values["CSRF_COOKIE_SECURE"] is False
    assert values["DATABASES"]["default"]["TEST"] == {"NAME": "test_tickets_run7"}
    assert values["RATE_LIMIT_KEY_PREFIX"] == "stack2:ratelimit"


def test_the_base_refuses_a_session_ttl_under_a_minute(minimal_env):
    minimal_env.setenv("SESSION_TTL_SECONDS", "30")

    with pytest.raises(ImproperlyConfigured, match=r"^SESSION_TTL_SECONDS must be at least 60"):
        load(BASE)


def test_the_base_names_a_service_after_the_name_its_settings_gave(minimal_env):
    # These tests' settings (tests/settings.py) named the demo service.
    values = load(BASE)

    tests = Path(__file__).resolve().parent
    assert values["BASE_DIR"] == tests.parent
    assert values["ROOT_URLCONF"] == "tests.urls"
    assert values["WSGI_APPLICATION"] == "tests.wsgi.application"
    assert values["STATIC_URL"] == "/static/demo/"
    assert values["STATIC_ROOT"] == tests.parent / "staticfiles"
    assert values["ADMIN_URL_PREFIX"] == "admin/demo/"
    assert values["SESSION_COOKIE_NAME"] == "demo_admin_session"
    assert values["SESSION_COOKIE_PATH"] == "/admin/demo/"
    assert values["CSRF_COOKIE_NAME"] == "demo_csrftoken"
    assert values["CSRF_COOKIE_PATH"] == "/admin/demo/"
    assert values["SPECTACULAR_SETTINGS"]["TITLE"] == "Ticketing demo API"
    assert load(EVENTS)["EVENTS_SERVICE"] == "demo"


@pytest.mark.parametrize("module", [BASE, EVENTS])
def test_the_shared_settings_refuse_to_load_for_a_service_not_named(minimal_env, module):
    minimal_env.setattr(shared_lib.settings, "_named", None)

    with pytest.raises(ImproperlyConfigured) as excinfo:
        load(module)
    assert str(excinfo.value) == (
        "A service's settings call shared_lib.settings.name_service(name, __file__)"
        " before importing the shared settings."
    )


def test_a_process_names_one_service(minimal_env):
    named = shared_lib.settings.named_service()
    shared_lib.settings.name_service("demo", str(Path(__file__).parent / "settings.py"))

    with pytest.raises(ImproperlyConfigured) as excinfo:
        shared_lib.settings.name_service("orders", "/srv/orders_svc/orders_svc/settings.py")
    assert str(excinfo.value) == (
        "These settings are demo's already; one process runs one service"
        " (asked to name it 'orders')."
    )
    assert shared_lib.settings.named_service() == named


def test_the_event_bus_from_a_minimal_environment(minimal_env):
    values = load(EVENTS)

    url = "amqp://tickets:secret@mq.example:5672/ticketing"
    assert values["RABBITMQ_URL"] == url
    assert values["CELERY_BROKER_URL"] == url
    assert values["EVENTS_INBOX"] is True
    assert values["EVENTS_EXCHANGE"] == "ticketing.events"
    assert values["EVENTS_RETRY_DELAYS_MS"] == [1000, 5000, 30000]
    assert values["EVENTS_MAX_ATTEMPTS"] == 5
    assert values["EVENTS_BATCH_SIZE"] == 64
    assert values["EVENTS_PREFETCH"] == 128
    assert values["EVENTS_RETENTION_DAYS"] == 7
    assert values["METRICS_PORT"] == 9100
    assert values["METRICS_ADDRESS"] == "0.0.0.0"  # noqa: S104
    assert values["CELERY_TASK_ACKS_LATE"] is True
    assert values["CELERY_BROKER_TRANSPORT_OPTIONS"] == {"confirm_publish": True}


@pytest.mark.parametrize(
    ("log_format", "formatter"),
    [
        (None, {"()": "shared_lib.correlation.JsonFormatter"}),
        ("json", {"()": "shared_lib.correlation.JsonFormatter"}),
        ("unknown", {"()": "shared_lib.correlation.JsonFormatter"}),
        (
            "TEXT",
            {
                "()": "shared_lib.correlation.KeyValueFormatter",
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            },
        ),
    ],
)
def test_log_format_chooses_the_line_formatter(minimal_env, log_format, formatter):
    if log_format is not None:
        minimal_env.setenv("LOG_FORMAT", log_format)

    values = load("shared_lib.settings.logs")

    assert values["LOGGING"]["formatters"] == {"line": formatter}


def test_log_level_sets_the_root_level(minimal_env):
    minimal_env.setenv("LOG_LEVEL", "debug")

    values = load("shared_lib.settings.logs")

    assert values["LOGGING"]["root"] == {"handlers": ["stderr"], "level": "DEBUG"}


def test_the_logs_module_exports_only_logging():
    namespace: dict = {}

    exec("from shared_lib.settings.logs import *", namespace)  # noqa: S102

    assert set(namespace) - {"__builtins__"} == {"LOGGING"}

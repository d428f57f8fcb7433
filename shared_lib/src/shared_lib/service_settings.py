"""The Django settings every service shares, built from the environment in one place.

    from shared_lib.service_settings import base_settings
    globals().update(base_settings(service="tickets", base_dir=BASE_DIR, apps=["tickets"]))
    HEALTH_CHECKS["redis"] = "shared_lib.health.check_redis"   # then service extras

Required variables (see .env.example): SECRET_KEY, DATABASE_URL, JWT_PUBLIC_KEY.
A missing one stops start-up with an ImproperlyConfigured naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dj_database_url

from shared_lib.conf import env, env_bool, env_int, env_list

API_PATH_PREFIX = "/api/"

# Enough for any JSON this API accepts; larger bodies are refused with 413 before
# parsing (the gateway enforces the same 1 MiB, see gateway/routes.toml).
MAX_BODY_BYTES = 1024 * 1024

# Reuse a connection across requests for a minute: saves a TCP+auth round trip per
# request without holding idle connections long after a burst.
CONN_MAX_AGE_SECONDS = 60
DB_CONNECT_TIMEOUT_SECONDS = 5


def _database() -> dict[str, Any]:
    # No health-check `SELECT 1` before each request's first query: shared_lib.postgresql
    # finds a connection the server dropped by that query itself and retries it.
    database = dj_database_url.parse(
        env("DATABASE_URL"),
        engine="shared_lib.postgresql",
        conn_max_age=CONN_MAX_AGE_SECONDS,
        conn_health_checks=False,
    )
    database.setdefault("OPTIONS", {})["connect_timeout"] = DB_CONNECT_TIMEOUT_SECONDS
    # The test runner names each run's throw-away database, so two runs on one server
    # (a checkout and a fresh clone, CI and a developer) never drop each other's.
    suffix = env("TEST_DATABASE_SUFFIX", default="")
    if suffix:
        database["TEST"] = {"NAME": f"test_{database['NAME']}_{suffix}"}
    return database


def logging_settings(level: str, style: str) -> dict[str, Any]:
    formatter = {
        "json": {"()": "shared_lib.correlation.JsonFormatter"},
        "text": {
            "()": "shared_lib.correlation.KeyValueFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
    }[style]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"correlation": {"()": "shared_lib.correlation.CorrelationFilter"}},
        "formatters": {"line": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "line",
                "filters": ["correlation"],
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # Request errors are logged with their traceback here, never sent to clients.
            "django.request": {"level": "ERROR"},
            "django.server": {"level": "WARNING"},
        },
    }


def events_settings(service: str, *, inbox: bool = True) -> dict[str, Any]:
    """Settings of the event bus (shared_lib.events) and the service's Celery worker."""
    broker_url = env("RABBITMQ_URL")
    return {
        "RABBITMQ_URL": broker_url,
        "EVENTS_SERVICE": service,
        # Handlers run in a transaction with an inbox row; a service with no database
        # (expiration_worker) turns this off and keeps its handlers idempotent by nature.
        "EVENTS_INBOX": inbox,
        "EVENTS_EXCHANGE": env("EVENTS_EXCHANGE", default="ticketing.events"),
        # Wait-queue delays for retries: the n-th retry waits the n-th delay (the last
        # repeats). Short first, so a version gap closes quickly; capped, so a fault
        # that lasts minutes is not hammered.
        "EVENTS_RETRY_DELAYS_MS": [
            int(ms) for ms in env_list("EVENTS_RETRY_DELAYS_MS", default=["1000", "5000", "30000"])
        ],
        # Deliveries of a failing message before it is dead-lettered (about a minute and a
        # half with the delays above): a transient fault passes, a bug does not loop.
        "EVENTS_MAX_ATTEMPTS": env_int("EVENTS_MAX_ATTEMPTS", default=5, minimum=1),
        # Deliveries a worker settles in one transaction and one ack, at most: it takes
        # what it already holds, never waiting for a batch to fill.
        "EVENTS_BATCH_SIZE": env_int("EVENTS_BATCH_SIZE", default=64, minimum=1),
        # Unacked messages per consumer: twice a batch, so the next batch arrives while
        # one is applied; few enough that a dying worker hands back little to redeliver.
        "EVENTS_PREFETCH": env_int("EVENTS_PREFETCH", default=128, minimum=1),
        "EVENTS_RETENTION_DAYS": env_int("EVENTS_RETENTION_DAYS", default=7, minimum=1),
        # The worker's /metrics (MetricsServerStep). A pod has a network namespace of its
        # own, so one fixed port is safe there; several workers on one machine need a port
        # each (the local stack and the test fixtures pass one). 0 turns it off.
        "METRICS_PORT": env_int("METRICS_PORT", default=9100, minimum=0, maximum=65535),
        "METRICS_ADDRESS": env("METRICS_ADDRESS", default="0.0.0.0"),  # noqa: S104 (a pod's)
        "CELERY_BROKER_URL": broker_url,
        "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP": True,
        # Tasks a worker publishes (expiry timers) are confirmed by the broker before the
        # event that caused them is acked.
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"confirm_publish": True},
        "CELERY_WORKER_HIJACK_ROOT_LOGGER": False,
        "CELERY_TASK_ACKS_LATE": True,
        "CELERY_WORKER_PREFETCH_MULTIPLIER": 1,
    }


def base_settings(
    *, service: str, base_dir: Path, apps: list[str], events: bool = False
) -> dict[str, Any]:
    """Settings shared by every Django service; `service` names its URL prefixes.

    `events=True` for a service on the event bus: it then needs RABBITMQ_URL and runs a
    worker. Its readiness does not include the broker: the outbox keeps every write while
    RabbitMQ is away, so a broker outage must not take the API out of the load balancer
    (the worker's liveness and the status command watch the broker instead).
    """
    debug = env_bool("DEBUG", default=False)
    project = f"{service}_svc"
    health_checks = {"database": "shared_lib.health.check_database"}
    return {
        **(events_settings(service) if events else {}),
        "BASE_DIR": base_dir,
        "SECRET_KEY": env("SECRET_KEY"),
        "DEBUG": debug,
        "ALLOWED_HOSTS": env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"]),
        "INSTALLED_APPS": [
            # django.contrib.admin with single sign-on from the site's session token.
            "shared_lib.admin_sso.SignOnAdminConfig",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "rest_framework",
            "drf_spectacular",
            "drf_spectacular_sidecar",
            "shared_lib",
            *apps,
        ],
        "MIDDLEWARE": [
            "shared_lib.metrics.MetricsMiddleware",
            "shared_lib.health.HealthMiddleware",
            "shared_lib.correlation.CorrelationIdMiddleware",
            # A span per request when tracing is on (inside the correlation scope, so the
            # span names its id); with tracing off Django leaves it out at start-up.
            "shared_lib.tracing.TracingMiddleware",
            "shared_lib.errors.ErrorShapeMiddleware",
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "shared_lib.errors.JsonOnlyApiMiddleware",
            # Sessions, Django's user and messages serve pages (the admin), not /api/.
            "shared_lib.page_middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "shared_lib.page_middleware.AuthenticationMiddleware",
            "shared_lib.auth.CurrentUserMiddleware",
            "shared_lib.admin_sso.AdminSignOnMiddleware",
            "shared_lib.page_middleware.MessageMiddleware",
            "django.middleware.clickjacking.XFrameOptionsMiddleware",
        ],
        "ROOT_URLCONF": f"{project}.urls",
        "WSGI_APPLICATION": f"{project}.wsgi.application",
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "DIRS": [],
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "DATABASES": {"default": _database()},
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LANGUAGE_CODE": "en-us",
        "TIME_ZONE": "UTC",
        "USE_I18N": True,
        "USE_TZ": True,
        # Behind one gateway host every service needs its own URL space for static files
        # and the admin, and its own admin cookies (a shared "sessionid" would collide).
        "STATIC_URL": f"/static/{service}/",
        "STATIC_ROOT": base_dir / "staticfiles",
        "STORAGES": {
            "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
            "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
        },
        "ADMIN_URL_PREFIX": f"admin/{service}/",
        # Single sign-on to the admin (shared_lib.admin_sso): staff from the token's claim,
        # sent to the web client's pages to sign in and out. ModelBackend stays for local
        # accounts (createsuperuser), the way in when single sign-on cannot work.
        "ADMIN_STAFF_SOURCE": "token",
        "ADMIN_SIGNIN_URL": "/auth/signin",
        "ADMIN_SIGNOUT_URL": "/auth/signout",
        "AUTHENTICATION_BACKENDS": [
            "django.contrib.auth.backends.ModelBackend",
            "shared_lib.admin_sso.SignOnStaffBackend",
        ],
        "SESSION_COOKIE_NAME": f"{service}_admin_session",
        "SESSION_COOKIE_PATH": f"/admin/{service}/",
        "CSRF_COOKIE_NAME": f"{service}_csrftoken",
        "CSRF_COOKIE_PATH": f"/admin/{service}/",
        # Only the admin shows messages, and it has a session; the default cookie storage
        # would build a signer on every API request for nothing.
        "MESSAGE_STORAGE": "django.contrib.messages.storage.session.SessionStorage",
        "SESSION_COOKIE_SECURE": env_bool("SESSION_COOKIE_SECURE", default=True),
        "CSRF_COOKIE_SECURE": env_bool("SESSION_COOKIE_SECURE", default=True),
        "CSRF_TRUSTED_ORIGINS": env_list("CSRF_TRUSTED_ORIGINS", default=[]),
        # The gateway forwards Host (with its port) and X-Forwarded-Proto, so links a
        # service builds point at the gateway (docs/architecture.md).
        "USE_X_FORWARDED_HOST": True,
        "USE_X_FORWARDED_PORT": False,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "TRUSTED_PROXIES": env_list("TRUSTED_PROXIES", default=["127.0.0.1/32", "::1/128"]),
        "APPEND_SLASH": False,  # nothing under /api/ redirects
        "DATA_UPLOAD_MAX_MEMORY_SIZE": MAX_BODY_BYTES,
        "API_PATH_PREFIX": API_PATH_PREFIX,
        "JWT_PUBLIC_KEY": env("JWT_PUBLIC_KEY"),
        "SESSION_TTL_SECONDS": env_int("SESSION_TTL_SECONDS", default=900, minimum=60),
        "REDIS_URL": env("REDIS_URL", default="redis://127.0.0.1:6379/0"),
        # Several deployments (or test stacks) can share one Redis under distinct prefixes.
        "RATE_LIMIT_KEY_PREFIX": env(
            "RATE_LIMIT_KEY_PREFIX", default=f"ticketing:{service}:ratelimit"
        ),
        # Sign-in attempts: the API's and every admin's password form (shared_lib.ratelimit).
        "RATE_LIMIT_SIGNIN": env("RATE_LIMIT_SIGNIN", default="30/min"),
        "RATE_LIMIT_EMAIL": env("RATE_LIMIT_EMAIL", default="10/min"),
        "HEALTH_CHECKS": health_checks,
        "REST_FRAMEWORK": {
            "DEFAULT_AUTHENTICATION_CLASSES": ["shared_lib.auth.JWTAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
            "DEFAULT_PARSER_CLASSES": ["shared_lib.parsers.JSONParser"],
            "DEFAULT_RENDERER_CLASSES": [
                "rest_framework.renderers.JSONRenderer",
                "rest_framework.renderers.BrowsableAPIRenderer",
            ],
            "DEFAULT_CONTENT_NEGOTIATION_CLASS": "shared_lib.negotiation.JsonFirst",
            "EXCEPTION_HANDLER": "shared_lib.errors.drf_exception_handler",
            "DEFAULT_SCHEMA_CLASS": "shared_lib.schema.AutoSchema",
            "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
        },
        "SPECTACULAR_SETTINGS": {
            "TITLE": f"Ticketing {service} API",
            "VERSION": "1.0.0",
            "SERVE_INCLUDE_SCHEMA": False,
            "SWAGGER_UI_DIST": "SIDECAR",
            "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
            "REDOC_DIST": "SIDECAR",
            "COMPONENT_SPLIT_REQUEST": True,
            "PREPROCESSING_HOOKS": ["shared_lib.schema.document_paths_without_slash"],
            "POSTPROCESSING_HOOKS": [
                "drf_spectacular.hooks.postprocess_schema_enums",  # drf-spectacular's default
                "shared_lib.schema.describe_browsable_api",
            ],
        },
        "LOGGING": logging_settings(
            env("LOG_LEVEL", default="INFO").upper(),
            "text" if env("LOG_FORMAT", default="json").lower() == "text" else "json",
        ),
    }

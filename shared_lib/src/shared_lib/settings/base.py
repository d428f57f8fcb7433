"""The Django settings every service with a database shares, read from the environment.

    name_service("tickets", __file__)
    from shared_lib.settings.base import *  # noqa: E402, F403
    from shared_lib.settings.base import INSTALLED_APPS  # noqa: E402
    INSTALLED_APPS = [*INSTALLED_APPS, "tickets"]   # then the service's own lines

Required variables (see .env.example): SECRET_KEY, DATABASE_URL, JWT_PUBLIC_KEY. A missing
one stops start-up with an ImproperlyConfigured naming it. LOGGING comes with the import
(shared_lib.settings.logs).

What names a service comes from shared_lib.settings.name_service: BASE_DIR, ROOT_URLCONF,
WSGI_APPLICATION, STATIC_URL, STATIC_ROOT, ADMIN_URL_PREFIX, the admin's
SESSION_/CSRF_COOKIE_NAME and _PATH, RATE_LIMIT_KEY_PREFIX and SPECTACULAR_SETTINGS' TITLE.
Behind one gateway host every service needs its own URL space for static files and the
admin, and its own admin cookies (a shared "sessionid" would collide).
"""

import dj_database_url

from shared_lib.conf import env, env_bool, env_int, env_list
from shared_lib.settings import named_service, templates
from shared_lib.settings.logs import *  # noqa: F403


def _database() -> dict:
    # Reuse a connection across requests for a minute: saves a TCP+auth round trip per
    # request without holding idle connections long after a burst. No health-check
    # `SELECT 1` before each request's first query: shared_lib.postgresql finds a
    # connection the server dropped by that query itself and retries it.
    database = dj_database_url.parse(
        env("DATABASE_URL"),
        engine="shared_lib.postgresql",
        conn_max_age=60,
        conn_health_checks=False,
    )
    database.setdefault("OPTIONS", {})["connect_timeout"] = 5  # seconds
    # The test runner names each run's throw-away database, so two runs on one server
    # (a checkout and a fresh clone, CI and a developer) never drop each other's.
    suffix = env("TEST_DATABASE_SUFFIX", default="")
    if suffix:
        database["TEST"] = {"NAME": f"test_{database['NAME']}_{suffix}"}
    return database


_service = named_service()

BASE_DIR = _service.directory
ROOT_URLCONF = f"{_service.package}.urls"
WSGI_APPLICATION = f"{_service.package}.wsgi.application"
# The service's URL space and admin cookies behind the one gateway host.
STATIC_URL = f"/static/{_service.name}/"
STATIC_ROOT = BASE_DIR / "staticfiles"
ADMIN_URL_PREFIX = f"admin/{_service.name}/"
SESSION_COOKIE_NAME = f"{_service.name}_admin_session"
SESSION_COOKIE_PATH = f"/{ADMIN_URL_PREFIX}"
CSRF_COOKIE_NAME = f"{_service.name}_csrftoken"
CSRF_COOKIE_PATH = SESSION_COOKIE_PATH
# Several deployments (or test stacks) can share one Redis under distinct prefixes.
RATE_LIMIT_KEY_PREFIX = env("RATE_LIMIT_KEY_PREFIX", default=f"ticketing:{_service.name}:ratelimit")

SECRET_KEY = env("SECRET_KEY")
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
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
]
MIDDLEWARE = [
    "shared_lib.metrics.MetricsMiddleware",
    "shared_lib.health.HealthMiddleware",
    "shared_lib.correlation.CorrelationIdMiddleware",
    # A span per request when tracing is on (inside the correlation scope, so the span
    # names its id); with tracing off Django leaves it out at start-up.
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
]
TEMPLATES = templates(
    "django.template.context_processors.request",
    "django.contrib.auth.context_processors.auth",
    "django.contrib.messages.context_processors.messages",
)

DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Single sign-on to the admin (shared_lib.admin_sso): staff from the token's claim, sent
# to the web client's pages to sign in and out. ModelBackend stays for local accounts
# (createsuperuser), the way in when single sign-on cannot work.
ADMIN_STAFF_SOURCE = "token"
ADMIN_SIGNIN_URL = "/auth/signin"
ADMIN_SIGNOUT_URL = "/auth/signout"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "shared_lib.admin_sso.SignOnStaffBackend",
]
# Only the admin shows messages, and it has a session; the default cookie storage would
# build a signer on every API request for nothing.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

# The gateway forwards Host (with its port) and X-Forwarded-Proto, so links a service
# builds point at the gateway (docs/architecture.md).
USE_X_FORWARDED_HOST = True
USE_X_FORWARDED_PORT = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", default=["127.0.0.1/32", "::1/128"])
APPEND_SLASH = False  # nothing under /api/ redirects
# Enough for any JSON this API accepts; larger bodies are refused with 413 before parsing
# (the gateway enforces the same 1 MiB, see gateway/routes.toml).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
API_PATH_PREFIX = "/api/"

# Email (shared_lib.mail): SMTP, as the environment says. Locally `make up` (and every
# test stack) runs a mail catcher and points every service at it.
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env("EMAIL_HOST", default="localhost")
EMAIL_PORT = env_int("EMAIL_PORT", default=25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", default=False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", default=False)  # TLS from the start, port 465
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", default=10, minimum=1)
# Sent rows (who was told what, when) are kept this long, then deleted.
EMAIL_RETENTION_DAYS = env_int("EMAIL_RETENTION_DAYS", default=7, minimum=1)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Ticketing <no-reply@ticketing.local>")
# Where links in emails point: the site as its users reach it.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8080").rstrip("/")

JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY")
SESSION_TTL_SECONDS = env_int("SESSION_TTL_SECONDS", default=900, minimum=60)
REDIS_URL = env("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Sign-in attempts: the API's and every admin's password form (shared_lib.ratelimit).
RATE_LIMIT_SIGNIN = env("RATE_LIMIT_SIGNIN", default="30/min")
RATE_LIMIT_EMAIL = env("RATE_LIMIT_EMAIL", default="10/min")
HEALTH_CHECKS = {"database": "shared_lib.health.check_database"}

REST_FRAMEWORK = {
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
}
SPECTACULAR_SETTINGS = {
    "TITLE": f"Ticketing {_service.name} API",
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
}

"""Web client settings: server-rendered pages, no database, the APIs behind API_BASE_URL.

The client owns no data: who is signed in is the browser's `session` token, verified with
auth_svc's public key (JWT_PUBLIC_KEY) as every service verifies it; everything else comes
from the APIs. Only Django's signing (CSRF, flash messages in a signed cookie) needs
SECRET_KEY.
"""

from pathlib import Path

from shared_lib.conf import env, env_bool, env_int, env_list
from shared_lib.settings import templates
from shared_lib.settings.logs import *  # noqa: F403

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = env("SECRET_KEY")
DEBUG = env_bool("DEBUG", default=False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])

# Where the pages call the APIs: the gateway (locally nginx, in a cluster ingress-nginx),
# so the client sees exactly the routes and error shapes any other API client sees.
API_BASE_URL = env("API_BASE_URL", default="http://127.0.0.1:8080").rstrip("/")
# The local address API calls leave from (empty: the system's choice). Locally every
# process is on 127.0.0.1, so the client calls from 127.0.0.2: the gateway then believes
# the browser address the client forwards, and nobody else's (as with a pod IP).
API_SOURCE_ADDRESS = env("API_SOURCE_ADDRESS", default="")
# A page waits at most this long for one API call; the gateway gives up on a service at
# 60 s, but a person will not stare at a blank page that long.
API_TIMEOUT_SECONDS = env_int("API_TIMEOUT_SECONDS", default=15, minimum=1, maximum=60)
# After a payment the order becomes complete a moment later, by an event: the pay page
# waits at most this long for it, so the order list it leads to shows the order paid.
ORDER_CONFIRM_SECONDS = 3.0
# Session tokens are verified here, so a page need not ask auth_svc who is signed in.
JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY")
# Empty: the page offers a choice of Stripe test cards. Set (pk_live_/pk_test_): the
# page loads Stripe.js and Stripe Elements collects the card (`make up` sets a test key).
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="")
# Where Stripe.js comes from: Stripe itself, except locally, where the gateway serves
# the Stripe fake's stand-in under /_stripe/ (same origin, so the CSP's 'self' covers it).
STRIPE_JS_URL = env("STRIPE_JS_URL", default="") or "https://js.stripe.com/v3/"

INSTALLED_APPS = [
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "storefront",
]

MIDDLEWARE = [
    # First: times every page, and answers /metrics only to direct scrapes (the gateway's
    # catch-all route sends every unknown path here, so a proxied /metrics is a 404 page).
    "shared_lib.metrics.MetricsMiddleware",
    "shared_lib.health.HealthMiddleware",
    "shared_lib.correlation.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "storefront.middleware.ContentSecurityPolicyMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "storefront.middleware.ApiSessionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "client_site.urls"
WSGI_APPLICATION = "client_site.wsgi.application"

TEMPLATES = templates(
    "django.template.context_processors.request",
    "django.template.context_processors.csrf",
    "django.contrib.messages.context_processors.messages",
    "storefront.context.site",
)

# No database: nothing here is stored. The readiness probe therefore checks nothing
# beyond "the process serves" — an API outage must not take the pages that explain it
# out of the load balancer.
DATABASES: dict[str, dict[str, str]] = {}
HEALTH_CHECKS: dict[str, str] = {}

# Flash messages ("Your ticket is listed") ride in a signed cookie: no session store.
MESSAGE_STORAGE = "django.contrib.messages.storage.cookie.CookieStorage"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/client/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

SECURE = env_bool("SESSION_COOKIE_SECURE", default=True)
CSRF_COOKIE_SECURE = SECURE
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])
CSRF_FAILURE_VIEW = "storefront.views.csrf_failure"
SESSION_COOKIE_SECURE = SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# The gateway forwards Host (with its port) and X-Forwarded-Proto, so redirects and
# absolute links point at the gateway; X-Forwarded-For is believed only from it.
USE_X_FORWARDED_HOST = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", default=["127.0.0.1/32", "::1/128"])
APPEND_SLASH = True

"""auth_svc settings: the shared base plus what only the auth service has.

Only this service holds JWT_PRIVATE_KEY (it alone mints session tokens) and a user table.
"""

from pathlib import Path

from shared_lib.conf import env, env_int
from shared_lib.settings.base import *  # noqa: F403
from shared_lib.settings.base import (
    HEALTH_CHECKS,
    INSTALLED_APPS,
    SPECTACULAR_SETTINGS,
    rate_limit_key_prefix,
)

BASE_DIR = Path(__file__).resolve().parent.parent
# users first: its commands (changepassword, which ends sessions) win over Django's own.
INSTALLED_APPS = ["users", *INSTALLED_APPS]
ROOT_URLCONF = "auth_svc.urls"
WSGI_APPLICATION = "auth_svc.wsgi.application"
# Rate-limit counters live in Redis, so sign-in is not ready without it.
HEALTH_CHECKS = {**HEALTH_CHECKS, "redis": "shared_lib.health.check_redis"}

# This service's URL space and admin cookies behind the one gateway host.
STATIC_URL = "/static/auth/"
STATIC_ROOT = BASE_DIR / "staticfiles"
ADMIN_URL_PREFIX = "admin/auth/"
SESSION_COOKIE_NAME = "auth_admin_session"
SESSION_COOKIE_PATH = "/admin/auth/"
CSRF_COOKIE_NAME = "auth_csrftoken"
CSRF_COOKIE_PATH = "/admin/auth/"
RATE_LIMIT_KEY_PREFIX = rate_limit_key_prefix("auth")
SPECTACULAR_SETTINGS = {"TITLE": "Ticketing auth API", **SPECTACULAR_SETTINGS}

JWT_PRIVATE_KEY = env("JWT_PRIVATE_KEY")
AUTH_USER_MODEL = "users.User"
# The users table is where staff is decided, so the admin here asks it on every request
# (a demotion bites at once) instead of trusting the token's claim (shared_lib.admin_sso).
ADMIN_STAFF_SOURCE = "user-table"

# Argon2id: memory-hard, Django's recommended hasher. Scrypt (also memory-hard) stays
# listed so hashes made with it still verify and get upgraded on sign-in.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]

# Sessions (users.models.UserSession): sign-out and revocation take effect here at once,
# and no renewal carries a session past its maximum age from sign-in (default 12 h: a
# working day of renewals, after which even a stolen token dies).
SESSION_CHECK = "users.selectors.session_is_live"
SESSION_MAX_AGE_SECONDS = env_int("SESSION_MAX_AGE_SECONDS", default=12 * 60 * 60, minimum=60)

RATE_LIMIT_SIGNUP = env("RATE_LIMIT_SIGNUP", default="20/min")
# RATE_LIMIT_SIGNIN and RATE_LIMIT_EMAIL are every service's (its admin's password form).

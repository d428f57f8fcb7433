"""auth_svc settings: the shared base plus what only the auth service has.

Only this service holds JWT_PRIVATE_KEY (it alone mints session tokens) and a user table.
"""

from shared_lib.conf import env, env_int
from shared_lib.settings import name_service

name_service("auth", __file__)  # first: the shared settings name everything after it
from shared_lib.settings.base import *  # noqa: E402, F403
from shared_lib.settings.base import HEALTH_CHECKS, INSTALLED_APPS  # noqa: E402

# users first: its commands (changepassword, which ends sessions) win over Django's own.
INSTALLED_APPS = ["users", *INSTALLED_APPS]
# Rate-limit counters live in Redis, so sign-in is not ready without it.
HEALTH_CHECKS = {**HEALTH_CHECKS, "redis": "shared_lib.health.check_redis"}

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

# Password reset emails (shared_lib.mail): sent just after the request commits, and by
# each web worker every 5 s for whatever that could not send (auth_svc has no worker).
WEB_PERIODIC_TASKS = {"shared_lib.mail.send_pending_emails": 5}
# Its backlog on the web processes' /metrics (docs/operations.md).
WEB_METRICS_COLLECTORS = ["shared_lib.metrics.EmailCollector"]
# Reset requests per client IP, and per email (each may send an email to that inbox).
RATE_LIMIT_PASSWORD_RESET = env("RATE_LIMIT_PASSWORD_RESET", default="10/min")
RATE_LIMIT_PASSWORD_RESET_EMAIL = env("RATE_LIMIT_PASSWORD_RESET_EMAIL", default="5/hour")

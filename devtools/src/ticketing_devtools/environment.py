"""The environment each local process runs with: the variables of .env.example, filled in.

    from ticketing_devtools.environment import service_env
    env = service_env(service("auth"), ensure_dev_secrets())
    subprocess.run([sys.executable, "manage.py", "migrate"], env=env, cwd=...)

Values the caller already exported (RATE_LIMIT_SIGNUP, SESSION_TTL_SECONDS, ...) pass
through; per-service values (database, secret key, keys) are always this checkout's own.
The Stripe secrets reach only the services that use Stripe, as in a cluster.
"""

from __future__ import annotations

import os

from shared_lib.testing.rabbitmq import broker_url
from ticketing_devtools.backing import rabbitmq_url, redis_url
from ticketing_devtools.catalog import DEFAULT_DB_PREFIX, DjangoService
from ticketing_devtools.devkeys import DevSecrets
from ticketing_devtools.provision import database_url

# localstripe accepts any key; real keys only ever come from the environment.
LOCAL_STRIPE_KEY = "sk_test_local"
LOCAL_PUBLISHABLE_KEY = "pk_test_local"
# Held only by services that use Stripe (DjangoService.uses_stripe).
STRIPE_SECRETS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET")


def service_broker_url(url: str, service: DjangoService, secrets: DevSecrets) -> str:
    """`url`'s broker and vhost as the service's own user (rabbitmq.ensure_bus_users)."""
    return broker_url(url, user=service.name, password=secrets.broker_password(service.name))


def common_env(secrets: DevSecrets) -> dict[str, str]:
    env = dict(os.environ)
    env["REDIS_URL"] = redis_url()
    env["RABBITMQ_URL"] = rabbitmq_url()
    # Local runs are plain http on loopback: a Secure cookie would never come back.
    env.setdefault("SESSION_COOKIE_SECURE", "false")
    # A person reads these logs: key=value lines rather than JSON objects.
    env.setdefault("LOG_FORMAT", "text")
    # A worker's metrics server defaults to one fixed port, right for a pod but not for
    # several workers on one machine: off here unless the stack (or a test) gives each
    # worker a port of its own.
    env.setdefault("METRICS_PORT", "0")
    env["JWT_PUBLIC_KEY_FILE"] = str(secrets.jwt_public_key_file)
    env["PYTHONUNBUFFERED"] = "1"
    for name in ("JWT_PUBLIC_KEY", "JWT_PRIVATE_KEY", "JWT_PRIVATE_KEY_FILE", "DATABASE_URL"):
        env.pop(name, None)
    return env


def service_env(
    service: DjangoService, secrets: DevSecrets, *, db_prefix: str = DEFAULT_DB_PREFIX
) -> dict[str, str]:
    env = common_env(secrets)
    env["DJANGO_SETTINGS_MODULE"] = f"{service.project}.settings"
    if service.web or service.has_database:
        env["SECRET_KEY"] = secrets.django_secret(service.name)
    if service.has_database:
        env.update(
            DATABASE_URL=database_url(
                database=service.database(db_prefix),
                role=service.database(),
                password=secrets.db_password(service.name),
            ),
        )
    if service.uses_stripe:
        env.setdefault("STRIPE_SECRET_KEY", LOCAL_STRIPE_KEY)
        env.setdefault("STRIPE_WEBHOOK_SECRET", secrets.stripe_webhook_secret)
    else:
        for name in STRIPE_SECRETS:  # exported (or in .env) for payments_svc alone
            env.pop(name, None)
    if service.mints_tokens:
        env["JWT_PRIVATE_KEY_FILE"] = str(secrets.jwt_private_key_file)
    return env

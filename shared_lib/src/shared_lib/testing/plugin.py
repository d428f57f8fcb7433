"""pytest fixtures every service's tests get (registered through the pytest11 entry point).

    def test_create(signed_in_client):
        client = signed_in_client(email="seller@example.com")
        assert client.post("/api/tickets", {...}, format="json").status_code == 201

Fixtures: `jwt_keypair` (a fresh Ed25519 pair per session), `session_keys` (settings use
that pair, so tokens mint and verify without the dev keys), `make_token`, `api_client`,
`signed_in_client`, `staff_admin_client` (the admin by single sign-on), `redis_keys` (an
isolated Redis key prefix, cleaned afterwards), `rabbitmq_users` / `rabbitmq_vhost` (a
throw-away vhost with each service's own broker user), `event_worker` (real workers).
The hook `pytest_broker_password(user)` lets another plugin (ticketing_devtools') give
the broker users the passwords they have outside the tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    private_pem: str
    public_pem: str


def generate_keypair() -> KeyPair:
    """A new Ed25519 key pair as PEM strings."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return KeyPair(private_pem=private_pem, public_pem=public_pem)


@pytest.fixture(scope="session")
def jwt_keypair() -> KeyPair:
    return generate_keypair()


@pytest.fixture
def session_keys(settings: Any, jwt_keypair: KeyPair) -> KeyPair:
    settings.JWT_PUBLIC_KEY = jwt_keypair.public_pem
    settings.JWT_PRIVATE_KEY = jwt_keypair.private_pem
    return jwt_keypair


@pytest.fixture
def make_token(session_keys: KeyPair) -> Callable[..., str]:
    from shared_lib.auth import mint_session_token

    def make(
        *,
        user_id: str | None = None,
        email: str = "user@example.com",
        staff: bool = False,
        now: int | None = None,
        session_id: str | None = None,
    ) -> str:
        return mint_session_token(
            user_id=user_id or str(uuid.uuid4()),
            email=email,
            staff=staff,
            now=now,
            session_id=session_id,
        )

    return make


@pytest.fixture
def api_client() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def signed_in_client(make_token: Callable[..., str]) -> Callable[..., Any]:
    """A factory of API clients carrying a valid session cookie for the given user."""
    from rest_framework.test import APIClient

    from shared_lib.auth import SESSION_COOKIE

    def build(
        *, user_id: str | None = None, email: str = "user@example.com", staff: bool = False
    ) -> Any:
        client = APIClient()
        client.user_id = user_id or str(uuid.uuid4())
        client.email = email
        client.cookies[SESSION_COOKIE] = make_token(
            user_id=client.user_id, email=email, staff=staff
        )
        return client

    return build


@pytest.fixture
def staff_admin_client(make_token: Callable[..., str]) -> Any:
    """A Django test client signed in on the site as staff (`staff: true` in its token): the
    admin's single sign-on (shared_lib.admin_sso) opens every admin but auth_svc's, where
    the user's row must be staff too."""
    from django.test import Client

    from shared_lib.auth import SESSION_COOKIE

    client = Client()
    client.user_id = str(uuid.uuid4())
    client.email = "staff@example.com"
    client.cookies[SESSION_COOKIE] = make_token(
        user_id=client.user_id, email=client.email, staff=True
    )
    return client


@pytest.fixture
def redis_keys(settings: Any) -> Iterator[str]:
    """Point rate-limit counters at a fresh key prefix and delete its keys afterwards;
    no outage remembered from an earlier test, before or after."""
    from shared_lib.ratelimit import forget_outage
    from shared_lib.redis_client import redis_client

    prefix = f"test:{uuid.uuid4().hex}"
    settings.RATE_LIMIT_KEY_PREFIX = prefix
    forget_outage()
    yield prefix
    forget_outage()
    client = redis_client()
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


class BrokerPasswordSpec:
    @pytest.hookspec(firstresult=True)
    def pytest_broker_password(self, user: str) -> str | None:
        """The password broker user `user` (a service) gets in the tests: the one it has
        everywhere else on this broker (ticketing_devtools' dev secrets), since users are
        the broker's, not a vhost's. None: a fresh one for the session."""


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(BrokerPasswordSpec)


@pytest.fixture(scope="session")
def rabbitmq_users(django_db_setup: Any, pytestconfig: pytest.Config) -> Iterator[dict[str, str]]:
    """A fresh RabbitMQ vhost for the session, with every service's own broker user on it
    (least rights, as in production): service -> its URL there, and "admin" -> the URL of
    RABBITMQ_URL's (admin) user there. This service's settings connect as its own user (a
    suite whose service is not on the bus keeps the admin); the vhost is deleted afterwards."""
    import secrets

    from django.conf import settings

    from shared_lib.events import broker
    from shared_lib.events.registry import discover_handlers
    from shared_lib.testing.rabbitmq import broker_url, ensure_bus_users, throwaway_vhost

    fresh = secrets.token_urlsafe(24)

    def password_of(user: str) -> str:
        return pytestconfig.hook.pytest_broker_password(user=user) or fresh

    original = settings.RABBITMQ_URL, settings.CELERY_BROKER_URL
    with throwaway_vhost(original[0], "ticketing-test") as vhost:
        admin_url = broker_url(original[0], vhost=vhost)
        service = settings.EVENTS_SERVICE
        users = ensure_bus_users(
            admin_url,
            password_of=password_of,
            consumed={service: list(discover_handlers())},
            exchange=settings.EVENTS_EXCHANGE,
        )
        users["admin"] = admin_url
        settings.RABBITMQ_URL = settings.CELERY_BROKER_URL = users.get(service, admin_url)
        broker.forget_declarations()
        try:
            yield users
        finally:
            settings.RABBITMQ_URL, settings.CELERY_BROKER_URL = original
            broker.forget_declarations()


@pytest.fixture(scope="session")
def rabbitmq_vhost(rabbitmq_users: dict[str, str]) -> str:
    """The session's vhost as its admin user (full rights: test tools read any queue).
    The service itself connects as its own user (settings.RABBITMQ_URL)."""
    return rabbitmq_users["admin"]


@pytest.fixture
def celery_app_name() -> str:
    """The Celery app a service's worker runs (`-A`): the settings module's package, e.g.
    tickets_svc; a suite whose app lives elsewhere overrides this fixture."""
    import os

    return os.environ["DJANGO_SETTINGS_MODULE"].rsplit(".", 1)[0]


@pytest.fixture
def event_worker(
    rabbitmq_vhost: str, celery_app_name: str, tmp_path: Any
) -> Iterator[Callable[..., Any]]:
    """Factory of real worker processes; all stopped afterwards. For a service with a
    database, request `transactional_db` too: the worker uses the test database and sees
    only committed rows."""
    import os
    from pathlib import Path

    from django.conf import settings

    from shared_lib.testing.events import Worker, test_database_url

    workers: list[Any] = []

    def start(**extra_env: str) -> Any:
        index = len(workers)
        env = {
            **os.environ,
            "RABBITMQ_URL": settings.RABBITMQ_URL,  # this service's own broker user
            "WORKER_HEARTBEAT_FILE": str(tmp_path / f"worker-{index}.alive"),
            "LOG_FORMAT": "text",
            **extra_env,
        }
        if settings.DATABASES:
            env["DATABASE_URL"] = test_database_url()
        worker = Worker(
            app=celery_app_name,
            cwd=Path.cwd(),
            env=env,
            log_path=tmp_path / f"worker-{index}.log",
        )
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()


@pytest.fixture
def race_server(transactional_db: Any) -> Iterator[str]:
    """A live server for races (wide backlog, joined threads) on the test database."""
    from shared_lib.testing.live import serve

    yield from serve()

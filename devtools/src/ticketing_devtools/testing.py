"""pytest plugin: the whole system running for a test session, started as `make up` does.

    def test_signup(stack):                         # every process, behind the gateway
        requests.post(f"{stack.url}/api/users/signup", json={...})

    @pytest.fixture(scope="session")                # in a suite's conftest.py: tune it
    def stack_settings():
        return StackSettings(env={"EXPIRATION_WINDOW_SECONDS": "15"})

The stack runs on throw-away databases (a prefix unique to the run), a throw-away
RabbitMQ vhost and free ports; it stops afterwards, drops what it made, and checks that
no process outlived it. Loaded in every suite through the `pytest11` entry point; it
costs nothing until a test asks for `stack`. It also gives shared_lib's `rabbitmq_users`
the services' broker passwords of this checkout (pytest_broker_password), and
`mail_server`: a real SMTP server (the mail catcher) a test's email goes to.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shared_lib.testing.processes import free_port
from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from ticketing_devtools.backing import rabbitmq_url
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.mailcatcher import MailCatcher
from ticketing_devtools.provision import throwaway_databases
from ticketing_devtools.stack import Stack


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class StackSettings:
    # Unique per run, so concurrent runs on one server keep to their own databases.
    db_prefix: str = field(default_factory=lambda: _unique("ticketing_systest"))
    rate_limit_prefix: str = field(default_factory=lambda: f"systest:{uuid.uuid4().hex}")
    # Extra environment for every process; wins over the defaults below.
    env: dict[str, str] = field(default_factory=dict)

    def process_env(self, broker_url: str) -> dict[str, str]:
        return {
            "RABBITMQ_URL": broker_url,
            # Tests sign up many users from one address; the limits have tests of their own.
            "RATE_LIMIT_SIGNUP": "1000/min",
            "RATE_LIMIT_SIGNIN": "1000/min",
            "RATE_LIMIT_EMAIL": "1000/min",
            # ... and retry a payment until payments_svc knows its order.
            "RATE_LIMIT_PAYMENTS": "1000/min",
            "RATE_LIMIT_PAYMENT_CHECKS": "1000/min",
            "RATE_LIMIT_KEY_PREFIX": self.rate_limit_prefix,
            "WEB_CONCURRENCY": "2",
            # Retries a test can wait out, instead of the production 1 s / 5 s / 30 s.
            "EVENTS_RETRY_DELAYS_MS": "200,500,1000",
            **self.env,
        }


def pytest_broker_password(user: str) -> str:
    """A service's broker user keeps its password of this checkout in the tests: users
    are the broker's, and a `make up` beside the tests connects with it."""
    return ensure_dev_secrets().broker_password(user)


@contextmanager
def running_stack(
    settings: StackSettings,
    *,
    broker_url: str,
    directory: Path,
    env_overrides: dict[str, dict[str, str]] | None = None,
    failures: list[str] | None = None,
) -> Iterator[Stack]:
    """The whole system until the block ends; then stopped, its databases dropped, and
    checked that no process outlived it. A start-up failure fails the test with the log."""
    log_path = directory / "stack.log"
    with throwaway_databases(settings.db_prefix), log_path.open("w") as log:
        running = Stack(
            gateway_port=0,
            db_prefix=settings.db_prefix,
            log=log,
            run_dir=directory / "run",
            extra_env=settings.process_env(broker_url),
            env_overrides=env_overrides,
        )
        running.log_path = log_path  # type: ignore[attr-defined]
        try:
            running.start()
        except Exception:
            log.flush()
            failure = f"stack did not start:\n{log_path.read_text()[-6000:]}"
            if failures is not None:
                failures.append(failure)
            pytest.fail(failure)
        try:
            yield running
        finally:
            pids = [child.process.pid for child in running.supervisor.children]
            running.stop()
    for pid in pids:  # nothing outlives the stack
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, signal.SIG_DFL)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    """Override in a suite's conftest.py to change the stack's environment."""
    return StackSettings()


@pytest.fixture(scope="session")
def stack_vhost() -> Iterator[str]:
    """A vhost of the session's own, as RABBITMQ_URL's (admin) user."""
    with throwaway_vhost(rabbitmq_url(), "ticketing-systest") as vhost:
        yield broker_url(rabbitmq_url(), vhost=vhost)


# pytest sets a session fixture up again for every test that asks after a failure; a
# stack that cannot start would then be retried (a minute each) for every system test.
_START_FAILURES: list[str] = []


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, stack_vhost: str, stack_settings: StackSettings
) -> Iterator[Stack]:
    if _START_FAILURES:
        pytest.fail(f"the stack failed to start earlier in this session:\n{_START_FAILURES[0]}")
    with running_stack(
        stack_settings,
        broker_url=stack_vhost,
        directory=tmp_path_factory.mktemp("stack"),
        failures=_START_FAILURES,
    ) as running:
        yield running


@pytest.fixture
def mail_server(settings: object, tmp_path: Path) -> Iterator[MailCatcher]:
    """A real SMTP server (the mail catcher) the test's Django email goes to; its
    messages() are what it was sent."""
    catcher = MailCatcher(tmp_path / "mail", free_port()).start()
    # Django's test set-up swaps in its in-memory backend: back to SMTP, to the catcher.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # type: ignore[attr-defined]
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", catcher.port  # type: ignore[attr-defined]
    yield catcher
    catcher.stop()

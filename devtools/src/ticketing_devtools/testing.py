"""pytest plugin: the whole system running for a test session, started as `make up` does.

    def test_signup(stack):                         # every process, behind the gateway
        requests.post(f"{stack.url}/api/users/signup", json={...})

    @pytest.fixture(scope="session")                # in a suite's conftest.py: tune it
    def stack_settings():
        return StackSettings(env={"EXPIRATION_WINDOW_SECONDS": "15"})

The stack runs on throw-away databases (a prefix unique to the run), a throw-away
RabbitMQ vhost and free ports; it stops afterwards, drops what it made, and checks that
no process outlived it. Loaded in every suite through the `pytest11` entry point; it
costs nothing until a test asks for `stack`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from ticketing_devtools.catalog import DATABASE_SERVICES
from ticketing_devtools.provision import admin_url, drop_database
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
            "RATE_LIMIT_KEY_PREFIX": self.rate_limit_prefix,
            "WEB_CONCURRENCY": "2",
            # Retries a test can wait out, instead of the production 1 s / 5 s / 30 s.
            "EVENTS_RETRY_DELAYS_MS": "200,500,1000",
            **self.env,
        }


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    """Override in a suite's conftest.py to change the stack's environment."""
    return StackSettings()


@pytest.fixture(scope="session")
def stack_vhost() -> Iterator[str]:
    vhost = _unique("ticketing-systest")
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, stack_vhost: str, stack_settings: StackSettings
) -> Iterator[Stack]:
    log_path = tmp_path_factory.mktemp("stack") / "stack.log"
    with log_path.open("w") as log:
        running = Stack(
            gateway_port=0,
            db_prefix=stack_settings.db_prefix,
            log=log,
            run_dir=tmp_path_factory.mktemp("gateway"),
            extra_env=stack_settings.process_env(stack_vhost),
        )
        running.log_path = log_path  # type: ignore[attr-defined]
        try:
            running.start()
        except Exception:
            log.flush()
            pytest.fail(f"stack did not start:\n{log_path.read_text()[-6000:]}")
        yield running
        pids = [child.process.pid for child in running.supervisor.children]
        running.stop()
    for service in DATABASE_SERVICES:
        drop_database(admin_url(), database=service.database(stack_settings.db_prefix))
    for pid in pids:  # nothing outlives the stack
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, signal.SIG_DFL)

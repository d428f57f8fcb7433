"""One running system for the devtools suite: every service, worker and the gateway.

Started once per session as `make up` starts it, but on throw-away databases, a
throw-away RabbitMQ vhost and a free gateway port; stopped and cleaned up afterwards.
"""

import os
import signal
import subprocess
import uuid

import pytest

from tests import system
from tests.system import (
    DB_PREFIX,
    EXPIRATION_WINDOW_SECONDS,
    RATE_LIMIT_PREFIX,
    SIGNIN_LIMIT,
)
from ticketing_devtools.catalog import DATABASE_SERVICES
from ticketing_devtools.provision import admin_url, drop_database
from ticketing_devtools.stack import Stack


def _rabbitmqctl(*args):
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def stack_vhost():
    vhost = f"ticketing-systest-{uuid.uuid4().hex[:12]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def stack(tmp_path_factory, stack_vhost):
    log_path = tmp_path_factory.mktemp("stack") / "stack.log"
    with log_path.open("w") as log:
        running = Stack(
            gateway_port=0,
            db_prefix=DB_PREFIX,
            log=log,
            run_dir=tmp_path_factory.mktemp("gateway"),
            extra_env={
                "RABBITMQ_URL": stack_vhost,
                "RATE_LIMIT_SIGNIN": f"{SIGNIN_LIMIT}/min",
                "RATE_LIMIT_SIGNUP": "1000/min",
                "RATE_LIMIT_KEY_PREFIX": RATE_LIMIT_PREFIX,
                "WEB_CONCURRENCY": "2",
                "EVENTS_RETRY_DELAYS_MS": "200,500,1000",
                # Short enough for the expiry tests to wait out, long enough for the
                # other flows to finish well inside it.
                "EXPIRATION_WINDOW_SECONDS": str(EXPIRATION_WINDOW_SECONDS),
            },
        )
        try:
            running.start()
        except Exception:
            log.flush()
            pytest.fail(f"stack did not start:\n{log_path.read_text()[-6000:]}")
        running.log_path = log_path
        yield running
        pids = [child.process.pid for child in running.supervisor.children]
        running.stop()
    for service in DATABASE_SERVICES:
        drop_database(admin_url(), database=service.database(DB_PREFIX))
    for pid in pids:  # nothing outlives the stack
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, signal.SIG_DFL)


@pytest.fixture
def seller(stack):
    return system.user(stack, "seller")


@pytest.fixture
def buyer(stack):
    return system.user(stack, "buyer")

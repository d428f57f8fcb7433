"""The devtools suite's stack: `stack` from ticketing_devtools.testing, tuned for the
system tests here (a short expiry window, a small sign-in limit to hit)."""

import pytest

from tests import system
from tests.system import (
    DB_PREFIX,
    EXPIRATION_WINDOW_SECONDS,
    RATE_LIMIT_PREFIX,
    SIGNIN_LIMIT,
)
from ticketing_devtools import localstripe
from ticketing_devtools.chaos import TcpProxy
from ticketing_devtools.testing import StackSettings


@pytest.fixture(scope="session")
def stack_settings(stripe_relay):
    return StackSettings(
        db_prefix=DB_PREFIX,
        rate_limit_prefix=RATE_LIMIT_PREFIX,
        env={
            "RATE_LIMIT_SIGNIN": f"{SIGNIN_LIMIT}/min",
            # Short enough for the expiry tests to wait out, long enough for the
            # other flows to finish well inside it.
            "EXPIRATION_WINDOW_SECONDS": str(EXPIRATION_WINDOW_SECONDS),
            "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_relay.port}",
        },
    )


@pytest.fixture
def seller(stack):
    return system.user(stack, "seller")


@pytest.fixture
def buyer(stack):
    return system.user(stack, "buyer")


@pytest.fixture(scope="session")
def stripe_relay(tmp_path_factory):
    """The stack's localstripe behind a relay the payment tests can stall (hold/release)."""
    with localstripe.running(tmp_path_factory.mktemp("stripe") / "store.pickle") as base:
        port = int(base.rsplit(":", 1)[1])
        relay = TcpProxy("127.0.0.1", port).start()
        try:
            yield relay
        finally:
            relay.stop()

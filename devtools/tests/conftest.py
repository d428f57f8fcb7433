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
from ticketing_devtools.testing import StackSettings


@pytest.fixture(scope="session")
def stack_settings():
    return StackSettings(
        db_prefix=DB_PREFIX,
        rate_limit_prefix=RATE_LIMIT_PREFIX,
        env={
            "RATE_LIMIT_SIGNIN": f"{SIGNIN_LIMIT}/min",
            # Short enough for the expiry tests to wait out, long enough for the
            # other flows to finish well inside it.
            "EXPIRATION_WINDOW_SECONDS": str(EXPIRATION_WINDOW_SECONDS),
        },
    )


@pytest.fixture
def seller(stack):
    return system.user(stack, "seller")


@pytest.fixture
def buyer(stack):
    return system.user(stack, "buyer")

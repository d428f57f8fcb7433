import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared_lib.ratelimit import forget_outage
from shared_lib.redis_client import redis_client
from shared_lib.testing.processes import free_port


@pytest.fixture
def redis_down(settings: Any) -> Iterator[str]:
    """REDIS_URL points at a closed port for the test; the cached client is dropped around it."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_client.cache_clear()
    forget_outage()  # what an earlier outage counted in this process
    settings.REDIS_URL = url
    yield url
    redis_client.cache_clear()
    forget_outage()


@pytest.fixture
def celery_app_name() -> str:
    return "tests.celery_app"


@pytest.fixture
def demo_queues(rabbitmq_vhost: str) -> Iterator[None]:
    """The demo service's queues (main, wait, dead) declared and empty, before and after."""
    from tests.demo.bus import reset_demo_queues

    reset_demo_queues()
    yield
    reset_demo_queues()


@pytest.fixture
def event_logs(caplog: Any) -> Any:
    """caplog holding shared_lib.events' records from DEBUG up (batch sizes included)."""
    from tests.demo.bus import LOGGER

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    return caplog


@pytest.fixture
def tap(rabbitmq_vhost: str) -> Iterator[Any]:
    """A queue of the test's own bound to every subject: what reached the events exchange."""
    from tests.demo.bus import tap

    with tap("#") as bound:
        yield bound


@pytest.fixture
def event_worker(transactional_db, event_worker):
    """The plugin's worker factory on this suite's test database (committed rows only);
    transactional_db first, so the workers stop before the tables are flushed."""
    return event_worker

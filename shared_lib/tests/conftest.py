from collections.abc import Iterator
from typing import Any

import pytest

from shared_lib.redis_client import redis_client
from tests.support import closed_port


@pytest.fixture
def redis_down(settings: Any) -> Iterator[str]:
    """REDIS_URL points at a closed port for the test; the cached client is dropped around it."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    redis_client.cache_clear()
    settings.REDIS_URL = url
    yield url
    redis_client.cache_clear()


@pytest.fixture
def celery_app_name() -> str:
    return "tests.celery_app"

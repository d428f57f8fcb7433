"""One Redis connection pool per process, from REDIS_URL.

from shared_lib.redis_client import redis_client
redis_client().incr("ticketing:counter")
redis_client.cache_clear()   # after changing settings.REDIS_URL in a test
"""

from __future__ import annotations

from functools import cache

import redis
from django.conf import settings

# A slow Redis must not hang a request thread; callers decide what a failure means.
SOCKET_TIMEOUT_SECONDS = 2


@cache
def _client_for(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )


def redis_client() -> redis.Redis:
    return _client_for(settings.REDIS_URL)


redis_client.cache_clear = _client_for.cache_clear  # type: ignore[attr-defined]

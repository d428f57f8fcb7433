"""Rate limits whose counters live in Redis, so a limit holds across every replica.

    class SignupIpThrottle(RedisRateThrottle):
        scope, rate_setting = "signup-ip", "RATE_LIMIT_SIGNUP"
        def get_ident(self, request): return client_ip(request)

Rates use DRF's syntax ("20/min"). Each hit is one atomic Lua script over a sorted set:
a true sliding window, no read-modify-write race between replicas (DRF's own cache
throttle reads, then writes, and so lets concurrent requests through).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from shared_lib.redis_client import redis_client

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# KEYS[1] the window's key; ARGV: window length (ms), limit, a unique member.
# Redis's own clock is used so replicas with skewed clocks share one window.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


def parse_rate(rate: str) -> tuple[int, int]:
    """ "20/min" -> (20, 60): the number of requests and the window in seconds."""
    try:
        count, period = rate.split("/")
        limit = int(count)
        seconds = _PERIODS[period.strip()[0].lower()]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"Invalid rate {rate!r}: use DRF's syntax, e.g. '20/min'") from None
    if limit < 1:
        raise ValueError(f"Invalid rate {rate!r}: the count must be at least 1")
    return limit, seconds


def hit(key: str, *, limit: int, window_seconds: int) -> tuple[bool, float]:
    """Count one request against `key`: (allowed, seconds until the next one is)."""
    client = redis_client()
    allowed, wait_ms = client.eval(
        _SLIDING_WINDOW, 1, key, window_seconds * 1000, limit, uuid.uuid4().hex
    )
    return bool(allowed), max(0, int(wait_ms)) / 1000


class RedisRateThrottle(BaseThrottle):
    """A DRF throttle over `hit`; subclasses name the scope, rate setting and identity."""

    scope: str = ""
    rate_setting: str = ""

    def __init__(self) -> None:
        self._wait: float | None = None

    def get_ident(self, request: Request) -> str | None:  # type: ignore[override]
        """What to count by; None skips this throttle for the request."""
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        ident = self.get_ident(request)
        if not ident:
            return True
        limit, window = parse_rate(getattr(settings, self.rate_setting))
        key = f"{settings.RATE_LIMIT_KEY_PREFIX}:{self.scope}:{ident}"
        try:
            allowed, wait = hit(key, limit=limit, window_seconds=window)
        except redis.RedisError:
            # Failing open keeps sign-in available while Redis is down; /readyz reports
            # Redis, so the outage is visible rather than silently weakening the limit.
            logger.error("rate limit %s not enforced: Redis unavailable", self.scope, exc_info=True)
            return True
        self._wait = wait
        return allowed

    def wait(self) -> float | None:
        return self._wait

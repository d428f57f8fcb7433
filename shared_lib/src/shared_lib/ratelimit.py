"""Rate limits whose counters live in Redis, so a limit holds across every replica.

    class SignupIpThrottle(RedisRateThrottle):
        scope, rate_setting = "signup-ip", "RATE_LIMIT_SIGNUP"
        def get_ident(self, request): return client_ip(request)

Rates use DRF's syntax ("20/min"). Each hit is one atomic Lua script over a sorted set:
a true sliding window, no read-modify-write race between replicas (DRF's own cache
throttle reads, then writes, and so lets concurrent requests through).

Sign-ins (the API and every admin's password form) count twice: every attempt per client
IP (RATE_LIMIT_SIGNIN), and failed ones per account (RATE_LIMIT_EMAIL). An account's
attempt is counted when it starts and given back when it succeeds, so concurrent guesses
cannot slip past the limit, and the owner's own sign-ins never lock them out.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from shared_lib.http import client_ip
from shared_lib.redis_client import redis_client

logger = logging.getLogger(__name__)

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

SIGNIN_IP_SCOPE, SIGNIN_IP_RATE = "signin-ip", "RATE_LIMIT_SIGNIN"
SIGNIN_ACCOUNT_SCOPE, SIGNIN_ACCOUNT_RATE = "signin-email", "RATE_LIMIT_EMAIL"

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


def hit(
    key: str, *, limit: int, window_seconds: int, member: str | None = None
) -> tuple[bool, float]:
    """Count one request against `key`: (allowed, seconds until the next one is).

    `member` names the count, so that it can be given back (`Attempt.give_back`)."""
    client = redis_client()
    allowed, wait_ms = client.eval(
        _SLIDING_WINDOW, 1, key, window_seconds * 1000, limit, member or uuid.uuid4().hex
    )
    return bool(allowed), max(0, int(wait_ms)) / 1000


@dataclass(slots=True)
class _Window:
    limit: int
    seconds: int
    hits: deque[tuple[float, str]]  # (when, member), oldest first

    def expire(self, now: float) -> None:
        while self.hits and self.hits[0][0] <= now - self.seconds:
            self.hits.popleft()


class LocalWindows:
    """Sliding windows in this process's memory: the limits while Redis is down. Each
    process counts alone, so a limit then holds once per web process (the shared limit
    times the processes serving) rather than not at all.

    Memory is bounded: each scope keeps at most MAX_KEYS identities. Past that, the one
    least recently seen is forgotten, but never one that is refusing: an attacker who
    floods a scope with identities (junk emails cost nothing) frees no one's full window,
    and a scope flooded with full windows, which takes every identity's limit in
    requests, forgets the oldest. Each keeps at most its limit's hits."""

    MAX_KEYS = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scopes: dict[str, OrderedDict[str, _Window]] = {}

    def hit(
        self, scope: str, key: str, *, limit: int, window_seconds: int, member: str
    ) -> tuple[bool, float]:
        """As `hit`, on this process's clock."""
        now = time.monotonic()
        with self._lock:
            windows = self._scopes.setdefault(scope, OrderedDict())
            window = windows.pop(key, None) or _Window(limit, window_seconds, deque())
            window.expire(now)
            allowed = len(window.hits) < limit
            if allowed:
                window.hits.append((now, member))
            wait = 0.0 if allowed else window.hits[0][0] + window_seconds - now
            windows[key] = window  # the most recently seen last
            if len(windows) > self.MAX_KEYS:
                self._forget_one(windows, now, keep=key)
        return allowed, max(0.0, wait)

    @staticmethod
    def _forget_one(windows: OrderedDict[str, _Window], now: float, keep: str) -> None:
        for key, window in windows.items():  # least recently seen first
            window.expire(now)
            if key != keep and len(window.hits) < window.limit:
                del windows[key]
                return
        windows.popitem(last=False)

    def give_back(self, scope: str, key: str, member: str) -> None:
        with self._lock:
            window = self._scopes.get(scope, {}).get(key)
            if window is not None:
                window.hits = deque(hit for hit in window.hits if hit[1] != member)

    def clear(self) -> None:
        with self._lock:
            self._scopes.clear()


local_windows = LocalWindows()

# How long the limits leave Redis alone after it failed them.
REDIS_RETRY_SECONDS = 5.0


class _Breaker:
    """Open for REDIS_RETRY_SECONDS after a trip (this process's clock)."""

    def __init__(self) -> None:
        self._until = 0.0

    def open(self) -> bool:
        return time.monotonic() < self._until

    def trip(self) -> None:
        self._until = time.monotonic() + REDIS_RETRY_SECONDS

    def close(self) -> None:
        self._until = 0.0


_redis_breaker = _Breaker()


def forget_outage() -> None:
    """Back to asking Redis at once, nothing counted in memory (tests' isolation)."""
    _redis_breaker.close()
    local_windows.clear()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request counted against a limit, or refused for `wait` seconds."""

    allowed: bool
    wait: float | None = None  # None: nothing was counted (no identity)
    key: str = ""
    member: str = ""
    local_scope: str = ""  # counted in this process's memory, in this scope: Redis was down

    def give_back(self) -> None:
        """Uncount it: the limit is on failures, and this one succeeded."""
        if not (self.allowed and self.key):
            return
        if self.local_scope:
            local_windows.give_back(self.local_scope, self.key, self.member)
            return
        try:
            redis_client().zrem(self.key, self.member)
        except redis.RedisError:
            logger.error("rate limit count not given back: Redis unavailable", exc_info=True)


def attempt(*, scope: str, ident: str | None, rate_setting: str) -> Attempt:
    """Count one request by `ident` in `scope` at the rate the setting names.

    While Redis is down each web process counts alone (`local_windows`): ordering and
    paying stay available (auth_svc's /readyz reports Redis, so its pods leave the load
    balancer; the admins' password forms stay open), and a limit still holds, once per
    process rather than once for all: a guesser or a card tester is slowed, not let
    through. After a failure Redis is left alone for REDIS_RETRY_SECONDS, so a Redis
    that does not answer (rather than refusing) costs one request its timeout, not
    every request. Every request counted in memory logs an ERROR line."""
    if not ident:
        return Attempt(allowed=True)
    limit, window = parse_rate(getattr(settings, rate_setting))
    key = f"{settings.RATE_LIMIT_KEY_PREFIX}:{scope}:{ident}"
    member = uuid.uuid4().hex
    if not _redis_breaker.open():
        try:
            allowed, wait = hit(key, limit=limit, window_seconds=window, member=member)
        except redis.RedisError:
            _redis_breaker.trip()
            logger.error("rate limit %s: Redis unavailable", scope, exc_info=True)
        else:
            return Attempt(allowed=allowed, wait=wait, key=key, member=member)
    logger.error("rate limit %s counted in this process only: Redis unavailable", scope)
    allowed, wait = local_windows.hit(scope, key, limit=limit, window_seconds=window, member=member)
    return Attempt(allowed=allowed, wait=wait, key=key, member=member, local_scope=scope)


def account_ident(username: object) -> str | None:
    """The per-account identity of a sign-in: the address as the user table compares it."""
    if not isinstance(username, str) or not username.strip():
        return None
    return username.strip().lower()


def sign_in_ip_attempt(request: HttpRequest) -> Attempt:
    return attempt(scope=SIGNIN_IP_SCOPE, ident=client_ip(request), rate_setting=SIGNIN_IP_RATE)


def sign_in_account_attempt(username: object) -> Attempt:
    """Give it back when the sign-in succeeds: only failures count per account."""
    return attempt(
        scope=SIGNIN_ACCOUNT_SCOPE, ident=account_ident(username), rate_setting=SIGNIN_ACCOUNT_RATE
    )


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
        counted = attempt(
            scope=self.scope, ident=self.get_ident(request), rate_setting=self.rate_setting
        )
        self._wait = counted.wait
        return counted.allowed

    def wait(self) -> float | None:
        return self._wait


class PerUserThrottle(RedisRateThrottle):
    """Counted per signed-in user. An anonymous request is not counted: it is refused
    (401) before any throttle is asked."""

    def get_ident(self, request: Request) -> str | None:  # type: ignore[override]
        return request.user.id if request.user.is_authenticated else None

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared_lib import ratelimit
from shared_lib.ratelimit import LocalWindows, RedisRateThrottle, attempt, hit, parse_rate
from shared_lib.redis_client import redis_client
from shared_lib.testing.processes import free_port

TOO_MANY = {"errors": [{"message": "Too many requests"}]}


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ("20/min", (20, 60)),
        ("30/m", (30, 60)),
        ("1/s", (1, 1)),
        ("5/sec", (5, 1)),
        ("100/hour", (100, 3600)),
        ("2/h", (2, 3600)),
        ("7/day", (7, 86400)),
        (" 4 / Min ", (4, 60)),
    ],
)
def test_parse_rate(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize(
    ("rate", "reason"),
    [
        ("20", "use DRF's syntax"),
        ("20/", "use DRF's syntax"),
        ("/min", "use DRF's syntax"),
        ("abc/min", "use DRF's syntax"),
        ("2.5/min", "use DRF's syntax"),
        ("20/week", "use DRF's syntax"),
        ("1/2/min", "use DRF's syntax"),
        ("", "use DRF's syntax"),
        ("0/min", "the count must be at least 1"),
        ("-3/min", "the count must be at least 1"),
    ],
)
def test_parse_rate_refuses_bad_rates(rate, reason):
    with pytest.raises(ValueError, match=r"^Invalid rate ") as excinfo:
        parse_rate(rate)
    assert str(excinfo.value).startswith(f"Invalid rate {rate!r}: {reason}")


def test_hit_allows_exactly_the_limit_then_refuses_with_a_wait(redis_keys):
    key = f"{redis_keys}:login:alice"

    results = [hit(key, limit=3, window_seconds=60) for _ in range(5)]

    assert [allowed for allowed, _ in results] == [True, True, True, False, False]
    assert [wait for _, wait in results[:3]] == [0, 0, 0]
    for _, wait in results[3:]:
        assert 0 < wait <= 60


def test_refused_hits_are_not_counted_and_the_key_expires(redis_keys):
    key = f"{redis_keys}:login:bob"
    for _ in range(6):
        hit(key, limit=2, window_seconds=30)

    client = redis_client()
    assert client.zcard(key) == 2
    assert 0 < client.pttl(key) <= 30_000


def test_keys_count_separately(redis_keys):
    assert hit(f"{redis_keys}:a", limit=1, window_seconds=60)[0] is True
    assert hit(f"{redis_keys}:a", limit=1, window_seconds=60)[0] is False
    assert hit(f"{redis_keys}:b", limit=1, window_seconds=60)[0] is True


def test_the_window_slides(redis_keys):
    key = f"{redis_keys}:slide"
    assert hit(key, limit=1, window_seconds=1) == (True, 0)

    allowed, wait = hit(key, limit=1, window_seconds=1)
    assert allowed is False
    assert 0 < wait <= 1

    time.sleep(wait + 0.05)
    assert hit(key, limit=1, window_seconds=1)[0] is True


def test_concurrent_hits_never_exceed_the_limit(redis_keys):
    key = f"{redis_keys}:burst"
    start = threading.Barrier(20)

    def one_hit(_: int) -> bool:
        start.wait(timeout=10)
        return hit(key, limit=5, window_seconds=60)[0]

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one_hit, range(20)))

    assert results.count(True) == 5
    assert redis_client().zcard(key) == 5


def test_a_throttled_view_answers_429_with_retry_after(api_client, settings, redis_keys):
    settings.RATE_LIMIT_DEMO = "2/min"

    statuses = [api_client.get("/api/demo/throttled").status_code for _ in range(2)]
    response = api_client.get("/api/demo/throttled")

    assert statuses == [200, 200]
    assert response.status_code == 429
    assert response.json() == TOO_MANY
    assert 1 <= int(response["Retry-After"]) <= 60
    # Counted per client IP under the service's prefix and the throttle's scope.
    assert redis_client().zcard(f"{redis_keys}:demo-ip:127.0.0.1") == 2


def test_each_client_ip_has_its_own_budget(api_client, settings, redis_keys):
    settings.RATE_LIMIT_DEMO = "1/min"
    settings.TRUSTED_PROXIES = ["127.0.0.1/32"]

    first = api_client.get("/api/demo/throttled", HTTP_X_FORWARDED_FOR="203.0.113.1")
    again = api_client.get("/api/demo/throttled", HTTP_X_FORWARDED_FOR="203.0.113.1")
    other = api_client.get("/api/demo/throttled", HTTP_X_FORWARDED_FOR="203.0.113.2")
    direct = api_client.get("/api/demo/throttled", REMOTE_ADDR="198.51.100.4")

    assert [first.status_code, again.status_code, other.status_code, direct.status_code] == [
        200,
        429,
        200,
        200,
    ]


def test_while_redis_is_down_the_throttle_counts_in_the_process(
    api_client, settings, redis_down, caplog
):
    settings.RATE_LIMIT_DEMO = "1/min"

    with caplog.at_level(logging.ERROR, logger="shared_lib.ratelimit"):
        responses = [api_client.get("/api/demo/throttled") for _ in range(3)]
        other = api_client.get("/api/demo/throttled", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert [r.status_code for r in responses] == [200, 429, 429]
    assert 1 <= int(responses[1]["Retry-After"]) <= 60
    assert other.status_code == 200  # each identity its own window, as in Redis
    messages = [r.getMessage() for r in caplog.records if r.name == "shared_lib.ratelimit"]
    assert messages == [
        "rate limit demo-ip: Redis unavailable",  # asked once, then left alone a while
        *["rate limit demo-ip counted in this process only: Redis unavailable"] * 4,
    ]


def test_redis_is_left_alone_a_while_after_it_failed_then_counts_again(
    api_client, settings, redis_keys, monkeypatch
):
    # A Redis that times out rather than refusing would cost every request its timeout.
    monkeypatch.setattr(ratelimit, "REDIS_RETRY_SECONDS", 1.0)
    settings.RATE_LIMIT_DEMO = "1/min"
    working_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    redis_client.cache_clear()
    during = [api_client.get("/api/demo/throttled").status_code for _ in range(2)]

    settings.REDIS_URL = working_url
    redis_client.cache_clear()
    not_asked_yet = api_client.get("/api/demo/throttled").status_code
    time.sleep(1.1)
    after = [api_client.get("/api/demo/throttled").status_code for _ in range(2)]

    assert during == [200, 429]  # counted in this process
    assert not_asked_yet == 429  # still in memory: Redis, up again, would have let it pass
    assert after == [200, 429]  # Redis's own window, which never saw the first three
    [key] = redis_client().keys(f"{redis_keys}:*")
    assert redis_client().zcard(key) == 1


def test_while_redis_is_down_a_success_given_back_is_uncounted_in_the_process(settings, redis_down):
    settings.RATE_LIMIT_DEMO = "1/min"
    first = attempt(scope="demo-account", ident="a@example.com", rate_setting="RATE_LIMIT_DEMO")
    first.give_back()  # the sign-in succeeded: only failures count per account

    second = attempt(scope="demo-account", ident="a@example.com", rate_setting="RATE_LIMIT_DEMO")
    third = attempt(scope="demo-account", ident="a@example.com", rate_setting="RATE_LIMIT_DEMO")

    assert (first.allowed, first.local_scope) == (True, "demo-account")
    assert (second.allowed, third.allowed) == (True, False)


def _hits(windows, key, count, *, scope="s", limit=2):
    return [
        windows.hit(scope, key, limit=limit, window_seconds=60, member=f"{key}{n}")[0]
        for n in range(count)
    ]


def test_a_flood_of_identities_frees_no_full_window_in_the_process(monkeypatch):
    # Junk identities (emails cost nothing) must not push out a window that is refusing.
    monkeypatch.setattr(LocalWindows, "MAX_KEYS", 3)
    windows = LocalWindows()
    assert _hits(windows, "victim", 3) == [True, True, False]
    assert _hits(windows, "half", 1) == [True]

    for junk in range(10):
        assert _hits(windows, f"junk{junk}", 1) == [True]

    assert _hits(windows, "victim", 1) == [False]  # kept: it was refusing
    assert _hits(windows, "half", 2) == [True, True]  # forgotten: it was not
    assert _hits(windows, "victim", 1, scope="other") == [True]  # scopes apart


def test_a_scope_full_of_refusing_windows_forgets_the_oldest(monkeypatch):
    monkeypatch.setattr(LocalWindows, "MAX_KEYS", 2)
    windows = LocalWindows()
    for key in ("a", "b", "c"):
        assert _hits(windows, key, 3) == [True, True, False]

    assert _hits(windows, "a", 1) == [True]  # forgotten first: memory stays bounded
    assert _hits(windows, "c", 1) == [False]


class AnonymousOnlyThrottle(RedisRateThrottle):
    scope, rate_setting = "anon", "RATE_LIMIT_DEMO"

    def get_ident(self, request):
        return None


def test_a_throttle_without_an_identity_allows_and_counts_nothing(settings, redis_keys):
    settings.RATE_LIMIT_DEMO = "1/min"
    throttle = AnonymousOnlyThrottle()

    assert [throttle.allow_request(None, None) for _ in range(3)] == [True, True, True]
    assert throttle.wait() is None
    assert list(redis_client().scan_iter(f"{redis_keys}:*")) == []

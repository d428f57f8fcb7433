import logging

import pytest
import redis

from shared_lib.health import check_redis, run_checks

DATABASE = "shared_lib.health.check_database"
REDIS = "shared_lib.health.check_redis"
FAILING = "tests.demo.checks.failing_check"
PASSING = "tests.demo.checks.passing_check"
# kubelet probes use the pod IP as Host, which ALLOWED_HOSTS does not list.
POD_IP = "10.244.1.17:8000"


@pytest.mark.parametrize("path", ["/healthz", "/healthz/"])
def test_liveness_is_ok_for_any_host(client, path):
    response = client.get(path, HTTP_HOST=POD_IP)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_liveness_runs_no_checks(client, settings):
    # No database access is allowed in this test: liveness must not need one.
    settings.HEALTH_CHECKS = {"queue": FAILING, "database": DATABASE}

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_is_ok_when_every_check_passes(client, settings):
    settings.HEALTH_CHECKS = {"database": DATABASE, "redis": REDIS, "extra": PASSING}

    response = client.get("/readyz", HTTP_HOST=POD_IP)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok", "extra": "ok"},
    }


@pytest.mark.django_db
def test_readiness_is_503_naming_the_failed_check(client, settings, caplog):
    settings.HEALTH_CHECKS = {"database": DATABASE, "queue": FAILING}

    with caplog.at_level(logging.WARNING, logger="shared_lib.health"):
        response = client.get("/readyz/", HTTP_HOST=POD_IP)

    assert response.status_code == 503
    assert response.json() == {
        "errors": [{"message": "Not ready: queue"}],
        "checks": {"database": "ok", "queue": "error"},
    }
    assert b"queue unreachable" not in response.content
    [record] = [r for r in caplog.records if r.name == "shared_lib.health"]
    assert record.getMessage() == "readiness check queue failed"
    assert repr(record.exc_info[1]) == "RuntimeError('queue unreachable')"


@pytest.mark.django_db
def test_readiness_names_every_failed_check(client, settings, redis_down):
    settings.HEALTH_CHECKS = {"queue": FAILING, "database": DATABASE, "redis": REDIS}

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "errors": [{"message": "Not ready: queue, redis"}],
        "checks": {"queue": "error", "database": "ok", "redis": "error"},
    }


def test_check_redis_fails_when_redis_is_unreachable(redis_down):
    with pytest.raises(redis.ConnectionError):
        check_redis()


def test_check_redis_passes_against_the_real_redis():
    assert check_redis() is None


def test_an_unimportable_check_is_reported_not_raised(settings):
    settings.HEALTH_CHECKS = {"ghost": "tests.demo.checks.no_such_check"}

    assert run_checks() == {"ghost": "error"}

"""The whole local system as `make up` runs it: gunicorn per service behind nginx."""

import pytest
import redis
import requests

from tests.system import RATE_LIMIT_PREFIX, SIGNIN_LIMIT
from ticketing_devtools.backing import redis_url
from ticketing_devtools.catalog import WEB_SERVICES


def test_a_newcomer_signs_up_through_the_gateway(stack):
    session = requests.Session()

    created = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": "Newcomer@Example.com", "password": "a-long-secret-phrase"},
        timeout=10,
    )
    current = session.get(f"{stack.url}/api/users/currentuser", timeout=10)

    assert created.status_code == 201
    assert created.json()["email"] == "newcomer@example.com"
    cookie = next(c for c in session.cookies if c.name == "session")
    assert cookie.secure is False  # local http; production cookies are Secure
    assert current.status_code == 200
    assert current.json()["currentUser"]["id"] == created.json()["id"]


def test_unknown_and_lookalike_api_paths_are_json_404s(stack):
    for path in ("/api/usersfoo", "/api/users/nope", "/api/nothing"):
        response = requests.get(f"{stack.url}{path}", timeout=10, allow_redirects=False)
        assert response.status_code == 404, path
        assert response.json() == {"errors": [{"message": "Not Found"}]}, path


def test_no_redirect_for_a_missing_trailing_slash(stack):
    response = requests.get(f"{stack.url}/api/users/currentuser", timeout=10, allow_redirects=False)

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


def test_admin_docs_and_static_files_are_reachable_through_the_gateway(stack):
    login = requests.get(f"{stack.url}/admin/auth/login/", timeout=10)
    docs = requests.get(f"{stack.url}/api/users/docs/", timeout=10)
    css = requests.get(f"{stack.url}/static/auth/admin/css/base.css", timeout=10)

    assert login.status_code == 200
    assert "Ticketing auth admin" in login.text
    assert docs.status_code == 200
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


@pytest.fixture
def fresh_rate_limits():
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(f"{RATE_LIMIT_PREFIX}:*"))
    if keys:
        client.delete(*keys)


def test_a_spoofed_forwarded_address_does_not_escape_the_rate_limit(stack, fresh_rate_limits):
    url = f"{stack.url}/api/users/signin"
    statuses = []
    for index in range(SIGNIN_LIMIT + 2):
        response = requests.post(
            url,
            json={"email": f"spoof{index}@example.com", "password": "a-long-secret-phrase"},
            headers={"X-Forwarded-For": f"203.0.113.{index}"},
            timeout=10,
        )
        statuses.append(response.status_code)

    assert statuses == [400] * SIGNIN_LIMIT + [429, 429]


def test_an_oversized_body_is_refused_at_the_gateway(stack):
    response = requests.post(
        f"{stack.url}/api/users/signin",
        data=b"x" * (1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 413
    assert response.json() == {"errors": [{"message": "Request body too large"}]}


def test_services_report_ready_directly(stack):
    for service in WEB_SERVICES:
        ready = requests.get(f"{stack.service_url(service.name)}/readyz", timeout=10)
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"

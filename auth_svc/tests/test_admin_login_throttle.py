"""Django's admin password form goes through the same Redis limits as the sign-in API: per
client IP (every attempt) and per account (failed attempts only), shared with the API."""

import pytest
from django.test import Client

from shared_lib.admin_sso import SIGN_IN_THROTTLED
from tests import hashers
from users.models import User

pytestmark = pytest.mark.django_db

LOGIN = "/admin/auth/login/?next=/admin/auth/"
PASSWORD = "root long password"
SESSION = "auth_admin_session"


@pytest.fixture(autouse=True)
def counting_hasher(settings):
    settings.PASSWORD_HASHERS = ["tests.hashers.CountingArgon2PasswordHasher"]
    hashers.checks.clear()
    return hashers.checks


@pytest.fixture
def root():
    return User.objects.create_superuser("root@example.com", PASSWORD)


def log_in(client: Client, password: str, username: str = "root@example.com", **headers):
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def assert_refused(response) -> None:
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    message = SIGN_IN_THROTTLED.format(seconds=response["Retry-After"])
    assert f'<p class="errornote" role="alert">{message}</p>' in response.content.decode()
    assert SESSION not in response.cookies
    assert response.context["user"].is_authenticated is False


def test_the_admin_form_is_limited_per_client_ip(client, root, settings, counting_hasher):
    settings.RATE_LIMIT_SIGNIN = "2/min"

    failures = [log_in(client, f"wrong {i} password").status_code for i in range(2)]
    checks_before = len(counting_hasher)
    refused = log_in(client, PASSWORD)  # even the right password: it is not checked

    assert failures == [200, 200]
    assert_refused(refused)
    assert len(counting_hasher) == checks_before  # the password check did not run
    root.refresh_from_db()
    assert root.last_login is None
    # Another client address is not limited by this one.
    other = log_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert other.status_code == 302


def test_failed_admin_logins_count_per_account_across_addresses(root, settings, counting_hasher):
    settings.RATE_LIMIT_EMAIL = "2/min"

    failures = [
        log_in(Client(), "wrong password", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i in range(2)
    ]
    checks_before = len(counting_hasher)
    refused = log_in(Client(), PASSWORD, username="ROOT@example.com ", REMOTE_ADDR="198.51.100.7")

    assert failures == [200, 200]
    assert_refused(refused)
    assert len(counting_hasher) == checks_before


def test_successful_admin_logins_do_not_count(root, settings):
    settings.RATE_LIMIT_EMAIL = "2/min"

    statuses = [
        log_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i in range(4)
    ]

    assert statuses == [302] * 4


def test_the_admin_form_and_the_api_share_the_per_account_count(api_client, root, settings):
    settings.RATE_LIMIT_EMAIL = "2/min"

    admin = log_in(Client(), "wrong password", HTTP_X_FORWARDED_FOR="203.0.113.1")
    api = api_client.post(
        "/api/users/signin",
        {"email": "root@example.com", "password": "wrong password"},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.2",
    )
    refused_in_admin = log_in(Client(), PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.3")
    refused_in_api = api_client.post(
        "/api/users/signin",
        {"email": "root@example.com", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.4",
    )

    assert (admin.status_code, api.status_code) == (200, 400)
    assert_refused(refused_in_admin)
    assert refused_in_api.status_code == 429


def test_viewing_the_admin_form_is_not_an_attempt(client, settings):
    settings.RATE_LIMIT_SIGNIN = "1/min"

    pages = [client.get(LOGIN).status_code for _ in range(3)]

    assert pages == [200, 200, 200]

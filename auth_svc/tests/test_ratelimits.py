import pytest

from shared_lib.errors import TOO_MANY_REQUESTS
from users.models import User

pytestmark = pytest.mark.django_db

LIMITED = {"errors": [{"message": TOO_MANY_REQUESTS}]}


def _signup(client, email, **headers):
    body = {"email": email, "password": "correct horse battery"}
    return client.post("/api/users/signup", body, format="json", **headers)


def _signin(client, email, **headers):
    body = {"email": email, "password": "wrong horse battery"}
    return client.post("/api/users/signin", body, format="json", **headers)


def test_signup_is_limited_per_client_ip(api_client, settings):
    settings.RATE_LIMIT_SIGNUP = "3/min"

    statuses = [_signup(api_client, f"u{i}@example.com").status_code for i in range(3)]
    refused = _signup(api_client, "u3@example.com")

    assert statuses == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json() == LIMITED
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert not User.objects.filter(email="u3@example.com").exists()


def test_the_gateway_forwarded_address_is_the_client_ip(api_client, settings):
    # The test client's peer is 127.0.0.1, the trusted gateway: its X-Forwarded-For counts.
    settings.RATE_LIMIT_SIGNUP = "1/min"

    first = _signup(api_client, "a@example.com", HTTP_X_FORWARDED_FOR="203.0.113.7")
    other_client = _signup(api_client, "b@example.com", HTTP_X_FORWARDED_FOR="203.0.113.8")
    same_client = _signup(api_client, "c@example.com", HTTP_X_FORWARDED_FOR="203.0.113.7")

    assert (first.status_code, other_client.status_code, same_client.status_code) == (201, 201, 429)


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(api_client, settings):
    settings.RATE_LIMIT_SIGNUP = "1/min"
    untrusted = {"REMOTE_ADDR": "198.51.100.20"}

    first = _signup(api_client, "a@example.com", HTTP_X_FORWARDED_FOR="203.0.113.1", **untrusted)
    spoofed = _signup(api_client, "b@example.com", HTTP_X_FORWARDED_FOR="203.0.113.2", **untrusted)

    assert (first.status_code, spoofed.status_code) == (201, 429)


def test_signin_is_limited_per_email_across_addresses(api_client, settings):
    settings.RATE_LIMIT_EMAIL = "2/min"

    attempts = [
        _signin(api_client, "victim@example.com", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
        for i in range(2)
    ]
    refused = _signin(api_client, "VICTIM@example.com", HTTP_X_FORWARDED_FOR="203.0.113.99")
    other_account = _signin(api_client, "other@example.com", HTTP_X_FORWARDED_FOR="203.0.113.99")

    assert [a.status_code for a in attempts] == [400, 400]
    assert refused.status_code == 429
    assert refused.json() == LIMITED
    assert other_account.status_code == 400


def test_signin_is_limited_per_client_ip(api_client, settings):
    settings.RATE_LIMIT_SIGNIN = "2/min"

    statuses = [_signin(api_client, f"x{i}@example.com").status_code for i in range(3)]

    assert statuses == [400, 400, 429]


# --- failed sign-ins per email: only failures count ----------------------------------

PASSWORD = "correct horse battery"


def _signin_with(client, email, password, **headers):
    body = {"email": email, "password": password}
    return client.post("/api/users/signin", body, format="json", **headers)


def test_successful_sign_ins_do_not_count_against_the_email(api_client, settings):
    settings.RATE_LIMIT_EMAIL = "2/min"
    _signup(api_client, "victim@example.com")

    successes = [
        _signin_with(api_client, "victim@example.com", PASSWORD).status_code for _ in range(5)
    ]

    assert successes == [200] * 5


def test_failed_sign_ins_count_and_a_success_between_them_does_not(api_client, settings):
    settings.RATE_LIMIT_EMAIL = "3/min"
    _signup(api_client, "victim@example.com")

    statuses = [
        _signin_with(api_client, "victim@example.com", password).status_code
        for password in ("wrong one here", "wrong two here", PASSWORD, "wrong three here")
    ]
    refused = _signin_with(api_client, "victim@example.com", PASSWORD)

    assert statuses == [400, 400, 200, 400]
    assert refused.status_code == 429
    assert refused.json() == LIMITED
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert "session" not in refused.cookies

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

import time

import pytest

from shared_lib.auth import SESSION_COOKIE, verify_session_token
from shared_lib.errors import BODY_TOO_LARGE, MALFORMED_JSON, UNSUPPORTED_MEDIA_TYPE
from shared_lib.testing.api import (
    TOKEN_CARRIERS,
    assert_admin_sends_anonymous_to_sign_in,
    assert_method_not_allowed,
    assert_unknown_route_is_json_404,
    carry_token,
    errors,
)
from shared_lib.testing.tokens import ATTACKS
from users import services
from users.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


# --- sign up -------------------------------------------------------------------------


def test_signup_creates_the_user_and_signs_them_in(signup, settings):
    response = signup(email="New.User@Example.com")

    assert response.status_code == 201
    user = User.objects.get()
    assert response.json() == {"id": str(user.id), "email": "new.user@example.com"}
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["max-age"] == settings.SESSION_TTL_SECONDS
    session = verify_session_token(cookie.value)
    assert (session.id, session.email) == (str(user.id), "new.user@example.com")
    assert session.exp - session.iat == settings.SESSION_TTL_SECONDS


@pytest.mark.parametrize("secure", [True, False])
def test_session_cookie_is_secure_unless_local_development_says_otherwise(signup, settings, secure):
    settings.SESSION_COOKIE_SECURE = secure

    response = signup()

    assert bool(response.cookies[SESSION_COOKIE]["secure"]) is secure


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"email": "nope", "password": PASSWORD}, [(services.EMAIL_INVALID, "email")]),
        ({"password": PASSWORD}, [(services.EMAIL_INVALID, "email")]),
        ({"email": "a@example.com", "password": "short"}, [(services.PASSWORD_LENGTH, "password")]),
        (
            {"email": "a@example.com", "password": "p" * 129},
            [(services.PASSWORD_LENGTH, "password")],
        ),
        ({"email": "a@example.com"}, [(services.PASSWORD_LENGTH, "password")]),
        (
            {"email": "a@example.com", "password": "password1"},
            [(services.PASSWORD_COMMON, "password")],
        ),
        (
            {"email": "", "password": ""},
            [(services.EMAIL_INVALID, "email"), (services.PASSWORD_LENGTH, "password")],
        ),
        # Values that are not strings are never turned into one.
        ({"email": ["a@example.com"], "password": PASSWORD}, [(services.EMAIL_INVALID, "email")]),
        (
            {"email": "a@example.com", "password": 12345678},
            [(services.PASSWORD_LENGTH, "password")],
        ),
        ({"email": "a@example.com", "password": None}, [(services.PASSWORD_LENGTH, "password")]),
        (
            ["a@example.com", PASSWORD],
            [(services.EMAIL_INVALID, "email"), (services.PASSWORD_LENGTH, "password")],
        ),
    ],
)
def test_signup_rejects_invalid_input_and_creates_nothing(api_client, body, expected):
    response = api_client.post("/api/users/signup", body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(*expected)
    assert SESSION_COOKIE not in response.cookies
    assert User.objects.count() == 0


def test_signup_with_an_email_in_use_in_another_case(signup):
    assert signup(email="taken@example.com").status_code == 201

    response = signup(email="TAKEN@example.com", password="another long secret")

    assert response.status_code == 400
    assert response.json() == errors((services.EMAIL_IN_USE, "email"))
    assert SESSION_COOKIE not in response.cookies
    assert User.objects.count() == 1


def test_signup_never_trims_the_password(signup, api_client):
    signup(email="spaces@example.com", password="  padded passphrase  ")

    trimmed = api_client.post(
        "/api/users/signin",
        {"email": "spaces@example.com", "password": "padded passphrase"},
        format="json",
    )
    exact = api_client.post(
        "/api/users/signin",
        {"email": "spaces@example.com", "password": "  padded passphrase  "},
        format="json",
    )

    assert trimmed.status_code == 400
    assert exact.status_code == 200


# --- sign in -------------------------------------------------------------------------


def test_signin_returns_the_user_and_a_session(signup, api_client):
    user_id = signup(email="me@example.com").json()["id"]

    response = api_client.post(
        "/api/users/signin", {"email": " ME@example.com", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"id": user_id, "email": "me@example.com"}
    assert verify_session_token(response.cookies[SESSION_COOKIE].value).id == user_id


@pytest.mark.parametrize(
    ("email", "password"),
    [("me@example.com", "wrong horse battery"), ("stranger@example.com", PASSWORD)],
)
def test_signin_failure_says_only_invalid_credentials(signup, api_client, email, password):
    signup(email="me@example.com")

    response = api_client.post(
        "/api/users/signin", {"email": email, "password": password}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == errors((services.INVALID_CREDENTIALS,))
    assert SESSION_COOKIE not in response.cookies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"email": "bad", "password": PASSWORD}, (services.EMAIL_INVALID, "email")),
        ({"email": "me@example.com", "password": ""}, (services.PASSWORD_REQUIRED, "password")),
        ({"email": "me@example.com"}, (services.PASSWORD_REQUIRED, "password")),
        (
            {"email": "me@example.com", "password": 12345678},
            (services.PASSWORD_REQUIRED, "password"),
        ),
        ({"email": 7, "password": PASSWORD}, (services.EMAIL_INVALID, "email")),
    ],
)
def test_signin_input_errors(api_client, body, expected):
    response = api_client.post("/api/users/signin", body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(expected)


# --- sign out and current user -------------------------------------------------------


def test_signout_clears_the_cookie_and_currentuser_is_null(signup, api_client):
    signup()
    assert api_client.get("/api/users/currentuser").json()["currentUser"] is not None

    response = api_client.post("/api/users/signout")

    assert response.status_code == 200
    assert response.json() == {}
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie.value == ""
    assert cookie["max-age"] == 0
    assert api_client.get("/api/users/currentuser").json() == {"currentUser": None}


def test_signout_refuses_a_cross_site_form_post(signup, api_client):
    signup()

    response = api_client.post(
        "/api/users/signout", "a=1", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert response.json() == errors((UNSUPPORTED_MEDIA_TYPE,))
    assert SESSION_COOKIE not in response.cookies


def test_currentuser_shows_the_session(signup, api_client):
    created = signup().json()

    response = api_client.get("/api/users/currentuser")

    assert response.status_code == 200
    current = response.json()["currentUser"]
    assert set(current) == {"id", "email", "iat", "exp"}
    assert (current["id"], current["email"]) == (created["id"], created["email"])
    assert current["exp"] > current["iat"] >= int(time.time()) - 5
    assert SESSION_COOKIE not in response.cookies  # young session: no renewal


def test_currentuser_is_null_for_anonymous_and_bad_tokens(api_client):
    assert api_client.get("/api/users/currentuser").json() == {"currentUser": None}

    api_client.cookies[SESSION_COOKIE] = "not-a-jwt"
    response = api_client.get("/api/users/currentuser", HTTP_AUTHORIZATION="Bearer also.not.jwt")

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


def test_currentuser_accepts_a_bearer_token(signup, api_client):
    response = signup()
    user_id = response.json()["id"]
    token = response.cookies[SESSION_COOKIE].value
    api_client.cookies.clear()

    response = api_client.get("/api/users/currentuser", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.json()["currentUser"]["id"] == user_id


def test_currentuser_renews_a_session_past_half_its_life(signup, api_client, settings):
    user_id = signup().json()["id"]
    old_iat = int(time.time()) - settings.SESSION_TTL_SECONDS // 2 - 5
    api_client.cookies[SESSION_COOKIE] = services.session_start(
        user=User.objects.get(id=user_id), now=old_iat
    )

    response = api_client.get("/api/users/currentuser")

    assert response.status_code == 200
    renewed = verify_session_token(response.cookies[SESSION_COOKIE].value)
    assert renewed.id == user_id
    assert renewed.iat > old_iat
    assert response.json()["currentUser"] == renewed.as_dict()
    assert response.cookies[SESSION_COOKIE]["max-age"] == settings.SESSION_TTL_SECONDS


def test_currentuser_ends_the_session_of_a_deleted_account(signup, api_client):
    signup()
    User.objects.all().delete()

    response = api_client.get("/api/users/currentuser")

    assert response.json() == {"currentUser": None}
    assert response.cookies[SESSION_COOKIE]["max-age"] == 0


def test_an_expired_session_is_anonymous(signup, api_client, settings):
    user_id = signup().json()["id"]
    api_client.cookies[SESSION_COOKIE] = services.session_start(
        user=User.objects.get(id=user_id), now=int(time.time()) - settings.SESSION_TTL_SECONDS - 1
    )

    assert api_client.get("/api/users/currentuser").json() == {"currentUser": None}


# --- protocol errors: always the one shape, never a 500 -----------------------------


def test_malformed_json_is_a_400(api_client):
    response = api_client.post(
        "/api/users/signup", '{"email": "a@example.com",', content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == errors((MALFORMED_JSON,))
    assert User.objects.count() == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_bodies_are_415(api_client, content_type):
    response = api_client.post(
        "/api/users/signup", "email=a@example.com&password=x", content_type=content_type
    )

    assert response.status_code == 415
    assert response.json() == errors((UNSUPPORTED_MEDIA_TYPE,))


def test_an_oversized_body_is_413(api_client, settings):
    body = (
        '{"email": "a@example.com", "password": "'
        + "p" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        + '"}'
    )

    response = api_client.post("/api/users/signup", body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == errors((BODY_TOO_LARGE,))
    assert User.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/users/nope", "/api/users/signup/extra", "/nothing"])
def test_unknown_routes_are_json_404(api_client, path):
    assert_unknown_route_is_json_404(api_client, path)


def test_routes_answer_with_and_without_trailing_slash(signup, api_client):
    response = api_client.get("/api/users/currentuser/")

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("get", "/api/users/signup", "POST, OPTIONS"),
        ("put", "/api/users/signin", "POST, OPTIONS"),
        ("post", "/api/users/currentuser", "GET, HEAD, OPTIONS"),
    ],
)
def test_wrong_method_is_405(api_client, method, path, allowed):
    assert_method_not_allowed(api_client, method, path, allowed)


# --- admin, docs, static -------------------------------------------------------------


def test_admin_lives_under_its_own_prefix(client):
    assert_admin_sends_anonymous_to_sign_in(client, "/admin/auth/")
    # The password form stays for local accounts.
    assert client.get("/admin/auth/login/").status_code == 200


def test_staff_can_sign_in_to_the_admin_with_any_email_case(client):
    User.objects.create_superuser("admin@example.com", PASSWORD)

    response = client.post(
        "/admin/auth/login/?next=/admin/auth/",
        {"username": "ADMIN@example.com", "password": PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/admin/auth/"
    assert response.cookies["auth_admin_session"]["path"] == "/admin/auth/"
    page = client.get("/admin/auth/users/user/")
    assert page.status_code == 200


def test_openapi_schema_and_docs(api_client):
    schema = api_client.get("/api/users/schema/", HTTP_ACCEPT="application/json")
    docs = api_client.get("/api/users/docs/")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {
        "/api/users/signup",
        "/api/users/signin",
        "/api/users/signout",
        "/api/users/currentuser",
    } <= set(paths)
    assert docs.status_code == 200
    assert b"/static/auth/drf_spectacular_sidecar/" in docs.content


def test_static_files_are_served_by_the_service_under_its_prefix(live_server):
    import requests

    response = requests.get(f"{live_server.url}/static/auth/admin/css/base.css", timeout=5)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("transport", TOKEN_CARRIERS)
def test_forged_tokens_are_anonymous_never_errors(api_client, session_keys, attack, transport):
    carry_token(api_client, ATTACKS[attack](session_keys), transport)

    response = api_client.get("/api/users/currentuser")

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}
    assert SESSION_COOKIE not in response.cookies  # nothing renewed from a forgery


@pytest.mark.parametrize(
    "body",
    [
        '{"email": "a@example.com", "password": "long enough \\ud800 secret"}',
        '{"email": "a\\u0000@example.com", "password": "long enough secret"}',
    ],
    ids=["lone-surrogate-password", "nul-in-email"],
)
def test_text_a_database_or_hasher_cannot_take_is_a_400_not_a_500(api_client, body):
    response = api_client.post("/api/users/signup", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == errors((MALFORMED_JSON,))
    assert User.objects.count() == 0

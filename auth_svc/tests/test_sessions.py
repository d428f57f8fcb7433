"""Sessions: each token names a session auth_svc keeps; sign-out, a password change and a
lost staff status end sessions at once here, and no session outlives its maximum age."""

import time
import uuid
from datetime import UTC, datetime
from io import StringIO

import jwt
import pytest
from django.test import Client
from rest_framework.test import APIClient

from shared_lib.auth import SESSION_COOKIE, mint_session_token, verify_session_token
from shared_lib.testing.tokens import claims, signed
from tests.factories import PASSWORD, make_user
from users import services
from users.models import User, UserSession

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase"
ADMIN = "/admin/auth/"


def sign_in(email: str = "buyer@example.com", password: str = PASSWORD) -> APIClient:
    client = APIClient()
    response = client.post(
        "/api/users/signin", {"email": email, "password": password}, format="json"
    )
    assert response.status_code == 200
    return client


def current(client) -> dict | None:
    response = client.get("/api/users/currentuser")
    assert response.status_code == 200
    return response.json()["currentUser"]


def with_cookie(token: str) -> APIClient:
    client = APIClient()
    client.cookies[SESSION_COOKIE] = token
    return client


def token_of(client) -> str:
    return client.cookies[SESSION_COOKIE].value


def past_half_life(settings) -> int:
    return int(time.time()) - settings.SESSION_TTL_SECONDS // 2 - 5


# --- every token names a session ----------------------------------------------------------


def test_sign_up_and_sign_in_each_start_a_session_named_in_the_token(api_client):
    signed_up = api_client.post(
        "/api/users/signup", {"email": "buyer@example.com", "password": PASSWORD}, format="json"
    )
    signed_in = sign_in()

    first = verify_session_token(signed_up.cookies[SESSION_COOKIE].value)
    second = verify_session_token(token_of(signed_in))
    rows = {str(row.id): row for row in UserSession.objects.all()}
    assert set(rows) == {first.sid, second.sid}
    assert first.sid != second.sid
    for session in (first, second):
        row = rows[session.sid]
        assert str(row.user_id) == session.id
        assert row.revoked_at is None
        assert abs(row.created_at.timestamp() - session.iat) <= 1


# --- sign-out ends that session, here, at once ------------------------------------------


def test_sign_out_ends_the_session_for_its_old_token_and_only_that_one(settings):
    make_user()
    laptop, phone = sign_in(), sign_in()
    laptop_token = token_of(laptop)
    laptop_session = verify_session_token(laptop_token)

    response = laptop.post("/api/users/signout")

    assert response.status_code == 200
    row = UserSession.objects.get(id=laptop_session.sid)
    assert row.revoked_at is not None
    # A copy of the old token (stolen, or a tab that kept it) is anonymous here at once.
    stolen = with_cookie(laptop_token)
    answer = stolen.get("/api/users/currentuser")
    assert answer.json() == {"currentUser": None}
    assert answer.cookies[SESSION_COOKIE].value == ""  # cleared, not renewed
    assert answer.cookies[SESSION_COOKIE]["max-age"] == 0
    # The other session of the same user is untouched.
    assert current(phone)["id"] == laptop_session.id
    assert UserSession.objects.get(id=verify_session_token(token_of(phone)).sid).revoked_at is None


def test_the_old_token_of_a_signed_out_session_is_never_renewed(settings):
    user = make_user()
    client = sign_in()
    session = verify_session_token(token_of(client))
    client.post("/api/users/signout")
    # The same session's token past half its life: the renewal a thief would wait for.
    old = mint_session_token(
        user_id=session.id,
        email=session.email,
        session_id=session.sid,
        now=past_half_life(settings),
    )

    response = with_cookie(old).get("/api/users/currentuser", HTTP_AUTHORIZATION=f"Bearer {old}")

    assert response.json() == {"currentUser": None}
    assert services.session_renew(session=verify_session_token(old)) is None
    assert UserSession.objects.filter(user=user).count() == 1  # nothing new was started


def test_a_live_session_past_half_its_life_is_renewed_with_the_same_session_id(settings):
    user = make_user()
    old = services.session_start(user=user, now=past_half_life(settings))
    session = verify_session_token(old)

    response = with_cookie(old).get("/api/users/currentuser")

    renewed = verify_session_token(response.cookies[SESSION_COOKIE].value)
    assert renewed.sid == session.sid
    assert renewed.exp > session.exp
    assert response.json()["currentUser"] == renewed.as_dict()


def test_sign_out_without_a_session_or_twice_is_harmless():
    make_user()
    client = sign_in()

    first = client.post("/api/users/signout")
    again = with_cookie(first.cookies[SESSION_COOKIE].value).post("/api/users/signout")
    anonymous = APIClient().post("/api/users/signout")

    assert (first.status_code, again.status_code, anonymous.status_code) == (200, 200, 200)
    assert UserSession.objects.filter(revoked_at__isnull=False).count() == 1


def test_sign_out_with_a_bearer_token_revokes_the_bearer_session():
    make_user()
    cookie_session, bearer_session = sign_in(), sign_in()
    bearer = token_of(bearer_session)
    client = with_cookie(token_of(cookie_session))

    client.post("/api/users/signout", HTTP_AUTHORIZATION=f"Bearer {bearer}")

    assert current(with_cookie(bearer)) is None
    assert current(cookie_session) is not None


# --- the maximum age: renewal never carries a session past it ------------------------


def test_renewal_is_capped_at_the_sessions_maximum_age(settings):
    settings.SESSION_MAX_AGE_SECONDS = 1200
    user = make_user()
    now = int(time.time())
    signed_in_at = now - 800  # renewal is due, and the cap is 400 s away
    old = services.session_start(user=user, now=signed_in_at)

    response = with_cookie(old).get("/api/users/currentuser")

    renewed = verify_session_token(response.cookies[SESSION_COOKIE].value)
    assert renewed.exp == signed_in_at + 1200  # not now + SESSION_TTL_SECONDS
    assert response.cookies[SESSION_COOKIE]["max-age"] == renewed.exp - renewed.iat
    # Later renewals cannot extend it any further: none is made.
    assert services.session_renew(session=renewed, now=renewed.iat + 300) is None
    assert services.session_renew(session=renewed, now=renewed.exp) is None


def test_a_token_is_capped_at_the_maximum_age_from_the_start(settings):
    settings.SESSION_MAX_AGE_SECONDS = 600  # shorter than one token's life

    token = services.session_start(user=make_user(), now=1_000_000)

    session = jwt.decode(
        token, settings.JWT_PUBLIC_KEY, algorithms=["EdDSA"], options={"verify_exp": False}
    )
    assert (session["iat"], session["exp"]) == (1_000_000, 1_000_600)


def test_a_session_older_than_the_maximum_age_is_anonymous_here(settings, make_token):
    settings.SESSION_MAX_AGE_SECONDS = 1200
    user = make_user()
    token = services.session_start(user=user)
    # Signed in before the maximum age was lowered, or by a replica whose clock ran ahead:
    # the row's sign-in time decides, not the token's own times.
    UserSession.objects.update(created_at=datetime.fromtimestamp(time.time() - 1201, tz=UTC))

    assert current(with_cookie(token)) is None


def test_the_default_maximum_age_is_twelve_hours(settings):
    assert settings.SESSION_MAX_AGE_SECONDS == 12 * 60 * 60


# --- tokens without a session, or with a hostile one ---------------------------------


@pytest.mark.parametrize(
    "sid",
    [
        "garbage",
        "",
        42,
        None,
        ["a"],
        {"id": 1},
        "' OR 1=1 --",
        "\x00",
        "0" * 10_000,
        "12345678-1234-1234-1234-12345678901g",
    ],
    ids=lambda value: repr(value)[:20],
)
def test_a_hostile_session_id_is_anonymous_not_an_error(session_keys, sid):
    user = make_user()
    token = signed(session_keys, claims(id=str(user.id), email=user.email, sid=sid))

    response = with_cookie(token).get("/api/users/currentuser")

    assert response.status_code == 200
    assert response.json() == {"currentUser": None}


def test_a_token_without_a_session_id_is_anonymous_here(session_keys):
    user = make_user()
    # A token minted before sessions existed: no `sid`. It cannot be signed out, so
    # auth_svc does not honour it; the other services accept it until its `exp`.
    token = signed(session_keys, claims(id=str(user.id), email=user.email))

    response = with_cookie(token).get("/api/users/currentuser")

    assert response.json() == {"currentUser": None}


def test_someone_elses_session_id_is_anonymous(session_keys):
    alice, bob = make_user("alice@example.com"), make_user("bob@example.com")
    bobs = verify_session_token(services.session_start(user=bob))
    token = signed(session_keys, claims(id=str(alice.id), email=alice.email, sid=bobs.sid))

    assert current(with_cookie(token)) is None


def test_an_unknown_session_id_is_anonymous(make_token):
    user = make_user()

    token = make_token(user_id=str(user.id), email=user.email, session_id=str(uuid.uuid4()))

    assert current(with_cookie(token)) is None


def test_the_revocation_check_is_one_query(django_assert_num_queries):
    user = make_user()
    client = with_cookie(services.session_start(user=user))

    with django_assert_num_queries(1):
        response = client.get("/api/users/currentuser")

    assert response.json()["currentUser"]["id"] == str(user.id)


# --- a password change or a lost staff status ends every session ---------------------


def test_a_password_change_ends_every_session_of_the_user():
    user = make_user()
    other = make_user("other@example.com")
    laptop, phone = sign_in(), sign_in()
    others = sign_in("other@example.com")

    services.user_set_password(user=user, password=NEW_PASSWORD)

    assert current(laptop) is None
    assert current(phone) is None
    assert current(others)["id"] == str(other.id)
    assert current(sign_in(password=NEW_PASSWORD))["id"] == str(user.id)
    refused = APIClient().post(
        "/api/users/signin", {"email": "buyer@example.com", "password": PASSWORD}, format="json"
    )
    assert refused.status_code == 400


def test_a_password_change_keeps_the_services_password_rules():
    user = make_user()
    client = sign_in()

    with pytest.raises(services.InvalidInput):
        services.user_set_password(user=user, password="short")

    assert current(client) is not None
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def local_superuser_client() -> Client:
    User.objects.create_superuser("root@example.com", "root long password")
    client = Client()
    response = client.post(
        f"{ADMIN}login/", {"username": "root@example.com", "password": "root long password"}
    )
    assert response.status_code == 302
    return client


def set_password_in_the_admin(user: User, password: str):
    """A local superuser sets `user`'s password on the admin's password form."""
    return local_superuser_client().post(
        f"{ADMIN}users/user/{user.id}/password/",
        {"usable_password": "true", "password1": password, "password2": password},
    )


def test_changing_a_password_in_the_admin_ends_every_session():
    user = make_user()
    laptop = sign_in()

    response = set_password_in_the_admin(user, NEW_PASSWORD)

    assert response.status_code == 302
    assert current(laptop) is None
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_the_admin_password_form_refuses_what_sign_up_would():
    user = make_user()
    laptop = sign_in()

    response = set_password_in_the_admin(user, "password1")

    assert response.status_code == 200
    assert services.PASSWORD_COMMON in response.content.decode()
    assert current(laptop) is not None


def admin_change_form(user: User, **changes: str) -> dict:
    form = {
        "email": user.email,
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2020-01-01",
        "date_joined_1": "00:00:00",
        **changes,
    }
    return {name: value for name, value in form.items() if value is not None}


def test_losing_staff_status_in_the_admin_ends_every_session():
    clerk = make_user("clerk@example.com", is_staff=True)
    desk = sign_in("clerk@example.com")
    staff_token = token_of(desk)
    assert verify_session_token(staff_token).staff is True
    bystander = make_user("bystander@example.com", is_staff=True)
    bystanders = sign_in("bystander@example.com")
    admin = local_superuser_client()

    response = admin.post(
        f"{ADMIN}users/user/{clerk.id}/change/", admin_change_form(clerk, is_staff=None)
    )

    assert response.status_code == 302
    clerk.refresh_from_db()
    assert clerk.is_staff is False
    assert current(with_cookie(staff_token)) is None
    assert current(bystanders)["id"] == str(bystander.id)


def test_an_admin_edit_that_keeps_staff_status_ends_no_session():
    clerk = make_user("clerk@example.com", is_staff=True)
    desk = sign_in("clerk@example.com")
    admin = local_superuser_client()

    response = admin.post(
        f"{ADMIN}users/user/{clerk.id}/change/",
        admin_change_form(clerk, email="clerk@new.example.com"),
    )

    assert response.status_code == 302
    assert current(desk) is not None


def test_deactivating_a_user_ends_every_session():
    user = make_user()
    laptop = sign_in()

    services.user_update(user=user, is_active=False)

    assert current(laptop) is None
    assert UserSession.objects.filter(user=user, revoked_at__isnull=True).count() == 0


def test_losing_staff_status_through_the_service_ends_every_session():
    user = make_user(is_staff=True)
    laptop = sign_in()

    services.user_update(user=user, is_staff=False)

    assert current(laptop) is None
    user.refresh_from_db()
    assert user.is_staff is False


def test_a_signed_out_staff_token_no_longer_opens_this_admin():
    make_user("clerk@example.com", is_staff=True)
    desk = sign_in("clerk@example.com")
    admin = Client()
    admin.cookies[SESSION_COOKIE] = token_of(desk)
    assert admin.get(ADMIN).status_code == 200

    desk.post("/api/users/signout")
    response = admin.get(ADMIN)

    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=/admin/auth/"


def test_manage_changepassword_ends_every_session(monkeypatch):
    from django.contrib.auth.management.commands import changepassword
    from django.core.management import call_command

    user = make_user()
    laptop = sign_in()
    # The command reads the new password from the terminal; here it is typed in advance.
    monkeypatch.setattr(changepassword.Command, "_get_pass", lambda self, prompt=None: NEW_PASSWORD)

    call_command("changepassword", "buyer@example.com", stdout=StringIO())

    assert current(laptop) is None
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)

"""The `staff` claim auth_svc mints, and single sign-on to auth_svc's own admin, where the
users table (not the token's claim) decides who is staff (shared_lib.admin_sso)."""

import time

import jwt
import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.test import Client

from shared_lib.auth import SESSION_COOKIE, verify_session_token
from shared_lib.testing.tokens import STAFF_ATTACKS
from tests.factories import PASSWORD, make_user
from users import services
from users.models import User

pytestmark = pytest.mark.django_db

ADMIN = "/admin/auth/"
CLERK = "clerk@example.com"


def claims_of(token: str, public_pem: str) -> dict:
    return jwt.decode(token, public_pem, algorithms=["EdDSA"], options={"verify_exp": False})


def make_clerk(**flags: bool) -> User:
    return make_user(CLERK, **flags)


# --- the claim ----------------------------------------------------------------------


def test_signing_in_as_staff_mints_the_staff_claim(api_client, session_keys):
    make_clerk(is_staff=True)

    response = api_client.post(
        "/api/users/signin", {"email": CLERK, "password": PASSWORD}, format="json"
    )

    assert response.status_code == 200
    assert response.json() == {"id": response.json()["id"], "email": CLERK}
    assert claims_of(response.cookies[SESSION_COOKIE].value, session_keys.public_pem)["staff"]


def test_a_non_staff_users_token_has_no_staff_claim(api_client, session_keys):
    make_clerk()

    response = api_client.post(
        "/api/users/signin", {"email": CLERK, "password": PASSWORD}, format="json"
    )

    claims = claims_of(response.cookies[SESSION_COOKIE].value, session_keys.public_pem)
    assert set(claims) == {"id", "email", "iat", "exp", "sid"}


def test_an_inactive_staff_row_mints_no_staff_claim(session_keys):
    user = make_clerk(is_staff=True, is_active=False)

    assert "staff" not in claims_of(services.session_start(user=user), session_keys.public_pem)


def old_session(user: User, settings) -> str:
    """A token of a session signed in more than half a token's life ago: renewal is due."""
    return services.session_start(
        user=user, now=int(time.time()) - settings.SESSION_TTL_SECONDS // 2 - 5
    )


def renew(api_client, token: str) -> object:
    api_client.cookies[SESSION_COOKIE] = token
    return api_client.get("/api/users/currentuser")


def test_renewal_adds_the_claim_after_a_promotion(api_client, settings):
    user = make_clerk()
    token = old_session(user, settings)
    User.objects.filter(id=user.id).update(is_staff=True)

    response = renew(api_client, token)

    assert response.status_code == 200
    assert verify_session_token(response.cookies[SESSION_COOKIE].value).staff is True
    # The public shape is unchanged: staff is for the admins only.
    assert set(response.json()["currentUser"]) == {"id", "email", "iat", "exp"}


def test_renewal_drops_the_claim_after_a_demotion_that_bypassed_the_services(api_client, settings):
    # users.services.user_update ends every session of a demoted user; a row changed
    # behind its back (a shell, SQL) still loses the claim at the next renewal.
    user = make_clerk(is_staff=True)
    token = old_session(user, settings)
    assert verify_session_token(token).staff is True
    User.objects.filter(id=user.id).update(is_staff=False)

    response = renew(api_client, token)

    assert response.status_code == 200
    assert verify_session_token(response.cookies[SESSION_COOKIE].value).staff is False


def test_a_young_staff_token_is_not_renewed_so_the_window_is_the_token_life(api_client):
    user = make_clerk(is_staff=True)
    api_client.cookies[SESSION_COOKIE] = services.session_start(user=user)
    User.objects.filter(id=user.id).update(is_staff=False)

    response = api_client.get("/api/users/currentuser")

    assert response.status_code == 200
    assert SESSION_COOKIE not in response.cookies  # renewal waits for half the token's life


# --- auth_svc's own admin: the users table decides -------------------------------------


def signed_in(client: Client, user: User) -> Client:
    client.cookies[SESSION_COOKIE] = services.session_start(user=user)
    return client


def test_a_staff_user_opens_the_admin_with_the_site_session(client):
    user = make_clerk(is_staff=True)
    signed_in(client, user)

    index = client.get(ADMIN)
    users = client.get(f"{ADMIN}users/user/")
    change = client.get(f"{ADMIN}users/user/{user.id}/change/")

    assert index.status_code == 200
    assert index.context["user"] == user  # the real row, not a shadow
    assert users.status_code == 200
    assert change.status_code == 200
    assert b'name="_save"' not in change.content  # staff view; changing needs superuser
    assert User.objects.count() == 1


def test_a_demotion_here_bites_at_once_even_with_a_staff_token(client):
    user = make_clerk(is_staff=True)
    signed_in(client, user)
    assert verify_session_token(client.cookies[SESSION_COOKIE].value).staff is True
    assert client.get(ADMIN).status_code == 200

    User.objects.filter(id=user.id).update(is_staff=False)
    response = client.get(ADMIN)

    assert response.status_code == 403
    assert "You are signed in as clerk@example.com" in response.content.decode()


def test_a_deactivated_staff_user_is_refused(client):
    user = make_clerk(is_staff=True)
    signed_in(client, user)
    User.objects.filter(id=user.id).update(is_active=False)

    response = client.get(ADMIN)

    # Their session no longer counts here at all: anonymous, so sent to the sign-in.
    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=/admin/auth/"


def test_a_non_staff_user_gets_the_403_page(client):
    user = make_clerk()
    signed_in(client, user)

    response = client.get(ADMIN)

    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


def test_anonymous_is_sent_to_the_site_sign_in(client):
    response = client.get(f"{ADMIN}users/user/")

    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=/admin/auth/users/user/"


@pytest.mark.parametrize("attack", list(STAFF_ATTACKS))
def test_a_forged_staff_token_opens_nothing(client, session_keys, attack):
    client.cookies[SESSION_COOKIE] = STAFF_ATTACKS[attack](session_keys)

    response = client.get(ADMIN)

    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=/admin/auth/"


def test_a_superuser_edits_through_sign_on_with_csrf_and_a_log_entry():
    root = make_user("root@example.com", is_staff=True, is_superuser=True)
    target = make_user("target@example.com")
    client = signed_in(Client(enforce_csrf_checks=True), root)
    url = f"{ADMIN}users/user/{target.id}/change/"
    page = client.get(url)
    form = {
        "email": "target@example.com",
        "is_active": "on",
        "is_staff": "on",
        "date_joined_0": "2020-01-01",
        "date_joined_1": "00:00:00",
    }

    forged = client.post(url, form)
    target.refresh_from_db()
    assert forged.status_code == 403
    assert target.is_staff is False
    assert not LogEntry.objects.exists()

    saved = client.post(url, {**form, "csrfmiddlewaretoken": str(page.context["csrf_token"])})

    assert saved.status_code == 302
    target.refresh_from_db()
    assert target.is_staff is True
    entry = LogEntry.objects.get()
    assert entry.user_id == root.id  # the real row: LogEntry's foreign key holds
    assert entry.action_flag == CHANGE
    assert entry.object_id == str(target.id)


def test_the_local_password_form_still_works(client):
    User.objects.create_superuser("admin@example.com", PASSWORD)

    response = client.post(
        f"{ADMIN}login/?next={ADMIN}", {"username": "admin@example.com", "password": PASSWORD}
    )

    assert response.status_code == 302
    assert response["Location"] == ADMIN
    assert client.get(ADMIN).status_code == 200

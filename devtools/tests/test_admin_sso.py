"""Admin single sign-on through the gateway: one sign-in on the site opens every service's
admin to a staff user of auth_svc, and no one else's (shared_lib.admin_sso)."""

import uuid

import psycopg
import pytest
import requests

from tests.system import DB_PREFIX, PASSWORD
from ticketing_devtools.backing import admin_url
from ticketing_devtools.catalog import service

SERVICES = ["auth", "tickets", "orders", "payments"]


def user(stack, name: str) -> requests.Session:
    """A new user signed in on the site (session cookie in the Session), with .email."""
    session = requests.Session()
    session.email = f"{name}-{uuid.uuid4().hex[:8]}@example.com"
    response = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": session.email, "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    session.user_id = response.json()["id"]
    return session


def make_staff(user_id: str) -> None:
    """What `manage.py createsuperuser` or the auth admin does: is_staff on the row."""
    url = admin_url(service("auth").database(DB_PREFIX))
    with psycopg.connect(url) as conn:
        updated = conn.execute("UPDATE users_user SET is_staff = true WHERE id = %s", [user_id])
        assert updated.rowcount == 1


def sign_in_again(stack, session: requests.Session, email: str) -> None:
    response = session.post(
        f"{stack.url}/api/users/signin", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def staff(stack):
    session = user(stack, "staff")
    make_staff(session.user_id)
    # The sign-up token predates the promotion; signing in mints one that says staff.
    sign_in_again(stack, session, session.email)
    return session


@pytest.mark.parametrize("name", SERVICES)
def test_a_staff_user_opens_every_admin_with_the_one_sign_in(stack, staff, name):
    response = staff.get(f"{stack.url}/admin/{name}/", allow_redirects=False, timeout=10)

    assert response.status_code == 200
    assert "Site administration" in response.text
    assert f"Ticketing {name} admin" in response.text
    assert staff.email in response.text  # greeted as who they signed in as


def test_staff_see_a_services_rows(stack, staff, seller):
    listed = seller.post(
        f"{stack.url}/api/tickets", json={"title": "Admin row", "price": "12.00"}, timeout=10
    )
    assert listed.status_code == 201

    response = staff.get(
        f"{stack.url}/admin/tickets/tickets/ticket/", allow_redirects=False, timeout=10
    )

    assert response.status_code == 200
    assert listed.json()["id"] in response.text


@pytest.mark.parametrize("name", ["tickets", "orders"])
def test_a_signed_in_non_staff_user_is_not_admitted(stack, name):
    session = user(stack, "plain")

    response = session.get(f"{stack.url}/admin/{name}/", allow_redirects=False, timeout=10)

    assert response.status_code == 403
    assert f"You are signed in as {session.email}" in response.text
    assert "Site administration" not in response.text


@pytest.mark.parametrize("name", ["tickets", "orders"])
def test_anonymous_is_sent_to_the_sites_sign_in(stack, name):
    response = requests.get(f"{stack.url}/admin/{name}/", allow_redirects=False, timeout=10)
    sign_in = requests.get(f"{stack.url}{response.headers['Location']}", timeout=10)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/auth/signin?next=/admin/{name}/"
    assert sign_in.status_code == 200  # the web client's sign-in page
    assert "Site administration" not in sign_in.text

"""Admin single sign-on (shared_lib.admin_sso) on the demo service: its admin is /admin/demo/,
its users are Django's own auth.User, so staff come from the token's claim (shadow rows)."""

import uuid

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.auth.models import User
from django.test import Client

from shared_lib.admin_sso import SIGN_IN_THROTTLED
from shared_lib.auth import SESSION_COOKIE
from shared_lib.models import OutboxEvent
from shared_lib.testing.tokens import ALICE, STAFF_ATTACKS

pytestmark = pytest.mark.django_db

ADMIN = "/admin/demo/"
PASSWORD = "a-long-local-password"


def with_token(client: Client, token: str) -> Client:
    client.cookies[SESSION_COOKIE] = token
    return client


@pytest.fixture
def staff_client(client, make_token):
    return with_token(client, make_token(user_id=ALICE, email="alice@example.com", staff=True))


def test_a_staff_token_opens_the_admin_without_a_second_sign_in(staff_client):
    response = staff_client.get(ADMIN)

    assert response.status_code == 200
    assert response.context["user"].username == ALICE
    assert "Site administration" in response.content.decode()
    assert "alice@example.com" in response.content.decode()  # the header greets the email


def test_the_first_visit_makes_a_shadow_staff_row_without_a_password(staff_client):
    assert staff_client.get(ADMIN).status_code == 200

    shadow = User.objects.get()
    assert shadow.username == ALICE
    assert shadow.email == "alice@example.com"
    assert shadow.is_staff is True
    assert shadow.is_superuser is False
    assert shadow.is_active is True
    assert shadow.has_usable_password() is False
    assert not shadow.user_permissions.exists()
    assert not shadow.groups.exists()


def test_later_visits_reuse_the_row_and_follow_an_email_change(client, make_token):
    with_token(client, make_token(user_id=ALICE, email="alice@example.com", staff=True))
    assert client.get(ADMIN).status_code == 200
    first = User.objects.get()

    with_token(client, make_token(user_id=ALICE, email="alice@new.example", staff=True))
    assert client.get(ADMIN).status_code == 200

    assert User.objects.count() == 1
    again = User.objects.get()
    assert again.pk == first.pk
    assert again.email == "alice@new.example"


def test_staff_may_view_every_model_and_change_none(staff_client):
    event = OutboxEvent.objects.create(subject="ticket.created", data={"id": ALICE})

    changelist = staff_client.get(f"{ADMIN}shared_lib/outboxevent/")
    change = staff_client.get(f"{ADMIN}shared_lib/outboxevent/{event.pk}/change/")
    users = staff_client.get(f"{ADMIN}auth/user/")
    add_user = staff_client.get(f"{ADMIN}auth/user/add/")
    add_group = staff_client.get(f"{ADMIN}auth/group/add/")

    assert changelist.status_code == 200
    assert str(event.pk) in changelist.content.decode()
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert users.status_code == 200
    # A local password account made here would outlive a demotion in auth_svc.
    assert add_user.status_code == 403
    assert add_group.status_code == 403


def test_staff_cannot_edit_or_promote_their_own_shadow_row(staff_client):
    staff_client.get(ADMIN)
    shadow = User.objects.get()
    page = staff_client.get(f"{ADMIN}auth/user/{shadow.pk}/change/")
    token = page.context["csrf_token"]

    response = staff_client.post(
        f"{ADMIN}auth/user/{shadow.pk}/change/",
        {
            "csrfmiddlewaretoken": str(token),
            "username": ALICE,
            "is_staff": "on",
            "is_superuser": "on",
            "is_active": "on",
            "date_joined_0": "2020-01-01",
            "date_joined_1": "00:00:00",
        },
    )

    assert page.status_code == 200
    assert response.status_code == 403
    assert User.objects.get().is_superuser is False


def test_anonymous_is_sent_to_the_site_sign_in_and_back(client, session_keys):
    index = client.get(ADMIN)
    deep = client.get(f"{ADMIN}shared_lib/outboxevent/?subject=ticket.created")

    assert index.status_code == 302
    assert index["Location"] == "/auth/signin?next=/admin/demo/"
    assert deep.status_code == 302
    assert deep["Location"] == (
        "/auth/signin?next=/admin/demo/shared_lib/outboxevent/%3Fsubject%3Dticket.created"
    )
    assert "no-cache" in index["Cache-Control"]
    assert not User.objects.exists()


def test_a_signed_in_non_staff_user_gets_a_clear_403(client, make_token):
    with_token(client, make_token(user_id=ALICE, email="alice@example.com"))

    index = client.get(ADMIN)
    model = client.get(f"{ADMIN}shared_lib/outboxevent/")

    assert index.status_code == 403
    assert "You are signed in as alice@example.com" in index.content.decode()
    assert 'href="/auth/signout"' in index.content.decode()
    assert model.status_code == 403
    assert not User.objects.exists()  # no row for someone who is not staff


def test_a_demoted_user_with_a_shadow_row_is_refused(client, make_token):
    with_token(client, make_token(user_id=ALICE, email="alice@example.com", staff=True))
    assert client.get(ADMIN).status_code == 200

    # The renewed token (auth_svc re-reads is_staff) no longer says staff.
    with_token(client, make_token(user_id=ALICE, email="alice@example.com"))
    response = client.get(ADMIN)

    assert response.status_code == 403
    assert User.objects.get().username == ALICE  # the row stays; it grants nothing by itself


def test_a_shadow_row_deactivated_here_locks_out_even_a_staff_token(staff_client):
    staff_client.get(ADMIN)
    User.objects.update(is_active=False)

    response = staff_client.get(ADMIN)

    assert response.status_code == 403
    assert User.objects.get().is_active is False  # the visit did not re-activate it


@pytest.mark.parametrize("attack", list(STAFF_ATTACKS))
def test_a_forged_staff_token_opens_nothing(client, session_keys, attack):
    with_token(client, STAFF_ATTACKS[attack](session_keys))

    response = client.get(ADMIN)

    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=/admin/demo/"
    assert not User.objects.exists()


def test_a_staff_bearer_token_opens_the_admin_too(client, make_token):
    token = make_token(user_id=ALICE, staff=True)

    response = client.get(ADMIN, HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200


def test_api_requests_of_a_staff_user_do_not_touch_the_user_table(staff_client):
    response = staff_client.get("/api/demo/whoami")

    assert response.status_code == 200
    assert response.json() == {"id": ALICE, "email": "alice@example.com"}
    assert not User.objects.exists()


def test_admin_forms_still_need_the_csrf_token(make_token):
    client = with_token(Client(enforce_csrf_checks=True), make_token(user_id=ALICE, staff=True))
    token = str(client.get(ADMIN).context["csrf_token"])

    forged = client.post(f"{ADMIN}logout/")
    still_in = client.get(ADMIN)
    logged_out = client.post(f"{ADMIN}logout/", {"csrfmiddlewaretoken": token})

    assert forged.status_code == 403
    assert forged.json() == {"errors": [{"message": "Forbidden"}]}  # CSRF, in the one shape
    assert still_in.status_code == 200
    # With the token it passes; the session is the site's token, so only the site's
    # sign-out page ends it.
    assert logged_out.status_code == 302
    assert logged_out["Location"] == "/auth/signout"


# --- local accounts: Django's own login, for when single sign-on cannot work ----------


def test_the_password_form_stays_for_local_accounts_and_points_staff_to_the_site(client):
    User.objects.create_superuser("root", "root@example.com", PASSWORD)

    form = client.get(f"{ADMIN}login/")
    signed_in = client.post(
        f"{ADMIN}login/?next={ADMIN}", {"username": "root", "password": PASSWORD}
    )
    index = client.get(ADMIN)

    assert form.status_code == 200
    assert 'href="/auth/signin?next=/admin/demo/"' in form.content.decode()
    assert signed_in.status_code == 302
    assert signed_in["Location"] == ADMIN
    assert index.status_code == 200
    assert index.context["user"].username == "root"


def test_a_shadow_row_cannot_be_opened_with_the_password_form(staff_client):
    staff_client.get(ADMIN)
    anonymous = Client()

    for password in ["", "!", PASSWORD]:
        response = anonymous.post(f"{ADMIN}login/", {"username": ALICE, "password": password})
        assert response.status_code == 200  # the form again, with its error
        assert "_auth_user_id" not in anonymous.session
    assert anonymous.get(ADMIN).status_code == 302


def test_a_staff_token_wins_over_a_local_session(client, make_token):
    User.objects.create_user("clerk", "clerk@example.com", PASSWORD, is_staff=True)
    client.post(f"{ADMIN}login/", {"username": "clerk", "password": PASSWORD})
    bob = str(uuid.uuid4())

    with_token(client, make_token(user_id=bob, email="bob@example.com", staff=True))
    response = client.get(ADMIN)

    assert response.status_code == 200
    assert response.context["user"].username == bob


# --- the password form is rate limited as the sign-in API is ------------------------------

LOGIN = f"{ADMIN}login/?next={ADMIN}"
checked_passwords: list[str] = []


class CountingHasher(MD5PasswordHasher):
    """Counts password checks, to prove a refused attempt made none (MD5: tests only)."""

    def verify(self, password: str, encoded: str) -> bool:
        checked_passwords.append(encoded)
        return super().verify(password, encoded)


@pytest.fixture
def root(settings, redis_keys):
    settings.PASSWORD_HASHERS = ["tests.test_admin_sso.CountingHasher"]
    checked_passwords.clear()
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


def log_in(password: str, username: str = "root", **headers):
    return Client().post(LOGIN, {"username": username, "password": password}, **headers)


def assert_throttled(response) -> None:
    assert response.status_code == 429
    seconds = response["Retry-After"]
    assert 1 <= int(seconds) <= 60
    message = SIGN_IN_THROTTLED.format(seconds=seconds)
    assert f'<p class="errornote" role="alert">{message}</p>' in response.content.decode()
    assert "demo_admin_session" not in response.cookies
    assert response.context["user"].is_authenticated is False


def test_the_password_form_is_limited_per_client_ip(root, settings):
    settings.RATE_LIMIT_SIGNIN = "2/min"
    address = {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}

    failures = [log_in("wrong", username=f"nobody{i}", **address).status_code for i in range(2)]
    checks = len(checked_passwords)
    refused = log_in(PASSWORD, **address)

    assert failures == [200, 200]
    assert_throttled(refused)
    assert len(checked_passwords) == checks  # refused before any password was checked
    root.refresh_from_db()
    assert root.last_login is None
    assert log_in(PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 302


def test_the_password_form_counts_failures_per_account_and_not_successes(root, settings):
    settings.RATE_LIMIT_EMAIL = "2/min"

    statuses = [
        log_in(password, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i, password in enumerate([PASSWORD, "wrong", PASSWORD, PASSWORD, "wrong"])
    ]
    checks = len(checked_passwords)
    refused = log_in(PASSWORD, username=" ROOT", HTTP_X_FORWARDED_FOR="203.0.113.99")

    assert statuses == [302, 200, 302, 302, 200]
    assert_throttled(refused)
    assert len(checked_passwords) == checks
    assert log_in("wrong", username="someone-else").status_code == 200


def test_while_redis_is_down_the_password_form_is_limited_in_the_process(redis_down, settings):
    User.objects.create_superuser("root", "root@example.com", PASSWORD)
    settings.RATE_LIMIT_SIGNIN = "1/min"

    first = log_in(PASSWORD)
    refused = log_in(PASSWORD)

    assert first.status_code == 302  # open while Redis is away
    assert_throttled(refused)  # and still limited: each process counts alone

"""Account recovery: a single-use, one-hour link by email (through a real SMTP server, the
mail catcher), whatever the email asked never told; the new password ends every session."""

import hashlib
import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from shared_lib.errors import TOO_MANY_REQUESTS
from shared_lib.mail import send_pending_emails
from shared_lib.models import OutgoingEmail
from shared_lib.testing.api import errors
from tests.factories import PASSWORD, make_user
from users import services
from users.models import PasswordReset, User, UserSession

pytestmark = pytest.mark.django_db

RESET = "/api/users/password-reset"
CONFIRM = "/api/users/password-reset/confirm"
NEW_PASSWORD = "a brand new phrase"
LINK = re.compile(r"https://tickets\.example/auth/reset/(?P<token>[A-Za-z0-9_-]+)\n")


@pytest.fixture(autouse=True)
def _site(settings):
    settings.SITE_URL = "https://tickets.example"


def request_reset(client, email="buyer@example.com", **headers):
    return client.post(RESET, {"email": email}, format="json", **headers)


def confirm(client, token, password=NEW_PASSWORD):
    return client.post(CONFIRM, {"token": token, "password": password}, format="json")


def emailed_token(mail_server) -> str:
    """The token of the last reset link sent (sent now, as the service's sender would)."""
    send_pending_emails()
    message = mail_server.messages()[-1]
    return LINK.search(message.get_content())["token"]


def test_a_reset_link_sets_a_new_password_once_and_ends_every_session(api_client, mail_server):
    user = make_user()
    sessions = [services.session_start(user=user) for _ in range(2)]

    asked = request_reset(api_client, "  Buyer@Example.com ")
    token = emailed_token(mail_server)
    done = confirm(api_client, token)
    again = confirm(api_client, token, "yet another phrase")

    assert (asked.status_code, asked.json()) == (202, {})
    [message] = mail_server.messages()
    assert (message["To"], message["Subject"]) == (
        "buyer@example.com",
        "Reset your Ticketing password",
    )
    assert done.status_code == 204
    assert again.status_code == 400
    assert again.json() == errors((services.RESET_INVALID, "token"))
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert len(sessions) == UserSession.objects.filter(revoked_at__isnull=False).count()
    assert not UserSession.objects.filter(revoked_at__isnull=True).exists()
    reset = PasswordReset.objects.get()
    assert reset.used_at is not None
    # The token is kept nowhere: its hash on the reset, and the sent email's body is gone.
    assert reset.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert OutgoingEmail.objects.get().body == ""


def test_no_account_gets_the_same_answer_and_no_email(api_client, mail_server):
    make_user()
    make_user("gone@example.com", is_active=False)

    known = request_reset(api_client, "buyer@example.com")
    unknown = request_reset(api_client, "nobody@example.com")
    inactive = request_reset(api_client, "gone@example.com")

    answers = [(r.status_code, r.json(), sorted(r.headers)) for r in (known, unknown, inactive)]
    assert answers[0] == answers[1] == answers[2]
    assert [e.to for e in OutgoingEmail.objects.all()] == ["buyer@example.com"]
    assert PasswordReset.objects.count() == 1


def test_a_link_older_than_an_hour_is_refused_and_changes_nothing(api_client, mail_server):
    user = make_user()
    request_reset(api_client)
    token = emailed_token(mail_server)
    PasswordReset.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = confirm(api_client, token)

    assert response.status_code == 400
    assert response.json() == errors((services.RESET_INVALID, "token"))
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_a_new_password_breaking_the_rules_leaves_the_link_usable(api_client, mail_server):
    user = make_user()
    request_reset(api_client)
    token = emailed_token(mail_server)

    short = confirm(api_client, token, "short")
    common = confirm(api_client, token, "password123")
    good = confirm(api_client, token)

    assert short.json() == errors((services.PASSWORD_LENGTH, "password"))
    assert common.json() == errors((services.PASSWORD_COMMON, "password"))
    assert (short.status_code, common.status_code, good.status_code) == (400, 400, 204)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_using_one_link_spends_every_other_link_of_the_user(api_client, mail_server):
    make_user()
    request_reset(api_client)
    first = emailed_token(mail_server)
    request_reset(api_client)
    second = emailed_token(mail_server)

    assert confirm(api_client, second).status_code == 204
    assert confirm(api_client, first).json() == errors((services.RESET_INVALID, "token"))


def test_a_users_expired_links_go_when_they_ask_again(api_client, mail_server):
    # As sessions do at sign-in: the table keeps what can still decide something.
    user, other = make_user(), make_user(email="other@example.com")
    request_reset(api_client)
    request_reset(api_client)
    request_reset(api_client, "other@example.com")
    expired, live = PasswordReset.objects.filter(user=user).order_by("created_at")
    PasswordReset.objects.filter(user=other).update(expires_at=timezone.now())
    PasswordReset.objects.filter(id=expired.id).update(expires_at=timezone.now())

    request_reset(api_client)

    kept = set(PasswordReset.objects.values_list("id", flat=True))
    assert expired.id not in kept
    assert {live.id, *PasswordReset.objects.filter(user=other).values_list("id", flat=True)} < kept
    assert PasswordReset.objects.filter(user=user).count() == 2  # the live one and the new


@pytest.mark.parametrize(
    "body",
    [{}, {"token": ""}, {"token": 5}, {"token": "x" * 101}, {"token": "made-up-token"}],
    ids=["missing", "empty", "number", "too-long", "unknown"],
)
def test_a_bad_token_is_one_answer(api_client, body):
    make_user()

    response = api_client.post(CONFIRM, {"password": NEW_PASSWORD, **body}, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.RESET_INVALID, "token"))


@pytest.mark.parametrize("email", [None, 5, "", "not-an-email", ["a@example.com"]])
def test_a_bad_email_is_a_400_and_sends_nothing(api_client, email):
    response = api_client.post(RESET, {"email": email}, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.EMAIL_INVALID, "email"))
    assert OutgoingEmail.objects.count() == 0


def test_reset_requests_are_limited_per_email_whoever_asks(api_client, settings):
    settings.RATE_LIMIT_PASSWORD_RESET_EMAIL = "2/hour"
    make_user()

    statuses = [
        request_reset(api_client, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}").status_code
        for i in range(3)
    ]

    assert statuses == [202, 202, 429]
    refused = request_reset(api_client, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert refused.json() == {"errors": [{"message": TOO_MANY_REQUESTS}]}
    assert OutgoingEmail.objects.count() == 2


def test_reset_requests_are_limited_per_client_ip(api_client, settings):
    settings.RATE_LIMIT_PASSWORD_RESET = "2/min"

    statuses = [request_reset(api_client, f"u{i}@example.com").status_code for i in range(3)]
    confirm_refused = confirm(api_client, "made-up-token")

    assert statuses == [202, 202, 429]
    assert confirm_refused.status_code == 429  # guessing tokens counts too


@pytest.mark.django_db(transaction=True)
def test_a_reset_is_sent_soon_after_the_request_commits(api_client, mail_server):
    make_user()

    request_reset(api_client)

    # send_soon's thread, after commit; the periodic sender covers any it misses. The
    # catcher keeps the message before the sender marks its row: wait for the mark.
    deadline = timezone.now() + timedelta(seconds=10)
    while not OutgoingEmail.objects.filter(sent_at__isnull=False).exists():
        assert timezone.now() < deadline, list(OutgoingEmail.objects.values("last_error"))
        time.sleep(0.05)
    assert len(mail_server.messages()) == 1
    assert User.objects.get().check_password(PASSWORD)


def test_a_link_is_spent_by_any_other_password_change(api_client, mail_server):
    # Staff set a new password (the admin, changepassword) after someone asked for a link.
    user = make_user()
    request_reset(api_client)
    token = emailed_token(mail_server)

    services.user_set_password(user=user, password="set by support staff")

    assert confirm(api_client, token).json() == errors((services.RESET_INVALID, "token"))
    user.refresh_from_db()
    assert user.check_password("set by support staff")


def test_a_link_of_an_account_deactivated_since_is_refused(api_client, mail_server):
    user = make_user()
    request_reset(api_client)
    token = emailed_token(mail_server)
    User.objects.filter(id=user.id).update(is_active=False)

    response = confirm(api_client, token)

    assert response.json() == errors((services.RESET_INVALID, "token"))
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_an_account_without_password_sign_in_is_sent_nothing(api_client, mail_server):
    user = make_user()
    services.user_set_password(user=user, password=None)

    assert request_reset(api_client).status_code == 202

    assert OutgoingEmail.objects.count() == 0


def test_the_admin_never_shows_an_emails_body(api_client, mail_server, client):
    make_user()
    request_reset(api_client)
    row = OutgoingEmail.objects.get()
    token = LINK.search(row.body)["token"]  # unsent yet: the body is still there
    root = User.objects.create_superuser("root@example.com", "root long password")
    client.force_login(root)

    page = client.get(f"/admin/auth/shared_lib/outgoingemail/{row.id}/change/")

    assert page.status_code == 200
    assert "Reset your Ticketing password" in page.content.decode()
    assert token not in page.content.decode()


def test_the_email_backlog_is_on_the_web_processes_metrics(client):
    # auth_svc sends from its web processes (no worker): their /metrics count what waits.
    OutgoingEmail.objects.create(
        key="password-reset:1", to="dee@example.com", subject="s", body="b"
    )

    response = client.get("/metrics", HTTP_HOST="10.244.1.17:8000")

    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert "ticketing_email_unsent 1.0" in lines
    assert "ticketing_email_failing 0.0" in lines

import time

import pytest

from shared_lib.auth import SessionUser, verify_session_token
from shared_lib.errors import BadRequest, InvalidInput
from users import services
from users.models import User, UserSession

pytestmark = pytest.mark.django_db


def test_sign_up_stores_lower_case_email_and_a_hashed_password():
    user = services.user_sign_up(
        email="  Mixed.Case@Example.COM ", password="correct horse battery"
    )

    stored = User.objects.get()
    assert stored.id == user.id
    assert stored.email == "mixed.case@example.com"
    assert stored.password.startswith("argon2$")
    assert "correct horse battery" not in stored.password
    assert stored.check_password("correct horse battery")


def test_sign_up_reports_every_invalid_field_together():
    with pytest.raises(InvalidInput) as raised:
        services.user_sign_up(email="not-an-email", password="short")

    assert raised.value.errors == [
        (services.EMAIL_INVALID, "email"),
        (services.PASSWORD_LENGTH, "password"),
    ]
    assert User.objects.count() == 0


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("x" * 7, services.PASSWORD_LENGTH),
        ("x" * 129, services.PASSWORD_LENGTH),
        ("password", services.PASSWORD_COMMON),
        ("12345678", services.PASSWORD_COMMON),
    ],
)
def test_sign_up_password_rules(password, message):
    with pytest.raises(BadRequest) as raised:
        services.user_sign_up(email="a@example.com", password=password)

    assert raised.value.message == message
    assert raised.value.field == "password"


@pytest.mark.parametrize("password", ["y" * 8 + "Q1", "z" * 128, "  spaced out passphrase  "])
def test_sign_up_accepts_passwords_at_the_limits_untrimmed(password):
    user = services.user_sign_up(email="limits@example.com", password=password)

    assert user.check_password(password)
    assert user.check_password(password.strip()) is (password == password.strip())


def test_sign_up_twice_with_one_email_in_any_case_is_refused():
    services.user_sign_up(email="dup@example.com", password="correct horse battery")

    with pytest.raises(BadRequest) as raised:
        services.user_sign_up(email="DUP@Example.com", password="another long secret")

    assert (raised.value.message, raised.value.field) == (services.EMAIL_IN_USE, "email")
    assert User.objects.count() == 1


def test_sign_in_gives_one_message_for_unknown_email_and_wrong_password():
    services.user_sign_up(email="known@example.com", password="correct horse battery")

    with pytest.raises(BadRequest) as unknown:
        services.user_sign_in(email="nobody@example.com", password="correct horse battery")
    with pytest.raises(BadRequest) as wrong:
        services.user_sign_in(email="known@example.com", password="wrong horse battery")

    assert unknown.value.message == wrong.value.message == services.INVALID_CREDENTIALS
    assert unknown.value.field is wrong.value.field is None


def test_sign_in_refuses_a_deactivated_account():
    user = services.user_sign_up(email="gone@example.com", password="correct horse battery")
    User.objects.filter(id=user.id).update(is_active=False)

    with pytest.raises(BadRequest) as raised:
        services.user_sign_in(email="gone@example.com", password="correct horse battery")

    assert raised.value.message == services.INVALID_CREDENTIALS


def test_sign_in_records_last_login():
    services.user_sign_up(email="seen@example.com", password="correct horse battery")

    user = services.user_sign_in(email="SEEN@example.com", password="correct horse battery")

    assert User.objects.get(id=user.id).last_login is not None


def test_session_renew_returns_nothing_for_a_deleted_account():
    user = services.user_sign_up(email="short@example.com", password="correct horse battery")
    now = int(time.time())
    session = verify_session_token(services.session_start(user=user, now=now - 500))
    orphan = SessionUser(
        id="5f0c3c36-8a64-4a39-9a3c-5c7c3f0f6a11",
        email="a@example.com",
        iat=session.iat,
        exp=session.exp,
        sid=session.sid,
    )
    assert services.session_renew(session=orphan) is None

    renewed = services.session_renew(session=session, now=now)

    assert renewed is not None
    token, fresh = renewed
    assert (fresh.id, fresh.sid) == (str(user.id), session.sid)
    assert fresh.email == "short@example.com"
    assert (fresh.iat, fresh.exp) == (now, now + 900)
    assert verify_session_token(token) == fresh

    User.objects.filter(id=user.id).delete()

    assert services.session_renew(session=session, now=now) is None


def test_session_renew_gives_nothing_before_half_the_tokens_life():
    user = services.user_sign_up(email="early@example.com", password="correct horse battery")
    now = int(time.time())
    session = verify_session_token(services.session_start(user=user, now=now - 500))

    assert services.session_renew(session=session, now=now - 400) is None  # 100 s of 900
    assert UserSession.objects.filter(user=user).count() == 1
    assert services.session_renew(session=session, now=now) is not None  # 500 s of 900

"""Every user write and rule: sign-up, sign-in and session renewal."""

from __future__ import annotations

import time

from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from shared_lib.auth import SessionUser, mint_session_token, verify_session_token
from shared_lib.errors import BadRequest, InvalidInput
from users.models import User
from users.selectors import user_get_active

EMAIL_INVALID = "Email must be valid"
PASSWORD_LENGTH = "Password must be between 8 and 128 characters"  # noqa: S105 (a message, not a secret)
PASSWORD_COMMON = "Password is too common"  # noqa: S105 (a message, not a secret)
PASSWORD_REQUIRED = "You must supply a password"  # noqa: S105 (a message, not a secret)
EMAIL_IN_USE = "Email in use"
INVALID_CREDENTIALS = "Invalid credentials"

PASSWORD_MIN_LENGTH = 8
# An upper bound keeps one request from making the hasher work on megabytes.
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit, and the column's length


def normalize_email(email: str) -> str:
    return email.strip().lower()


def _email_error(email: str) -> str | None:
    if not email or len(email) > EMAIL_MAX_LENGTH:
        return EMAIL_INVALID
    try:
        validate_email(email)
    except ValidationError:
        return EMAIL_INVALID
    return None


def _password_error(password: str) -> str | None:
    # Never trimmed: spaces are part of what the user chose.
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        return PASSWORD_LENGTH
    try:
        CommonPasswordValidator().validate(password)
    except ValidationError:
        return PASSWORD_COMMON
    return None


def user_sign_up(*, email: str, password: str) -> User:
    email = normalize_email(email)
    errors = [
        (message, field)
        for message, field in (
            (_email_error(email), "email"),
            (_password_error(password), "password"),
        )
        if message
    ]
    if errors:
        raise InvalidInput(errors)
    user = User(email=email)
    user.set_password(password)
    try:
        # The unique constraint decides between simultaneous sign-ups; a savepoint
        # keeps an enclosing transaction usable after the IntegrityError.
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError:
        raise BadRequest(EMAIL_IN_USE, field="email") from None
    return user


def user_sign_in(*, email: str, password: str) -> User:
    email = normalize_email(email)
    if _email_error(email):
        raise BadRequest(EMAIL_INVALID, field="email")
    if not password:
        raise BadRequest(PASSWORD_REQUIRED, field="password")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise BadRequest(INVALID_CREDENTIALS)
    user = User.objects.filter(email=email, is_active=True).first()
    if user is None:
        # Hash anyway so an unknown email takes as long as a wrong password and the
        # response time does not reveal which addresses have accounts.
        make_password(password)
        raise BadRequest(INVALID_CREDENTIALS)
    if not user.check_password(password):
        raise BadRequest(INVALID_CREDENTIALS)
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    return user


def session_token_for(user: User) -> str:
    # Sign-in and every renewal read the row, so the claim follows a promotion or a
    # demotion within one token lifetime (the other services' admins trust the claim).
    return mint_session_token(
        user_id=str(user.id), email=user.email, staff=user.is_staff and user.is_active
    )


def session_renewal_due(session: SessionUser, *, now: int | None = None) -> bool:
    """True once more than half of the token's life has passed (sliding session)."""
    current = int(time.time()) if now is None else now
    return current - session.iat > (session.exp - session.iat) / 2


def session_renew(*, session: SessionUser) -> tuple[str, SessionUser] | None:
    """A fresh token (and what it says) for a still-active user; None if the account is gone."""
    user = user_get_active(user_id=session.id)
    if user is None:
        return None
    token = session_token_for(user)
    renewed = verify_session_token(token)
    assert renewed is not None, "a token minted a moment ago must verify"
    return token, renewed

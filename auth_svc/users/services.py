"""Every user write and rule: sign-up, sign-in, sessions (start, renewal, sign-out,
revocation), password resets and the account changes that end sessions."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from shared_lib.auth import (
    SessionUser,
    mint_session_token,
    session_renewal_due,
    verify_session_token,
)
from shared_lib.errors import BadRequest, InvalidInput
from shared_lib.mail import queue_email, send_soon
from users.models import PasswordReset, User, UserSession
from users.selectors import session_get_live

EMAIL_INVALID = "Email must be valid"
PASSWORD_LENGTH = "Password must be between 8 and 128 characters"  # noqa: S105 (a message, not a secret)
PASSWORD_COMMON = "Password is too common"  # noqa: S105 (a message, not a secret)
PASSWORD_REQUIRED = "You must supply a password"  # noqa: S105 (a message, not a secret)
EMAIL_IN_USE = "Email in use"
INVALID_CREDENTIALS = "Invalid credentials"
RESET_INVALID = "This password reset link is invalid or has expired"
RESET_LIFETIME = timedelta(hours=1)

PASSWORD_MIN_LENGTH = 8
# An upper bound keeps one request from making the hasher work on megabytes.
PASSWORD_MAX_LENGTH = 128
EMAIL_MAX_LENGTH = 254  # RFC 5321 path limit, and the column's length


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_error(email: str) -> str | None:
    """Why `email` (normalised) is no valid address (the message), or None."""
    if not email or len(email) > EMAIL_MAX_LENGTH:
        return EMAIL_INVALID
    try:
        validate_email(email)
    except ValidationError:
        return EMAIL_INVALID
    return None


def password_error(password: str) -> str | None:
    """The rule a new password breaks (the message), or None."""
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
            (email_error(email), "email"),
            (password_error(password), "password"),
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
    if email_error(email):
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


def _session_end(row: UserSession) -> int:
    """The session's absolute end: no token of it lives past this, renewed or not."""
    return int(row.created_at.timestamp()) + settings.SESSION_MAX_AGE_SECONDS


def _mint(user: User, row: UserSession, now: int) -> str:
    # Sign-in and every renewal read the row, so the claim follows a promotion or a
    # demotion within one token lifetime (the other services' admins trust the claim).
    return mint_session_token(
        user_id=str(user.id),
        email=user.email,
        session_id=str(row.id),
        staff=user.is_staff and user.is_active,
        now=now,
        not_after=_session_end(row),
    )


def session_start(*, user: User, now: int | None = None) -> str:
    """A new session for a user who has just proved who they are, and its first token."""
    current = int(time.time()) if now is None else now
    started = datetime.fromtimestamp(current, tz=UTC)
    with transaction.atomic():
        # Rows past the maximum age no longer decide anything; dropping this user's here
        # keeps the table to the sessions of the last SESSION_MAX_AGE_SECONDS.
        UserSession.objects.filter(
            user=user, created_at__lte=started - timedelta(seconds=settings.SESSION_MAX_AGE_SECONDS)
        ).delete()
        row = UserSession.objects.create(user=user, created_at=started)
    return _mint(user, row, current)


def session_renew(
    *, session: SessionUser, now: int | None = None
) -> tuple[str, SessionUser] | None:
    """A fresh token (and what it says) for a live session; None when there is none to
    give: not due (less than half of the token's life has passed), the session ended
    (signed out, revoked, too old, the account gone), or a new token would not outlive
    this one because the session's maximum age is that close."""
    current = int(time.time()) if now is None else now
    if not session_renewal_due(session, now=current):
        return None
    row = session_get_live(session=session)
    if row is None:
        return None
    if min(current + settings.SESSION_TTL_SECONDS, _session_end(row)) <= session.exp:
        return None
    token = _mint(row.user, row, current)
    renewed = verify_session_token(token)
    assert renewed is not None, "a token minted a moment ago must verify"
    return token, renewed


def session_end(*, session: SessionUser) -> None:
    """Sign-out: this session only, at once in this service; the user's others stay."""
    if session.sid is None:
        return
    UserSession.objects.filter(id=session.sid, user_id=session.id, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def user_sessions_revoke(*, user: User) -> int:
    """Ends every live session of the user (their tokens are anonymous here at once, and
    never renewed); returns how many there were."""
    return UserSession.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )


def user_set_password(*, user: User, password: str | None) -> None:
    """A new password (None: no password sign-in at all); every session ends, since
    whoever changes a password may be shutting out someone who learnt the old one, and
    every reset link sent before is spent."""
    if password is not None:
        error = password_error(password)
        if error:
            raise InvalidInput([(error, "password")])
    with transaction.atomic():
        if password is None:
            user.set_unusable_password()
        else:
            user.set_password(password)
        user.save(update_fields=["password"])
        user_sessions_revoke(user=user)
        # A reset link sent before must not undo this change within its hour.
        PasswordReset.objects.filter(user=user, used_at__isnull=True).update(used_at=timezone.now())


def _admits_staff(user: User) -> bool:
    return user.is_staff and user.is_active  # what the `staff` claim says


def user_update(*, user: User, **changes: Any) -> None:
    """Saves changed fields of a user (the admin's edits). Someone who stops being staff,
    or active, loses every session: their tokens' `staff` claim opens the other services'
    admins, and those tokens must not be renewed into new ones."""
    with transaction.atomic():
        before = User.objects.select_for_update().get(pk=user.pk)
        for name, value in changes.items():
            setattr(user, name, value)
        if changes:
            user.save(update_fields=list(changes))
        if (_admits_staff(before) and not _admits_staff(user)) or (
            before.is_active and not user.is_active
        ):
            user_sessions_revoke(user=user)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_reset_request(*, email: str) -> None:
    """Email a single-use link, valid for RESET_LIFETIME, to the active account of `email`,
    if there is one. The caller answers the same whether there is or not, and the email
    goes out after commit from another thread (shared_lib.mail), so neither the answer nor
    its timing tells who has an account."""
    # The stored form, as sign-in looks it up: PostgreSQL's case-insensitive comparison
    # folds some letters (dotless i, long s) that lower() does not, and would match
    # another account than the one the email names.
    user = User.objects.filter(email=normalize_email(email), is_active=True).first()
    if user is None or not user.has_usable_password():
        return  # nobody, or an account that signs in no other way than it does now
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        # The user's row first, as password_reset_confirm takes it: the two then take
        # turns instead of each waiting on links the other holds.
        User.objects.select_for_update().filter(id=user.id).values_list("id").first()
        # Expired links decide nothing (one answer for unknown and expired): dropping this
        # user's here keeps the table to the links of the last hour, as sign-in does
        # with sessions.
        PasswordReset.objects.filter(user=user, expires_at__lte=now).delete()
        reset = PasswordReset.objects.create(
            user=user,
            token_hash=_token_hash(token),
            created_at=now,
            expires_at=now + RESET_LIFETIME,
        )
        queue_email(
            key=f"password-reset:{reset.id}",
            to=user.email,
            subject="Reset your Ticketing password",
            body=(
                "Someone (we hope you) asked to reset the password of your Ticketing "
                "account.\n\n"
                "Choose a new one here, within the hour: "
                f"{settings.SITE_URL}/auth/reset/{token}\n\n"
                "If it was not you, ignore this email: your password stays as it is.\n"
            ),
        )
        transaction.on_commit(send_soon)


def password_reset_confirm(*, token: str, password: str) -> User:
    """Set the password of the user whose link `token` is (the password rules apply) and
    end every session of theirs. The link, and every other one they were sent, is then
    spent; an unknown, spent or expired link is a BadRequest."""
    token_hash = _token_hash(token)
    found = PasswordReset.objects.filter(token_hash=token_hash).values_list("user_id").first()
    if found is None:
        raise BadRequest(RESET_INVALID, field="token")
    with transaction.atomic():
        # The user's row first: two links of one user confirmed at once take turns here
        # (each locking its own link first would deadlock on the other's).
        user = User.objects.select_for_update().get(id=found[0])
        # Gone meanwhile, if it had expired and its user asked for another link.
        reset = PasswordReset.objects.select_for_update().filter(token_hash=token_hash).first()
        if (
            reset is None
            or reset.used_at is not None
            or reset.expires_at <= timezone.now()
            or not user.is_active
        ):
            raise BadRequest(RESET_INVALID, field="token")
        error = password_error(password)
        if error:
            raise InvalidInput([(error, "password")])
        user_set_password(user=user, password=password)  # ends every session, spends links
        return user

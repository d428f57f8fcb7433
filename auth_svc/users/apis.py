"""Thin HTTP adapters over users.services (docs/api.md, /api/users/...)."""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import (
    SESSION_COOKIE,
    SessionUser,
    clear_session_cookie,
    set_session_cookie,
    token_from_request,
    verify_session_token,
)
from shared_lib.fields import ObjectBodySerializer, StrictCharField
from shared_lib.ratelimit import sign_in_account_attempt
from users import services
from users.models import User
from users.throttles import (
    PasswordResetEmailThrottle,
    PasswordResetIpThrottle,
    SigninIpThrottle,
    SignupEmailThrottle,
    SignupIpThrottle,
)


class _AsSentField(StrictCharField):
    """Never trimmed: users.services normalises an email itself, and the spaces around a
    password are part of what its owner chose."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(trim_whitespace=False, **kwargs)


@extend_schema_field(
    {"type": "string", "format": "email", "minLength": 1, "maxLength": services.EMAIL_MAX_LENGTH}
)
class EmailField(_AsSentField):
    """An address users.services takes (it trims and lower-cases it); anything else, a
    missing or non-string value included, is "Email must be valid"."""

    default_error_messages = dict.fromkeys(
        ("required", "null", "blank", "invalid"), services.EMAIL_INVALID
    )

    def to_internal_value(self, data: Any) -> str:
        email = super().to_internal_value(data)
        if services.email_error(services.normalize_email(email)):
            self.fail("invalid")
        return email


class NewPasswordField(_AsSentField):
    """A password users.services.password_error accepts, never trimmed; a missing or
    non-string value breaks the length rule. (The schema states the lengths; a common
    password is refused too, which no JSON Schema can say short of listing them all.)"""

    default_error_messages = dict.fromkeys(
        ("required", "null", "blank", "invalid"), services.PASSWORD_LENGTH
    )

    def __init__(self, **kwargs: Any) -> None:
        # The lengths are for the schema: password_error refuses first, in its own words.
        super().__init__(
            min_length=services.PASSWORD_MIN_LENGTH,
            max_length=services.PASSWORD_MAX_LENGTH,
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> str:
        password = super().to_internal_value(data)
        error = services.password_error(password)
        if error:
            raise serializers.ValidationError(error)
        return password


# Longer than any password set here is "Invalid credentials" (users.services), not a
# field error; the schema states the limit all the same.
@extend_schema_field({"type": "string", "minLength": 1, "maxLength": services.PASSWORD_MAX_LENGTH})
class PasswordField(_AsSentField):
    """The password of a sign-in, never trimmed; missing, empty or not a string is
    "You must supply a password". No minimum: an account's password is checked against
    its hash, whatever rules held when it was set."""

    default_error_messages = dict.fromkeys(
        ("required", "null", "blank", "invalid"), services.PASSWORD_REQUIRED
    )


class SignUpInputSerializer(ObjectBodySerializer):
    """Every bad field reported at once, email first."""

    email = EmailField()
    password = NewPasswordField()


class SignInInputSerializer(ObjectBodySerializer):
    """An email and a password; which account, if any, is users.services' to say."""

    email = EmailField()
    password = PasswordField()


@extend_schema_field({"type": "string", "minLength": 1, "maxLength": 100})
class ResetTokenField(_AsSentField):
    """The token of a password reset link; missing, empty or not a string is the same
    answer as an unknown one."""

    default_error_messages = dict.fromkeys(
        ("required", "null", "blank", "invalid", "max_length"), services.RESET_INVALID
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=100, **kwargs)


class PasswordResetInputSerializer(ObjectBodySerializer):
    email = EmailField()


class PasswordResetConfirmInputSerializer(ObjectBodySerializer):
    """The link's token and the new password (the sign-up rules), both judged at once."""

    token = ResetTokenField()
    password = NewPasswordField()


class UserOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()


class CurrentUserSerializer(UserOutputSerializer):
    iat = serializers.IntegerField()
    exp = serializers.IntegerField()


def _parse(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, str]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _signed_in_response(user: User, status: int) -> Response:
    response = Response(UserOutputSerializer(user).data, status=status)
    _set_token(response, services.session_start(user=user))
    return response


def _set_token(response: Response, token: str) -> None:
    session = verify_session_token(token)
    assert session is not None, "a token minted a moment ago must verify"
    # The cookie lives as long as the token, which a session's maximum age may shorten.
    set_session_cookie(response, token, max_age=max(0, session.exp - int(time.time())))


class SignUpApi(APIView):
    throttle_classes = [SignupIpThrottle, SignupEmailThrottle]

    @extend_schema(request=SignUpInputSerializer, responses={201: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        user = services.user_sign_up(**_parse(SignUpInputSerializer, request))
        return _signed_in_response(user, 201)


class SignInApi(APIView):
    # Every attempt counts per client IP; per account only failures do (the attempt is
    # given back on success), as on every admin's password form (shared_lib.ratelimit).
    throttle_classes = [SigninIpThrottle]

    # 400 "Invalid credentials" for a well-formed email and password of no account.
    @extend_schema(request=SignInInputSerializer, responses={200: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        credentials = _parse(SignInInputSerializer, request)
        attempt = sign_in_account_attempt(credentials["email"])
        if not attempt.allowed:
            raise Throttled(wait=attempt.wait)
        user = services.user_sign_in(**credentials)
        attempt.give_back()
        return _signed_in_response(user, 200)


class PasswordResetApi(APIView):
    throttle_classes = [PasswordResetIpThrottle, PasswordResetEmailThrottle]

    # 202 whatever the email: whether it has an account is never told.
    @extend_schema(
        request=PasswordResetInputSerializer,
        responses={202: inline_serializer("PasswordResetAccepted", fields={})},
    )
    def post(self, request: Request) -> Response:
        services.password_reset_request(**_parse(PasswordResetInputSerializer, request))
        return Response({}, status=202)


class PasswordResetConfirmApi(APIView):
    throttle_classes = [PasswordResetIpThrottle]

    # 400 on token for an unknown, spent or expired link; every session of the user ends.
    @extend_schema(request=PasswordResetConfirmInputSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        services.password_reset_confirm(**_parse(PasswordResetConfirmInputSerializer, request))
        return Response(status=204)


class SignOutApi(APIView):
    @extend_schema(request=None, responses={200: inline_serializer("Empty", fields={})})
    def post(self, request: Request) -> Response:
        if isinstance(request.user, SessionUser):
            services.session_end(session=request.user)
        response = Response({}, status=200)
        clear_session_cookie(response)
        return response


class CurrentUserApi(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "CurrentUserResponse",
                fields={"currentUser": CurrentUserSerializer(allow_null=True)},
            )
        }
    )
    def get(self, request: Request) -> Response:
        session = request.user if isinstance(request.user, SessionUser) else None
        if session is None:
            response = Response({"currentUser": None})
            if _ended_session_cookie(request):
                clear_session_cookie(response)
            return response
        renewal = services.session_renew(session=session)
        if renewal is None:  # not due, or the maximum age allows no later end
            return Response({"currentUser": CurrentUserSerializer(session).data})
        token, renewed = renewal
        response = Response({"currentUser": CurrentUserSerializer(renewed).data})
        _set_token(response, token)
        return response


def _ended_session_cookie(request: Request) -> bool:
    """The cookie holds a genuine token whose session has ended (signed out, revoked, the
    account gone): the browser may drop it. A forgery earns no Set-Cookie at all."""
    token = token_from_request(request._request)
    return (
        token is not None
        and token == request.COOKIES.get(SESSION_COOKIE)
        and verify_session_token(token) is not None
    )

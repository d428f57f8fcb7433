"""Thin HTTP adapters over users.services (docs/api.md, /api/users/...)."""

from __future__ import annotations

import time

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import (
    SESSION_COOKIE,
    SessionUser,
    clear_session_cookie,
    session_renewal_due,
    set_session_cookie,
    token_from_request,
    verify_session_token,
)
from shared_lib.ratelimit import sign_in_account_attempt
from users import services
from users.models import User
from users.throttles import SigninIpThrottle, SignupEmailThrottle, SignupIpThrottle


class CredentialsInputSerializer(serializers.Serializer):
    # Rules (valid email, password length) live in users.services with their exact
    # messages; the serializer only insists on strings. The password is never trimmed.
    email = serializers.CharField(
        required=False, default="", allow_blank=True, trim_whitespace=False
    )
    password = serializers.CharField(
        required=False, default="", allow_blank=True, trim_whitespace=False
    )


class SignUpSchemaSerializer(serializers.Serializer):
    """The sign-up body as the OpenAPI schema states it (users.services' rules). A common
    password is refused too, which no JSON Schema can say short of listing them all."""

    email = serializers.EmailField(max_length=services.EMAIL_MAX_LENGTH)
    password = serializers.CharField(
        min_length=services.PASSWORD_MIN_LENGTH,
        max_length=services.PASSWORD_MAX_LENGTH,
        trim_whitespace=False,
    )


class SignInSchemaSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=services.EMAIL_MAX_LENGTH)
    password = serializers.CharField(max_length=services.PASSWORD_MAX_LENGTH, trim_whitespace=False)


class UserOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    email = serializers.EmailField()


class CurrentUserSerializer(UserOutputSerializer):
    iat = serializers.IntegerField()
    exp = serializers.IntegerField()


def _parse_credentials(request: Request) -> dict[str, str]:
    serializer = CredentialsInputSerializer(data=request.data)
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

    @extend_schema(request=SignUpSchemaSerializer, responses={201: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        user = services.user_sign_up(**_parse_credentials(request))
        return _signed_in_response(user, 201)


class SignInApi(APIView):
    # Every attempt counts per client IP; per account only failures do (the attempt is
    # given back on success), as on every admin's password form (shared_lib.ratelimit).
    throttle_classes = [SigninIpThrottle]

    # 400 "Invalid credentials" for a well-formed email and password of no account.
    @extend_schema(request=SignInSchemaSerializer, responses={200: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        credentials = _parse_credentials(request)
        attempt = sign_in_account_attempt(credentials["email"])
        if not attempt.allowed:
            raise Throttled(wait=attempt.wait)
        user = services.user_sign_in(**credentials)
        attempt.give_back()
        return _signed_in_response(user, 200)


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
        if not session_renewal_due(session):
            return Response({"currentUser": CurrentUserSerializer(session).data})
        renewal = services.session_renew(session=session)
        if renewal is None:  # the maximum age allows no later end (or it ended just now)
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

"""Thin HTTP adapters over users.services (DESIGN.md §3, /api/users/...)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import SessionUser, clear_session_cookie, set_session_cookie
from users import services
from users.models import User
from users.throttles import (
    SigninEmailThrottle,
    SigninIpThrottle,
    SignupEmailThrottle,
    SignupIpThrottle,
)


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
    set_session_cookie(response, services.session_token_for(user))
    return response


class SignUpApi(APIView):
    throttle_classes = [SignupIpThrottle, SignupEmailThrottle]

    @extend_schema(request=SignUpSchemaSerializer, responses={201: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        user = services.user_sign_up(**_parse_credentials(request))
        return _signed_in_response(user, 201)


class SignInApi(APIView):
    throttle_classes = [SigninIpThrottle, SigninEmailThrottle]

    # 400 "Invalid credentials" for a well-formed email and password of no account.
    @extend_schema(request=SignInSchemaSerializer, responses={200: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        user = services.user_sign_in(**_parse_credentials(request))
        return _signed_in_response(user, 200)


class SignOutApi(APIView):
    @extend_schema(request=None, responses={200: inline_serializer("Empty", fields={})})
    def post(self, request: Request) -> Response:
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
            return Response({"currentUser": None})
        if not services.session_renewal_due(session):
            return Response({"currentUser": CurrentUserSerializer(session).data})
        renewal = services.session_renew(session=session)
        if renewal is None:  # the account was deleted or deactivated since sign-in
            response = Response({"currentUser": None})
            clear_session_cookie(response)
            return response
        token, renewed = renewal
        response = Response({"currentUser": CurrentUserSerializer(renewed).data})
        set_session_cookie(response, token)
        return response

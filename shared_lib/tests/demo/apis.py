"""DRF views exercising shared_lib's auth, error shape and rate limiting."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import OperationalError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib import errors
from shared_lib.auth import IsSignedIn
from shared_lib.http import client_ip
from shared_lib.ratelimit import RedisRateThrottle
from tests.demo.models import Visit

# APIViews give drf-spectacular no serializer to describe; say so once per view.
plain_schema = extend_schema(request=None, responses=OpenApiTypes.OBJECT)


@plain_schema
class WhoAmIApi(APIView):
    permission_classes = [IsSignedIn]

    def get(self, request: Request) -> Response:
        return Response({"id": request.user.id, "email": request.user.email})


class AddressSerializer(serializers.Serializer):
    city = serializers.CharField(max_length=50)
    zip = serializers.RegexField(r"^\d{5}$")


class ProfileSerializer(serializers.Serializer):
    email = serializers.EmailField()
    age = serializers.IntegerField(min_value=18)
    address = AddressSerializer()
    tags = serializers.ListField(child=serializers.IntegerField(), required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["email"].endswith("@blocked.example"):
            raise serializers.ValidationError("This domain is blocked")
        return attrs


@extend_schema(request=ProfileSerializer, responses={201: ProfileSerializer})
class ProfileApi(APIView):
    def post(self, request: Request) -> Response:
        serializer = ProfileSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        Visit.objects.create(view="profile")
        return Response(serializer.validated_data, status=201)


# What /api/demo/errors/<kind> raises.
ERRORS = {
    "bad-request": lambda: errors.BadRequest("Title is required", field="title"),
    "invalid-input": lambda: errors.InvalidInput(
        [("Title is required", "title"), ("Price must be greater than 0", "price"), ("Nope", None)]
    ),
    "not-authorized": lambda: errors.NotAuthorized(),
    "payment-required": lambda: errors.PaymentRequired("Your card was declined."),
    "forbidden": lambda: errors.Forbidden(),
    "not-found": lambda: errors.NotFound(),
    "conflict": lambda: errors.Conflict(),
    "service-unavailable": lambda: errors.ServiceUnavailable(),
    "http404": lambda: Http404("no such ticket 42"),
    "django-permission-denied": lambda: DjangoPermissionDenied("staff only: 42"),
    "drf-permission-denied": lambda: drf.PermissionDenied("internal reason"),
    "drf-validation-error": lambda: drf.ValidationError("Ticket is already reserved"),
    # What psycopg raises through Django when the server is unreachable (the fault
    # suite cuts a real connection; this pins the answer's shape).
    "database-unavailable": lambda: OperationalError("connection to server failed: secret"),
}


@plain_schema
class ErrorApi(APIView):
    def get(self, request: Request, kind: str) -> Response:
        raise ERRORS[kind]()


@plain_schema
class CrashApi(APIView):
    def get(self, request: Request) -> Response:
        raise RuntimeError("secret detail")


@plain_schema
class EchoApi(APIView):
    """Reads the body: records the visit and echoes request.data."""

    def post(self, request: Request) -> Response:
        data = request.data
        Visit.objects.create(view="echo")
        return Response({"received": data})


@plain_schema
class SignoutApi(APIView):
    """Never reads the body, like sign-out."""

    def post(self, request: Request) -> Response:
        Visit.objects.create(view="signout")
        return Response({})


class DemoIpThrottle(RedisRateThrottle):
    scope, rate_setting = "demo-ip", "RATE_LIMIT_DEMO"

    def get_ident(self, request: Request) -> str | None:
        return client_ip(request)


@plain_schema
class ThrottledApi(APIView):
    throttle_classes = [DemoIpThrottle]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})

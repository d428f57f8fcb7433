"""The OpenAPI schema of every service: the session auth and every status an operation answers.

    REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "shared_lib.schema.AutoSchema"}
    @extend_schema(responses={201: OrderOutput, **error_responses(404)})   # business errors
    # -> /api/<svc>/schema/ lists 400/401/404/413/415/429/503 as each view can answer them

shared_lib's AppConfig.ready() imports this module, so drf-spectacular picks the auth
extension up for every view using JWTAuthentication (the "session" cookie and Bearer
schemes). AutoSchema adds the error responses the shared machinery produces (errors.py,
auth.py, ratelimit.py), all with the one error shape, so no view has to repeat them, and
the description points readers of the docs page at DRF's browsable API (`?format=api`).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from shared_lib.auth import SESSION_COOKIE, IsSignedIn


class JWTAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "shared_lib.auth.JWTAuthentication"
    name = ["sessionCookie", "bearerAuth"]

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
            {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        ]

    def get_security_requirement(self, auto_schema: Any) -> list[dict[str, list[Any]]]:
        # Either one signs the caller in: two alternatives, not one combined requirement.
        return [{"sessionCookie": []}, {"bearerAuth": []}]


def document_paths_without_slash(endpoints: list[tuple[Any, ...]], **kwargs: Any) -> list:
    """SPECTACULAR_SETTINGS PREPROCESSING_HOOKS: `^signup/?$` is documented as `.../signup`.

    API routes accept an optional trailing slash (nothing under /api/ redirects), and the
    canonical form, the one the DESIGN names, has none.
    """
    documented = []
    for path, path_regex, method, callback in endpoints:
        if path_regex.endswith("/?$") and path.endswith("/"):
            path = path.rstrip("/")
        documented.append((path, path_regex, method, callback))
    return documented


def browsable_api_note(path: str) -> str:
    """The schema's description: where the browsable API is, with `path` as the example."""
    example = f"{path}?format=api"
    return (
        "Every operation here can also be tried in a browser through Django REST "
        f"framework's browsable API: add `?format=api` to its URL, e.g. [{example}]({example}). "
        "Without it the API answers JSON, whatever `Accept` header a request carries."
    )


def describe_browsable_api(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS: the docs page links to the browsable API.

    The example is the service's shortest path without parameters, a GET one if there is
    one (`/api/tickets`, `/api/users/currentuser`): a page that opens without input.
    """
    paths = [path for path in result.get("paths", {}) if "{" not in path]
    if paths:
        readable = [path for path in paths if "get" in result["paths"][path]]
        example = min(readable or paths, key=lambda path: (len(path), path))
        result.setdefault("info", {})["description"] = browsable_api_note(example)
    return result


class ErrorItemSerializer(serializers.Serializer):
    message = serializers.CharField()
    # Only input errors name a field (docs/api.md), so it is absent, never null.
    field = serializers.CharField(required=False)


class ErrorSerializer(serializers.Serializer):
    """The one error body: {"errors": [{"message": ..., "field": ...}]} (shared_lib.errors)."""

    errors = serializers.ListField(child=ErrorItemSerializer(), min_length=1)


# What each error status means in this API (docs/api.md), as the schema describes it.
ERROR_DESCRIPTIONS = {
    400: "Invalid input (each item names its field) or a business rule refused the request",
    401: "Not signed in: no session, or an expired, forged or malformed token",
    402: "The card was declined; the message is the payment provider's",
    403: "Signed in, but not allowed to change this resource",
    404: "No such resource (also a malformed id, or someone else's private resource)",
    405: "The path does not allow this method (see the Allow header)",
    409: "Lost a concurrent-update race; reload and try again",
    413: "Request body larger than 1 MiB",
    415: "An unsafe method with a body that is not application/json",
    429: "Rate limited; retry after the Retry-After header's seconds",
    503: "A dependency (the database, the payment provider) is unavailable; retry later",
}

_HEADER_STRING = {"type": "string"}
# Headers that come with an error status. Retry-After is documented where it may appear:
# a database outage sets it (errors.drf_exception_handler), a payment provider outage does not.
_ERROR_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "schema": _HEADER_STRING,
            "required": True,
            "description": "The Bearer challenge (RFC 9110: every 401 carries one)",
        }
    },
    429: {
        "Retry-After": {
            "schema": _HEADER_STRING,
            "required": False,
            "description": "Seconds until the rate limit lets the next request through",
        }
    },
    503: {
        "Retry-After": {
            "schema": _HEADER_STRING,
            "required": False,
            "description": "Seconds after which the same request may succeed",
        }
    },
}

_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """{status: the error response} for @extend_schema(responses=...): a view's own errors.

    For statuses the shared machinery cannot know about: a business rule's 400 on a view
    without input, 402, 403 for someone else's resource, 404 for an id in the body, 409.
    """
    return {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema plus the statuses shared_lib answers for every view.

    Derived from the view, the way the code decides them, so schema and code cannot drift:
    - 400 when the operation takes a body or query parameters (malformed JSON, invalid
      values, a bad ?limit= or ?cursor=);
    - 401 when a permission is IsSignedIn (evaluated per method, as DRF does);
    - 404 when the path has a parameter (an unknown or malformed id);
    - 413 and 415 for unsafe methods (ErrorShapeMiddleware, JsonOnlyApiMiddleware refuse
      them before the view runs, so even a body-less POST can meet them);
    - 429 when the view has throttles;
    - 503 everywhere: every operation reads or writes its database, and a lost database
      is a 503 with Retry-After (errors.drf_exception_handler), not a 500.
    A 405 belongs to no documented operation (it answers a method the path does not have),
    so it is not listed per operation; its body is the same shape all the same.
    """

    def _signin_required(self) -> bool:
        return any(isinstance(p, IsSignedIn) for p in self.view.get_permissions())

    def get_auth(self) -> list[dict[str, Any]]:
        auths = super().get_auth()
        # Every view authenticates (JWTAuthentication), but only IsSignedIn refuses an
        # anonymous caller: anywhere else a session is optional, which OpenAPI says
        # with an empty requirement. drf-spectacular only knows AllowAny for that.
        if auths and not self._signin_required() and {} not in auths:
            auths.append({})
        return auths

    def _error_statuses(self) -> list[int]:
        statuses = [503]
        takes_input = self.method in _UNSAFE_METHODS and self.get_request_serializer() is not None
        has_query = any(p.get("in") == "query" for p in self._get_parameters())
        if takes_input or has_query:
            statuses.append(400)
        if self._signin_required():
            statuses.append(401)
        if "{" in self.path:
            statuses.append(404)
        if self.method in _UNSAFE_METHODS:
            statuses += [413, 415]
        if self.view.get_throttles():
            statuses.append(429)
        return sorted(statuses)

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        # Here rather than in get_response_serializers(): @extend_schema(responses=...)
        # overrides that one, and a view's own responses must add to these, not drop them.
        responses = super()._get_response_bodies(direction)
        for status, response in error_responses(*self._error_statuses()).items():
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(response, str(status))
        for status, headers in _ERROR_HEADERS.items():
            if str(status) in responses:
                responses[str(status)].setdefault("headers", {}).update(headers)
        return dict(sorted(responses.items()))

"""One error shape for every response a service returns, and the errors services raise.

    from shared_lib.errors import BadRequest, NotFound
    raise BadRequest("Price must be greater than 0", field="price")
    # -> 400 {"errors": [{"message": "Price must be greater than 0", "field": "price"}]}

`drf_exception_handler` renders DRF's and these errors; `ErrorShapeMiddleware` reshapes
whatever Django itself answers (404 for an unknown route, 400 for a bad Host, 403 CSRF,
500) and refuses oversized bodies with 413 before anything reads them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from shared_lib.auth import AUTH_CHALLENGE
from shared_lib.error_messages import (  # the messages, importable from here too
    BAD_REQUEST,
    BODY_TOO_LARGE,
    CONFLICT,
    FORBIDDEN,
    INTERNAL_ERROR,
    MALFORMED_JSON,
    METHOD_NOT_ALLOWED,
    NOT_ACCEPTABLE,
    NOT_AUTHORIZED,
    NOT_FOUND,
    SERVICE_UNAVAILABLE,
    TOO_MANY_REQUESTS,
    UNSUPPORTED_MEDIA_TYPE,
)

logger = logging.getLogger(__name__)

# Long enough for a connection pool to notice the database is back (health checks run
# per request), short enough that a client retrying after it is not left waiting.
DATABASE_RETRY_AFTER_SECONDS = 2

_STATUS_MESSAGES = {
    400: BAD_REQUEST,
    401: NOT_AUTHORIZED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED,
    406: NOT_ACCEPTABLE,
    409: CONFLICT,
    413: BODY_TOO_LARGE,
    415: UNSUPPORTED_MEDIA_TYPE,
    429: TOO_MANY_REQUESTS,
    503: SERVICE_UNAVAILABLE,
}


def message_for_status(status: int) -> str:
    if status >= 500 and status != 503:
        return INTERNAL_ERROR
    return _STATUS_MESSAGES.get(status, BAD_REQUEST)


def error_body(message: str, field: str | None = None) -> dict[str, list[dict[str, str]]]:
    item = {"message": message}
    if field:
        item["field"] = field
    return {"errors": [item]}


def error_response(
    status: int, message: str | None = None, field: str | None = None
) -> JsonResponse:
    return JsonResponse(error_body(message or message_for_status(status), field), status=status)


class ApplicationError(Exception):
    """Base of the errors services raise; rendered as the shared error shape."""

    status_code = 400
    default_message = BAD_REQUEST

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.message = message or self.default_message
        self.field = field
        super().__init__(self.message)

    def as_body(self) -> dict[str, list[dict[str, str]]]:
        return error_body(self.message, self.field)


class BadRequest(ApplicationError):
    status_code = 400


class InvalidInput(BadRequest):
    """Several input errors reported together: [(message, field), ...]."""

    def __init__(self, errors: list[tuple[str, str | None]]) -> None:
        super().__init__(errors[0][0], field=errors[0][1])
        self.errors = errors

    def as_body(self) -> dict[str, list[dict[str, str]]]:
        return {
            "errors": [error_body(message, field)["errors"][0] for message, field in self.errors]
        }


class NotAuthorized(ApplicationError):
    status_code = 401
    default_message = NOT_AUTHORIZED


class PaymentRequired(ApplicationError):
    status_code = 402
    default_message = "Payment failed"


class Forbidden(ApplicationError):
    status_code = 403
    default_message = FORBIDDEN


class NotFound(ApplicationError):
    status_code = 404
    default_message = NOT_FOUND


class Conflict(ApplicationError):
    status_code = 409
    default_message = CONFLICT


class ServiceUnavailable(ApplicationError):
    status_code = 503
    default_message = SERVICE_UNAVAILABLE


def _flatten(detail: Any, field: str | None = None) -> Iterable[dict[str, str]]:
    """DRF validation detail (nested dicts/lists of ErrorDetail) as flat error items."""
    if isinstance(detail, Mapping):
        for key, value in detail.items():
            if key == api_settings.NON_FIELD_ERRORS_KEY:
                yield from _flatten(value, field)
            else:
                yield from _flatten(value, f"{field}.{key}" if field else str(key))
    elif isinstance(detail, list | tuple):
        for index, value in enumerate(detail):
            nested = isinstance(value, Mapping) and field is not None
            yield from _flatten(value, f"{field}.{index}" if nested else field)
    else:
        item = {"message": str(detail)}
        if field:
            item["field"] = field
        yield item


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """REST_FRAMEWORK["EXCEPTION_HANDLER"]: every API error in the shared shape.

    Unknown exceptions return None so Django logs them and answers 500 through
    ErrorShapeMiddleware, without leaking detail.
    """
    headers: dict[str, str] = {}
    if isinstance(exc, ApplicationError):
        status, body = exc.status_code, exc.as_body()
        if status == 401:  # RFC 9110: every 401 carries a challenge
            headers["WWW-Authenticate"] = AUTH_CHALLENGE
    elif isinstance(exc, Http404 | drf.NotFound):
        status, body = 404, error_body(NOT_FOUND)
    elif isinstance(exc, DjangoPermissionDenied):
        status, body = 403, error_body(FORBIDDEN)
    elif isinstance(exc, drf.ValidationError):
        status, body = 400, {"errors": list(_flatten(exc.detail)) or [{"message": BAD_REQUEST}]}
    elif isinstance(exc, drf.ParseError):
        status, body = 400, error_body(MALFORMED_JSON)
    elif isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        status, body = 401, error_body(NOT_AUTHORIZED)
        if auth_header := getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = auth_header
    elif isinstance(exc, drf.Throttled):
        status, body = 429, error_body(TOO_MANY_REQUESTS)
        if exc.wait is not None:
            headers["Retry-After"] = str(max(1, int(exc.wait + 0.999)))
    elif isinstance(exc, OperationalError | InterfaceError):
        # The database is unreachable (or the transaction lost a deadlock): nothing was
        # changed, and the same request can succeed in a moment. A 503 says exactly that;
        # a 500 would say the request itself broke something.
        logger.warning("database unavailable: %s", exc, exc_info=True)
        status, body = 503, error_body(SERVICE_UNAVAILABLE)
        headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    elif isinstance(exc, drf.APIException):
        status = exc.status_code
        body = error_body(message_for_status(status))
        if isinstance(exc, drf.MethodNotAllowed):
            allowed = context.get("view")
            if allowed is not None:
                headers["Allow"] = ", ".join(allowed.allowed_methods)
    else:
        return None
    set_rollback()
    return Response(body, status=status, headers=headers)


# Set on a response (keep_error_page) whose error page is meant for people and must keep
# its body: the admin's 403 telling a signed-in user they are not staff (admin_sso).
_KEEP_ERROR_PAGE = "keeps_its_error_page"


def keep_error_page(response: HttpResponse) -> HttpResponse:
    setattr(response, _KEEP_ERROR_PAGE, True)
    return response


def _is_error_shaped(response: HttpResponse) -> bool:
    content_type = response.get("Content-Type", "")
    return (
        content_type.startswith("application/json")
        or response.streaming
        or getattr(response, _KEEP_ERROR_PAGE, False)
        # Someone asked for the browsable API (`?format=api`, shared_lib.negotiation): its
        # page shows the error's shaped body, and for a 405 the form of the methods allowed.
        or isinstance(getattr(response, "accepted_renderer", None), BrowsableAPIRenderer)
    )


def _reshape(response: HttpResponse) -> HttpResponse:
    """Give an error response the shared JSON body, keeping its status and headers.

    A DRF error rendered by a renderer other than JSON already holds the shaped body in
    `.data`; anything else gets the generic message for its status.
    """
    data = getattr(response, "data", None)
    if isinstance(data, dict) and "errors" in data:
        body = data
    else:
        body = error_body(message_for_status(response.status_code))
    response.content = json.dumps(body).encode()
    response["Content-Type"] = "application/json"
    if "Content-Length" in response:  # set by CommonMiddleware for the old body
        response["Content-Length"] = str(len(response.content))
    return response


class ErrorShapeMiddleware:
    """Outermost guard: body size limit and the one error shape for Django's own answers.

    DRF reads the request stream itself, bypassing DATA_UPLOAD_MAX_MEMORY_SIZE, so the
    limit is enforced here from Content-Length before any view runs (413, not the 400
    Django would give). Any error response that is not already JSON — Django's 404 for
    an unknown route, 405 from a plain view, 400 for a disallowed Host, 403 from CSRF,
    500 from an unhandled exception — is replaced by the shared shape.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error_response(400, "Invalid Content-Length header")
        if limit is not None and length > limit:
            return error_response(413)
        response = self.get_response(request)
        if response.status_code >= 400 and not _is_error_shaped(response):
            return _reshape(response)
        return response


class JsonOnlyApiMiddleware:
    """Unsafe API methods accept only application/json (docs/api.md).

    This is the API's CSRF defence: the session cookie is SameSite=Lax and a cross-site
    HTML form cannot send application/json, so refusing every other declared type stops
    forged form posts even on views that never read the body (sign-out).
    """

    UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method in self.UNSAFE and request.path.startswith(settings.API_PATH_PREFIX):
            content_type = request.META.get("CONTENT_TYPE", "")
            media_type = content_type.split(";", 1)[0].strip().lower()
            has_body = request.META.get("CONTENT_LENGTH") not in (None, "", "0")
            # A DELETE without a body carries nothing to check, and no form can send one
            # (Django's own dev server labels every body-less request text/plain).
            bodyless_delete = request.method == "DELETE" and not has_body
            if (
                (media_type or has_body)
                and media_type != "application/json"
                and not bodyless_delete
            ):
                return error_response(415)
        return self.get_response(request)

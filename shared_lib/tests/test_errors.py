import json
import logging

import pytest
from django.test import Client

from shared_lib import errors
from tests.demo.models import Visit

CONFLICT = "The resource was changed by someone else; reload and try again"
UNSUPPORTED = "Unsupported media type: send application/json"


def only_error(message: str, field: str | None = None) -> dict:
    item = {"message": message} if field is None else {"message": message, "field": field}
    return {"errors": [item]}


@pytest.mark.parametrize(
    ("cls", "status", "message"),
    [
        (errors.BadRequest, 400, "Bad request"),
        (errors.NotAuthorized, 401, "Not authorized"),
        (errors.PaymentRequired, 402, "Payment failed"),
        (errors.Forbidden, 403, "Forbidden"),
        (errors.NotFound, 404, "Not Found"),
        (errors.Conflict, 409, CONFLICT),
        (errors.ServiceUnavailable, 503, "Service unavailable"),
    ],
)
def test_each_application_error_has_its_status_and_default_message(cls, status, message):
    error = cls()

    assert error.status_code == status
    assert error.as_body() == only_error(message)
    assert str(error) == message


def test_an_application_error_carries_its_field():
    error = errors.BadRequest("Price must be greater than 0", field="price")

    assert error.as_body() == only_error("Price must be greater than 0", "price")


def test_an_empty_field_is_left_out():
    assert errors.error_body("Nope", field="") == only_error("Nope")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (400, "Bad request"),
        (404, "Not Found"),
        (413, "Request body too large"),
        (418, "Bad request"),
        (500, "Something went wrong"),
        (502, "Something went wrong"),
        (503, "Service unavailable"),
    ],
)
def test_message_for_status(status, message):
    assert errors.message_for_status(status) == message


@pytest.mark.parametrize(
    ("kind", "status", "body"),
    [
        ("bad-request", 400, only_error("Title is required", "title")),
        (
            "invalid-input",
            400,
            {
                "errors": [
                    {"message": "Title is required", "field": "title"},
                    {"message": "Price must be greater than 0", "field": "price"},
                    {"message": "Nope"},
                ]
            },
        ),
        ("not-authorized", 401, only_error("Not authorized")),
        ("payment-required", 402, only_error("Your card was declined.")),
        ("forbidden", 403, only_error("Forbidden")),
        ("not-found", 404, only_error("Not Found")),
        ("conflict", 409, only_error(CONFLICT)),
        ("service-unavailable", 503, only_error("Service unavailable")),
        # Django's and DRF's own exceptions: the generic message, never their detail.
        ("http404", 404, only_error("Not Found")),
        ("django-permission-denied", 403, only_error("Forbidden")),
        ("drf-permission-denied", 403, only_error("Forbidden")),
        ("drf-validation-error", 400, only_error("Ticket is already reserved")),
        ("database-unavailable", 503, only_error("Service unavailable")),
    ],
)
def test_errors_raised_in_a_view_are_rendered_in_the_shared_shape(api_client, kind, status, body):
    response = api_client.get(f"/api/demo/errors/{kind}")

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == body


REQUIRED = "This field is required."
VALID_PROFILE = {
    "email": "ada@example.com",
    "age": 36,
    "address": {"city": "London", "zip": "12345"},
}


@pytest.mark.django_db
def test_a_valid_profile_reaches_the_view(api_client):
    response = api_client.post("/api/demo/profile", VALID_PROFILE, format="json")

    assert response.status_code == 201
    assert response.json() == VALID_PROFILE
    assert list(Visit.objects.values_list("view", flat=True)) == ["profile"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            {},
            [
                {"message": REQUIRED, "field": "email"},
                {"message": REQUIRED, "field": "age"},
                {"message": REQUIRED, "field": "address"},
            ],
        ),
        (
            {**VALID_PROFILE, "email": "not-an-email", "age": 12},
            [
                {"message": "Enter a valid email address.", "field": "email"},
                {"message": "Ensure this value is greater than or equal to 18.", "field": "age"},
            ],
        ),
        (
            {**VALID_PROFILE, "address": {"city": "", "zip": "12"}, "tags": [1, "x", 3, "y"]},
            [
                {"message": "This field may not be blank.", "field": "address.city"},
                {
                    "message": "This value does not match the required pattern.",
                    "field": "address.zip",
                },
                {"message": "A valid integer is required.", "field": "tags.1"},
                {"message": "A valid integer is required.", "field": "tags.3"},
            ],
        ),
        (
            {**VALID_PROFILE, "address": "Baker Street"},
            [
                {
                    "message": "Invalid data. Expected a dictionary, but got str.",
                    "field": "address",
                }
            ],
        ),
        # non_field_errors: a message without a field.
        (
            {**VALID_PROFILE, "email": "eve@blocked.example"},
            [{"message": "This domain is blocked"}],
        ),
    ],
    ids=["all-missing", "two-fields", "nested", "nested-not-an-object", "non-field"],
)
def test_validation_errors_are_flattened(api_client, payload, expected):
    response = api_client.post("/api/demo/profile", payload, format="json")

    assert response.status_code == 400
    assert response.json() == {"errors": expected}
    assert not Visit.objects.exists()


def test_flatten_names_list_items_of_nested_objects():
    detail = {
        "items": [{}, {"name": [errors.drf.ErrorDetail("Required")]}],
        "meta": {"non_field_errors": ["Bad meta"]},
        "non_field_errors": ["Top"],
    }

    assert list(errors._flatten(detail)) == [
        {"message": "Required", "field": "items.1.name"},
        {"message": "Bad meta", "field": "meta"},
        {"message": "Top"},
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body", [b'{"email": ', b"[1, 2", b"\xff\xfe", b"NaN", b"{'single': 'quotes'}"]
)
def test_a_malformed_json_body_is_a_400(api_client, body):
    response = api_client.generic("POST", "/api/demo/echo", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == only_error("Malformed JSON body")
    assert not Visit.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/x-www-form-urlencoded", b"name=Ada"),
        ("text/plain", b'{"name": "Ada"}'),
        ("multipart/form-data; boundary=xyz", b"--xyz--\r\n"),
        ("application/json-seq", b'{"a": 1}'),
        ("text/plain", b""),  # a declared type alone is refused, as a form would send it
        ("", b'{"a": 1}'),  # a body without a type
    ],
)
def test_unsafe_api_requests_that_are_not_json_are_415_before_the_view(
    api_client, content_type, body
):
    # SignoutApi never reads the body: only the middleware can refuse this request.
    response = api_client.generic(
        "POST", "/api/demo/signout", body, content_type=None, CONTENT_TYPE=content_type
    )

    assert response.status_code == 415
    assert response.json() == only_error(UNSUPPORTED)
    assert not Visit.objects.exists()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_every_unsafe_method_is_checked(api_client, method):
    response = api_client.generic(method, "/api/demo/signout", b"x=1", content_type="text/plain")

    assert response.status_code == 415
    assert response.json() == only_error(UNSUPPORTED)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_is_accepted(api_client, content_type):
    response = api_client.generic("POST", "/api/demo/echo", b'{"a": 1}', content_type=content_type)

    assert response.status_code == 200
    assert response.json() == {"received": {"a": 1}}


@pytest.mark.django_db
def test_a_post_with_no_body_and_no_content_type_is_allowed(client):
    response = client.generic("POST", "/api/demo/signout")

    assert response.status_code == 200
    assert response.json() == {}
    assert list(Visit.objects.values_list("view", flat=True)) == ["signout"]


def test_safe_methods_are_not_checked_for_json(client):
    response = client.generic("GET", "/api/demo/ping", b"x", content_type="text/plain")

    assert response.status_code == 200
    assert response.json() == {"pong": True}


def test_form_posts_outside_the_api_are_not_blocked(client):
    response = client.post("/demo/form", {"name": "Ada"})

    assert response.status_code == 200
    assert response.json() == {"name": "Ada"}


@pytest.mark.django_db
def test_the_admin_login_form_is_not_blocked(client, settings):
    response = client.post(
        f"/{settings.ADMIN_URL_PREFIX}login/", {"username": "x", "password": "y"}
    )

    assert response.status_code == 200
    assert "Please enter the correct username and password" in response.content.decode()


def _echo_under_a_64_byte_limit(api_client, settings, text):
    """POST {"text": text} to the echo view: (the body's size in bytes, the response)."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64
    body = json.dumps({"text": text}).encode()
    return len(body), api_client.generic(
        "POST", "/api/demo/echo", body, content_type="application/json"
    )


@pytest.mark.django_db
def test_a_body_over_the_limit_is_413_and_the_view_does_not_run(api_client, settings):
    size, response = _echo_under_a_64_byte_limit(api_client, settings, "x" * 53)

    assert size == 65
    assert response.status_code == 413
    assert response.json() == only_error("Request body too large")
    assert not Visit.objects.exists()


@pytest.mark.django_db
def test_a_body_at_the_limit_is_accepted(api_client, settings):
    size, response = _echo_under_a_64_byte_limit(api_client, settings, "x" * 52)

    assert size == 64
    assert response.status_code == 200
    assert response.json() == {"received": {"text": "x" * 52}}


def test_the_size_limit_applies_outside_the_api_too(client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 64

    response = client.post("/demo/form", {"name": "x" * 100})

    assert response.status_code == 413
    assert response.json() == only_error("Request body too large")


def test_an_invalid_content_length_is_a_400(client):
    response = client.generic(
        "POST", "/api/demo/echo", b"{}", content_type="application/json", CONTENT_LENGTH="two"
    )

    assert response.status_code == 400
    assert response.json() == only_error("Invalid Content-Length header")


@pytest.mark.parametrize(
    "path", ["/api/demo/nope", "/api/nope", "/api/demo/whoami/", "/nowhere", "/api/demo/errors/"]
)
def test_an_unknown_route_is_a_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == only_error("Not Found")


def test_an_unknown_api_route_is_404_for_json_posts_too(api_client):
    response = api_client.post("/api/demo/nope", {"a": 1}, format="json")

    assert response.status_code == 404
    assert response.json() == only_error("Not Found")


@pytest.mark.django_db
def test_a_wrong_method_on_a_drf_view_is_405_with_allow(api_client):
    response = api_client.delete("/api/demo/echo")

    assert response.status_code == 405
    assert response.json() == only_error("Method not allowed")
    assert response["Allow"] == "POST, OPTIONS"
    assert not Visit.objects.exists()


def test_a_wrong_method_on_a_plain_view_is_a_json_405_with_allow(client):
    response = client.generic("POST", "/api/demo/ping")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json() == only_error("Method not allowed")
    assert response["Allow"] == "GET"


def test_a_disallowed_host_is_a_json_400(client):
    response = client.get("/api/demo/ping", HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == only_error("Bad request")


def test_an_accept_the_api_cannot_satisfy_gets_json_not_a_406(api_client):
    response = api_client.get("/api/demo/whoami", HTTP_ACCEPT="application/xml")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == only_error("Not authorized")


def test_an_unhandled_exception_is_a_generic_500_and_its_detail_only_logged(caplog):
    client = Client(raise_request_exception=False)

    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = client.get("/api/demo/crash")

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": [{"message": "Something went wrong"}]}
    assert b"secret detail" not in response.content
    assert b"Traceback" not in response.content
    logged = [r for r in caplog.records if r.name == "django.request" and r.exc_info]
    assert len(logged) == 1
    assert repr(logged[0].exc_info[1]) == "RuntimeError('secret detail')"


def _assert_challenged(response):
    """401 in the error shape, with the challenge that says how to authenticate."""
    assert response.status_code == 401
    assert response.json() == only_error("Not authorized")
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_anonymous_caller_of_a_signed_in_view_is_401_with_a_challenge(api_client):
    response = api_client.get("/api/demo/whoami")

    _assert_challenged(response)


def test_a_raised_not_authorized_carries_the_challenge_too(api_client):
    response = api_client.get("/api/demo/errors/not-authorized")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_errors_the_api_answers_itself_carry_the_security_headers(api_client):
    response = api_client.get("/api/demo/whoami")

    assert response.status_code == 401
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/api/demo/nope", "/nowhere"])
def test_a_reshaped_error_keeps_the_security_headers(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"


def test_a_reshaped_html_error_keeps_its_challenge(api_client):
    # A browser's Accept makes DRF render HTML; the middleware still answers in the shape.
    response = api_client.get("/api/demo/whoami", HTTP_ACCEPT="text/html")

    _assert_challenged(response)


def test_a_reshaped_error_declares_the_length_of_its_new_body(client):
    response = client.get("/api/demo/nope")

    assert response.status_code == 404
    assert response["Content-Length"] == str(len(response.content))
    assert response.json() == only_error("Not Found")


def test_an_unreachable_database_is_a_503_to_retry_shortly(api_client):
    response = api_client.get("/api/demo/errors/database-unavailable")

    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert "secret" not in response.content.decode()

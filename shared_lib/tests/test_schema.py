import json

import pytest

# The docs page (Swagger UI) shows the schema's description: a link to the browsable API.
BROWSABLE_API_NOTE = (
    "Every operation here can also be tried in a browser through Django REST framework's "
    "browsable API: add `?format=api` to its URL, e.g. "
    "[/api/demo/crash?format=api](/api/demo/crash?format=api). "
    "Without it the API answers JSON, whatever `Accept` header a request carries."
)

SECURITY_SCHEMES = {
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "session"},
    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/demo/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.oai.openapi+json"
    return json.loads(response.content)


def test_the_schema_is_an_openapi_document_of_the_service(schema):
    assert schema["openapi"].startswith("3.")
    assert schema["info"] == {
        "title": "Ticketing demo API",
        "version": "1.0.0",
        "description": BROWSABLE_API_NOTE,
    }
    assert "/api/demo/whoami" in schema["paths"]
    assert "/api/demo/profile" in schema["paths"]


def test_the_schema_documents_the_session_cookie_and_bearer_schemes(schema):
    assert schema["components"]["securitySchemes"] == SECURITY_SCHEMES


def test_the_cookie_and_the_bearer_token_are_alternatives(schema):
    # OpenAPI: keys of one requirement object are all required; list items are alternatives.
    security = schema["paths"]["/api/demo/whoami"]["get"]["security"]

    assert {"sessionCookie": []} in security
    assert {"bearerAuth": []} in security
    assert {"sessionCookie": [], "bearerAuth": []} not in security


def test_the_schema_is_served_without_the_trailing_slash_too(client):
    response = client.get("/api/demo/schema?format=json")

    assert response.status_code == 200
    assert json.loads(response.content)["components"]["securitySchemes"] == SECURITY_SCHEMES


def test_the_docs_page_points_at_the_schema(client):
    response = client.get("/api/demo/docs/")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    # reverse() of "schema/?" drops the optional slash; the route accepts both spellings.
    assert 'url: "/api/demo/schema",' in response.content.decode()


ERROR_CONTENT = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def test_the_error_shape_is_one_component(schema):
    assert schema["components"]["schemas"]["Error"]["properties"] == {
        "errors": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/ErrorItem"},
            "minItems": 1,
        }
    }
    assert schema["components"]["schemas"]["Error"]["required"] == ["errors"]
    assert schema["components"]["schemas"]["ErrorItem"] == {
        "type": "object",
        "properties": {"message": {"type": "string"}, "field": {"type": "string"}},
        "required": ["message"],
    }


def test_a_signed_in_operation_documents_401_with_its_challenge(schema):
    responses = schema["paths"]["/api/demo/whoami"]["get"]["responses"]

    assert sorted(responses) == ["200", "401", "503"]
    assert responses["401"]["content"] == ERROR_CONTENT
    assert responses["401"]["headers"]["WWW-Authenticate"]["required"] is True


def test_a_write_documents_input_size_and_media_type_errors(schema):
    responses = schema["paths"]["/api/demo/profile"]["post"]["responses"]

    assert sorted(responses) == ["201", "400", "413", "415", "503"]
    for status in ["400", "413", "415", "503"]:
        assert responses[status]["content"] == ERROR_CONTENT


def test_a_throttled_operation_documents_429_with_retry_after(schema):
    responses = schema["paths"]["/api/demo/throttled"]["get"]["responses"]

    assert sorted(responses) == ["200", "429", "503"]
    assert responses["429"]["headers"]["Retry-After"]["required"] is False


def test_a_path_parameter_documents_404(schema):
    responses = schema["paths"]["/api/demo/errors/{kind}"]["get"]["responses"]

    assert "404" in responses
    assert responses["404"]["content"] == ERROR_CONTENT


def test_a_session_is_optional_where_no_permission_requires_one(schema):
    assert {} in schema["paths"]["/api/demo/profile"]["post"]["security"]
    assert {} not in schema["paths"]["/api/demo/whoami"]["get"]["security"]

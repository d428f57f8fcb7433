import json

import pytest

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
    assert schema["info"] == {"title": "Ticketing demo API", "version": "1.0.0"}
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

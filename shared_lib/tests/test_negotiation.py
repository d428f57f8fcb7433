import pytest

from tests.demo.models import Visit

# What browsers send on a page load; a server-rendered client forwards it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ACCEPTS = [
    BROWSER_ACCEPT,
    "text/html",
    "application/xml",
    "text/html;q=1.0, application/json;q=0.1",
    "image/png",
]


@pytest.mark.parametrize("accept", ACCEPTS)
def test_a_read_answers_json_whatever_the_accept(signed_in_client, accept):
    client = signed_in_client(email="reader@example.com")

    response = client.get("/api/demo/whoami", HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"id": client.user_id, "email": "reader@example.com"}


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ACCEPTS)
def test_a_write_answers_json_whatever_the_accept(api_client, accept):
    response = api_client.post(
        "/api/demo/echo", {"price": "1.50"}, format="json", HTTP_ACCEPT=accept
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"received": {"price": "1.50"}}
    assert Visit.objects.filter(view="echo").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ACCEPTS)
def test_a_validation_error_answers_json_whatever_the_accept(api_client, accept):
    response = api_client.post("/api/demo/profile", {}, format="json", HTTP_ACCEPT=accept)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert [item["field"] for item in response.json()["errors"]] == ["email", "age", "address"]
    assert not Visit.objects.exists()


@pytest.mark.parametrize("accept", ACCEPTS)
def test_an_anonymous_caller_gets_a_json_401_whatever_the_accept(api_client, accept):
    response = api_client.get("/api/demo/whoami", HTTP_ACCEPT=accept)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": [{"message": "Not authorized"}]}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "application/json", None])
def test_the_browsable_api_is_served_when_asked_for_explicitly(signed_in_client, accept):
    client = signed_in_client(email="browser@example.com")
    headers = {"HTTP_ACCEPT": accept} if accept else {}

    response = client.get("/api/demo/whoami?format=api", **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = response.content.decode()
    assert "Django REST framework" in page
    assert "browser@example.com" in page


def test_the_browsable_api_shows_an_error_in_the_shape(api_client):
    response = api_client.get("/api/demo/whoami?format=api", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 401
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert "&quot;message&quot;: &quot;Not authorized&quot;" in response.content.decode()


def test_the_browsable_api_offers_the_form_of_a_write_only_route(api_client):
    response = api_client.get("/api/demo/profile?format=api")

    assert response.status_code == 405
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert response["Allow"] == "POST, OPTIONS"
    page = response.content.decode()
    assert "&quot;message&quot;: &quot;Method not allowed&quot;" in page
    assert '<form action="/api/demo/profile?format=api" method="POST"' in page


def test_an_unknown_format_is_a_json_404(signed_in_client):
    response = signed_in_client().get("/api/demo/whoami?format=xml", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"errors": [{"message": "Not Found"}]}


def test_the_docs_page_still_answers_a_browser_with_html(client):
    response = client.get("/api/demo/docs", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/vnd.oai.openapi+json", "application/vnd.oai.openapi+json"),
        ("application/json", "application/json"),
        (BROWSER_ACCEPT, "application/vnd.oai.openapi; charset=utf-8"),
        ("text/html", "application/vnd.oai.openapi; charset=utf-8"),
    ],
)
def test_the_schema_keeps_its_own_formats(client, accept, content_type):
    response = client.get("/api/demo/schema", HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == content_type

"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import pytest

from shared_lib.parsers import JSON_TOO_DEEP
from users.models import User

pytestmark = pytest.mark.django_db

# What a browser sends on a page load; the original web client forwards it to the API.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DEEP = b"[" * 100_000 + b"]" * 100_000
PASSWORD = "correct horse battery"


@pytest.mark.parametrize("accept", [BROWSER_ACCEPT, "text/html", "application/xml"])
def test_sign_up_and_currentuser_answer_json_to_a_browser(api_client, accept):
    response = api_client.post(
        "/api/users/signup",
        {"email": "browser@example.com", "password": PASSWORD},
        format="json",
        HTTP_ACCEPT=accept,
    )

    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    user = User.objects.get(email="browser@example.com")
    assert response.json() == {"id": str(user.id), "email": "browser@example.com"}

    current = api_client.get("/api/users/currentuser", HTTP_ACCEPT=accept)

    assert current.status_code == 200
    assert current["Content-Type"] == "application/json"
    assert current.json()["currentUser"]["id"] == str(user.id)
    assert current.json()["currentUser"]["email"] == "browser@example.com"


def test_an_input_error_answers_json_to_a_browser(api_client):
    response = api_client.post(
        "/api/users/signin", {"email": "nobody@example.com"}, format="json", HTTP_ACCEPT="text/html"
    )

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "errors": [{"message": "You must supply a password", "field": "password"}]
    }


def test_deeply_nested_json_is_a_400_without_a_session(api_client):
    response = api_client.generic(
        "POST", "/api/users/signup", DEEP, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": JSON_TOO_DEEP}]}
    assert not User.objects.exists()


def test_deeply_nested_json_is_a_400_with_a_session(api_client):
    api_client.post(
        "/api/users/signup", {"email": "me@example.com", "password": PASSWORD}, format="json"
    )

    response = api_client.generic(
        "POST", "/api/users/signin", DEEP, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"message": JSON_TOO_DEEP}]}
    assert User.objects.count() == 1


def test_the_docs_page_links_to_the_browsable_api(api_client):
    schema = api_client.get("/api/users/schema", HTTP_ACCEPT="application/json").json()

    link = "[/api/users/currentuser?format=api](/api/users/currentuser?format=api)"
    assert link in schema["info"]["description"]
    page = api_client.get("/api/users/currentuser?format=api", HTTP_ACCEPT=BROWSER_ACCEPT)
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Django REST framework" in page.content.decode()

"""The API a browser-driven client meets: JSON whatever Accept, bounded JSON nesting."""

import pytest

from shared_lib.parsers import JSON_TOO_DEEP
from shared_lib.testing import api
from users.models import User

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


@pytest.mark.parametrize("accept", api.BROWSER_ACCEPTS)
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
    api.assert_deep_json_refused(api_client, "/api/users/signup", 400, JSON_TOO_DEEP)

    assert not User.objects.exists()


def test_deeply_nested_json_is_a_400_with_a_session(api_client):
    api_client.post(
        "/api/users/signup", {"email": "me@example.com", "password": PASSWORD}, format="json"
    )

    api.assert_deep_json_refused(api_client, "/api/users/signin", 400, JSON_TOO_DEEP)

    assert User.objects.count() == 1


def test_the_docs_page_links_to_the_browsable_api(api_client):
    api.assert_docs_link_to_browsable_api(
        api_client, "/api/users/schema", "/api/users/currentuser?format=api"
    )

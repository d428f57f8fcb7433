"""Sessions, Django's user and messages: built for pages, skipped for the JSON API."""

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from shared_lib.page_middleware import (
    AuthenticationMiddleware,
    MessageMiddleware,
    SessionMiddleware,
)


def _what_the_view_got(path: str) -> dict[str, bool]:
    seen: dict[str, bool] = {}

    def view(request: HttpRequest) -> HttpResponse:
        seen.update(
            session=hasattr(request, "session"),
            user=hasattr(request, "user"),
            messages=hasattr(request, "_messages"),
        )
        return HttpResponse("ok")

    stack = SessionMiddleware(AuthenticationMiddleware(MessageMiddleware(view)))
    response = stack(RequestFactory().get(path))

    assert response.status_code == 200
    return seen


@pytest.mark.parametrize("path", ["/api/tickets", "/api/orders/1", "/api/"])
def test_an_api_request_gets_no_session_user_or_messages(path):
    assert _what_the_view_got(path) == {"session": False, "user": False, "messages": False}


@pytest.mark.parametrize("path", [f"/{settings.ADMIN_URL_PREFIX}", "/readyz", "/apis"])
def test_every_other_request_gets_them_as_django_builds_them(path):
    assert _what_the_view_got(path) == {"session": True, "user": True, "messages": True}


def test_the_services_use_these_in_place_of_django_s_own():
    names = [name.rsplit(".", 1)[-1] for name in settings.MIDDLEWARE]
    ours = [name for name in settings.MIDDLEWARE if name.startswith("shared_lib.page_middleware.")]

    assert len(ours) == 3
    assert names.index("SessionMiddleware") < names.index("AuthenticationMiddleware")
    assert names.index("AuthenticationMiddleware") < names.index("AdminSignOnMiddleware")
    assert not any(name.startswith("django.contrib.") for name in settings.MIDDLEWARE)

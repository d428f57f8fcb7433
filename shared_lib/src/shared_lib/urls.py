"""URL patterns every service mounts under its own API prefix.

urlpatterns = [
    path("api/tickets/", include(api_docs_urls(prefix="api/tickets"))),
]   # -> /api/tickets/schema (OpenAPI 3) and /api/tickets/docs (Swagger UI)
api_route("signup", SignUpApi.as_view(), "signup")   # /signup and /signup/, no redirect
"""

from __future__ import annotations

from typing import Any

from django.urls import URLPattern, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from shared_lib.ids import UUID_PATTERN

# A UUID in a path; anything else there matches no route and is a 404 (docs/api.md).
UUID = UUID_PATTERN


def api_route(route: str, view: Any, name: str) -> URLPattern:
    """An API route that answers with or without a trailing slash, never redirecting.

    `route` is a regex fragment: api_route(rf"api/tickets/(?P<ticket_id>{UUID})", ...).
    """
    return re_path(rf"^{route}/?$", view, name=name)


def api_docs_urls(*, prefix: str) -> list[URLPattern]:
    name = prefix.strip("/").replace("/", "-")
    return [
        api_route("schema", SpectacularAPIView.as_view(), name=f"{name}-schema"),
        api_route(
            "docs", SpectacularSwaggerView.as_view(url_name=f"{name}-schema"), f"{name}-docs"
        ),
    ]

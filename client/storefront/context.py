"""What every page's template knows: who is signed in, and how payments are collected."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    api = getattr(request, "api", None)

    def current_user() -> dict[str, Any] | None:
        # Known from the token (storefront.api), so even the page that reports an API
        # outage shows who is signed in; none on a page rendered without the middleware.
        return api.current_user() if api is not None else None

    return {
        "current_user": current_user,
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "stripe_js_url": settings.STRIPE_JS_URL,
    }

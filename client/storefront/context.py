"""What every page's template knows: who is signed in, and how payments are collected."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from storefront.api import ApiError


def site(request: HttpRequest) -> dict[str, Any]:
    api = getattr(request, "api", None)

    def current_user() -> dict[str, Any] | None:
        # Asked only when a template shows it; an API outage must still render the page
        # (as signed out) rather than fail the error page that reports the outage.
        if api is None:
            return None
        try:
            return api.current_user()
        except ApiError:
            return None

    return {
        "current_user": current_user,
        "stripe_publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
    }

"""Per-request plumbing of the client: the API session and the Content-Security-Policy.

MIDDLEWARE = [..., "storefront.middleware.ContentSecurityPolicyMiddleware", ...,
              "storefront.middleware.ApiSessionMiddleware", ...]
request.api.get("/api/tickets")   # in a view; a renewed session cookie reaches the browser
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from shared_lib.auth import SESSION_COOKIE
from shared_lib.correlation import current_correlation_id
from shared_lib.http import client_ip
from storefront.api import Api, ApiError, ApiUnavailable

# Stripe.js is the one script from elsewhere, and only when Stripe is configured; its
# frames and API calls are what Stripe's CSP guide lists for Elements.
STRIPE_SCRIPT = "https://js.stripe.com"
STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")
STRIPE_API = "https://api.stripe.com"


def content_security_policy(*, stripe: bool) -> str:
    script = ["'self'", *([STRIPE_SCRIPT] if stripe else [])]
    frames = list(STRIPE_FRAMES) if stripe else ["'none'"]
    connect = ["'self'", *([STRIPE_API] if stripe else [])]
    directives = {
        "default-src": ["'self'"],
        "script-src": script,
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "frame-src": frames,
        "connect-src": connect,
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


class ContentSecurityPolicyMiddleware:
    """No inline script or style anywhere, so the policy can forbid both."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.policy = content_security_policy(stripe=bool(settings.STRIPE_PUBLISHABLE_KEY))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", self.policy)
        return response


def signin_redirect(request: HttpRequest, then: str | None = None) -> HttpResponseRedirect:
    """To the sign-in page, which comes back to `then` (default: this page)."""
    target = then or request.get_full_path()
    return HttpResponseRedirect(f"{reverse('signin')}?{urlencode({'next': target})}")


class ApiSessionMiddleware:
    """Gives each request an `Api` acting for the browser; relays the session cookie back.

    An ApiError a view does not handle becomes a page: 401 → sign in and come back, 404 →
    the not-found page, the gateway down → the unavailable page, anything else → the
    error page with the API's message.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        api = Api(
            session_token=request.COOKIES.get(SESSION_COOKIE),
            client_ip=client_ip(request),
            request_id=current_correlation_id(),
            host=request.get_host(),
        )
        api.begin()
        request.api = api  # type: ignore[attr-defined]
        response = self.get_response(request)
        # A view that set the session cookie itself (sign-out clears it) has the last word:
        # no API's cookie, not even a renewal still in flight, signs the browser back in.
        if SESSION_COOKIE not in response.cookies:
            for raw in api.cookies_for_browser():
                response.cookies.load(raw)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, ApiError):
            return None
        if isinstance(exception, ApiUnavailable):
            return render(
                request, "storefront/error.html", {"message": exception.message}, status=503
            )
        if exception.status == 401:
            return signin_redirect(request)
        if exception.status == 404:
            return render(request, "404.html", status=404)
        return render(
            request,
            "storefront/error.html",
            {"message": exception.message},
            status=exception.status if exception.status < 500 else 502,
        )

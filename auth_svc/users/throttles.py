"""Sign-up and sign-in rate limits: per client IP and per email (DESIGN.md §3)."""

from __future__ import annotations

from rest_framework.request import Request

from shared_lib.http import client_ip
from shared_lib.ratelimit import RedisRateThrottle
from users.services import normalize_email


class _ByIp(RedisRateThrottle):
    def get_ident(self, request: Request) -> str | None:
        return client_ip(request._request)


class _ByEmail(RedisRateThrottle):
    """Counts attempts on one account whatever address they come from (credential stuffing)."""

    rate_setting = "RATE_LIMIT_EMAIL"

    def get_ident(self, request: Request) -> str | None:
        data = request.data  # a malformed body raises ParseError -> 400, as it should
        email = data.get("email") if isinstance(data, dict) else None
        return normalize_email(email) if isinstance(email, str) and email.strip() else None


class SignupIpThrottle(_ByIp):
    scope, rate_setting = "signup-ip", "RATE_LIMIT_SIGNUP"


class SigninIpThrottle(_ByIp):
    scope, rate_setting = "signin-ip", "RATE_LIMIT_SIGNIN"


class SignupEmailThrottle(_ByEmail):
    scope = "signup-email"


class SigninEmailThrottle(_ByEmail):
    scope = "signin-email"

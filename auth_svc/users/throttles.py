"""Sign-up, sign-in and password-reset rate limits per client IP; sign-ups and reset
requests per email. Failed sign-ins per email are counted by
shared_lib.ratelimit.sign_in_account_attempt (only failures count)."""

from __future__ import annotations

from rest_framework.request import Request

from shared_lib.http import client_ip
from shared_lib.ratelimit import SIGNIN_IP_RATE, SIGNIN_IP_SCOPE, RedisRateThrottle
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
    # The scope every admin's password form counts under too (shared_lib.admin_sso).
    scope, rate_setting = SIGNIN_IP_SCOPE, SIGNIN_IP_RATE


class SignupEmailThrottle(_ByEmail):
    scope = "signup-email"


class PasswordResetIpThrottle(_ByIp):
    scope, rate_setting = "password-reset-ip", "RATE_LIMIT_PASSWORD_RESET"


class PasswordResetEmailThrottle(_ByEmail):
    # Each request may email that inbox: few an hour, whoever asks.
    scope, rate_setting = "password-reset-email", "RATE_LIMIT_PASSWORD_RESET_EMAIL"

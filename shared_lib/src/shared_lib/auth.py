"""Session auth: the EdDSA-signed JWT every service verifies and only auth_svc mints.

    from shared_lib.auth import IsSignedIn
    class TicketCreateApi(APIView):
        permission_classes = [IsSignedIn]      # request.user.id / .email, or 401

The token comes from `Authorization: Bearer <jwt>` (which wins) or the `session` cookie.
Anything that does not verify — missing, expired, forged, another key, `alg=none`, HS256
— means anonymous, never an error. Plain Django views read `request.current_user`.
An optional `staff` claim (true only, for auth_svc's staff) opens every service's admin
(shared_lib.admin_sso); a token without it is a non-staff token, as tokens always were.

Every token names its session (`sid`). Only auth_svc keeps sessions, so only it can tell
a signed-out one: it sets SESSION_CHECK, which current_user() asks about every verified
token. Other services accept a token until its `exp` (at most SESSION_TTL_SECONDS).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

SESSION_COOKIE = "session"
ALGORITHM = "EdDSA"  # the only algorithm accepted: a token naming any other is anonymous
REQUIRED_CLAIMS = ("id", "email", "iat", "exp")
# Longer than any spelling of a UUID: a huge `sid` is refused before it is parsed.
_SESSION_ID_MAX_LENGTH = 64
# Optional: a token without it means not staff. Minted only when true.
STAFF_CLAIM = "staff"
# Optional: a token without one verifies in the services that cannot check sessions
# anyway; auth_svc's SESSION_CHECK refuses it (no session row can be live for it).
SESSION_ID_CLAIM = "sid"
AUTH_CHALLENGE = 'Bearer realm="api"'  # sent with every 401 (RFC 9110)


@dataclass(frozen=True, slots=True)
class SessionUser:
    """Who the verified token says the caller is; no database row behind it."""

    id: str
    email: str
    iat: int
    exp: int
    staff: bool = False  # admin access everywhere (shared_lib.admin_sso); not in as_dict()
    sid: str | None = None  # the session auth_svc keeps (canonical UUID); not in as_dict()

    is_authenticated = True
    is_anonymous = False

    @property
    def pk(self) -> str:  # DRF throttles and logging look for .pk
        return self.id

    def as_dict(self) -> dict[str, Any]:
        # The public shape (`currentUser` in docs/api.md); `staff` is for the admins only.
        return {"id": self.id, "email": self.email, "iat": self.iat, "exp": self.exp}


@lru_cache(maxsize=8)
def _public_key(pem: str) -> Ed25519PublicKey:
    key = load_pem_public_key(pem.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ImproperlyConfigured("JWT_PUBLIC_KEY must be an Ed25519 public key")
    return key


@lru_cache(maxsize=8)
def _private_key(pem: str) -> Ed25519PrivateKey:
    key = load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("JWT_PRIVATE_KEY must be an Ed25519 private key")
    return key


def mint_session_token(
    *,
    user_id: str,
    email: str,
    session_id: str | None = None,
    staff: bool = False,
    now: int | None = None,
    not_after: int | None = None,
    private_pem: str | None = None,
    ttl_seconds: int | None = None,
) -> str:
    """A signed session token; needs JWT_PRIVATE_KEY, which only auth_svc holds.

    `session_id` names the session (auth_svc's row); without one the token names a fresh
    id no session backs, which only auth_svc would notice (test and benchmark tokens).
    The token lives SESSION_TTL_SECONDS, never past `not_after` (the session's end).
    `staff=True` adds the `staff` claim; otherwise the token carries none.
    `private_pem` and `ttl_seconds` stand in for those two settings where no Django
    settings are loaded (a benchmark signing in its users with the checkout's dev key)."""
    private_pem = private_pem or getattr(settings, "JWT_PRIVATE_KEY", None)
    if not private_pem:
        raise ImproperlyConfigured("Only auth_svc can mint session tokens (JWT_PRIVATE_KEY)")
    issued = int(time.time()) if now is None else now
    expires = issued + (settings.SESSION_TTL_SECONDS if ttl_seconds is None else ttl_seconds)
    claims = {
        "id": str(user_id),
        "email": email,
        "iat": issued,
        "exp": expires if not_after is None else min(expires, not_after),
        SESSION_ID_CLAIM: str(session_id or uuid.uuid4()),
    }
    if staff:
        claims[STAFF_CLAIM] = True
    return jwt.encode(claims, _private_key(private_pem), algorithm=ALGORITHM)


# Tokens that verified, by (public key, token): a token is re-sent with every request of
# its session, and its signature and claims cannot change, so only `exp` is checked again.
# Failures are not kept: a token whose `iat` is ahead of this clock verifies once it is
# not. Bounded; emptied when full (a full cache only costs a verification per token).
_VERIFIED_MAX = 4096
_verified: dict[tuple[str, str], SessionUser] = {}


def verify_session_token(token: str) -> SessionUser | None:
    """The user a token names, or None for anything that does not fully verify."""
    public_pem = settings.JWT_PUBLIC_KEY
    session = _verified.get((public_pem, token))
    if session is not None:
        # PyJWT's rule: expired once exp <= now.
        return session if session.exp > time.time() else None
    session = _verify(token, public_pem)
    if session is not None:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[(public_pem, token)] = session
    return session


def _verify(token: str, public_pem: str) -> SessionUser | None:
    try:
        claims = jwt.decode(
            token,
            _public_key(public_pem),
            algorithms=[ALGORITHM],
            options={"require": list(REQUIRED_CLAIMS)},
        )
        user_id = str(uuid.UUID(str(claims["id"])))
    except (jwt.PyJWTError, ValueError, TypeError):
        return None
    email, iat, exp = claims["email"], claims["iat"], claims["exp"]
    if not isinstance(email, str) or not isinstance(iat, int) or not isinstance(exp, int):
        return None
    # Only a real JSON boolean: `"false"` or `1` would be truthy or ambiguous, and a token
    # auth_svc did not shape like that is not one to trust with the admin.
    staff = claims.get(STAFF_CLAIM, False)
    if not isinstance(staff, bool):
        return None
    sid = claims.get(SESSION_ID_CLAIM)
    if sid is not None:
        # Signed by auth_svc or not at all, but still never trusted to be well formed: a
        # malformed id is anonymous, not an error in the lookup that follows.
        if not isinstance(sid, str) or len(sid) > _SESSION_ID_MAX_LENGTH:
            return None
        try:
            sid = str(uuid.UUID(sid))
        except ValueError:
            return None
    return SessionUser(id=user_id, email=email, iat=iat, exp=exp, staff=staff, sid=sid)


def session_renewal_due(session: SessionUser, *, now: float | None = None) -> bool:
    """True once more than half of the token's life has passed: auth_svc then renews it
    (a sliding session), and the web client asks it to."""
    current = time.time() if now is None else now
    return current - session.iat > (session.exp - session.iat) / 2


@lru_cache(maxsize=4)
def _session_check(path: str) -> Callable[[SessionUser], bool]:
    return import_string(path)


def session_is_live(session: SessionUser) -> bool:
    """What SESSION_CHECK says of a verified token's session; True where none is set."""
    path = getattr(settings, "SESSION_CHECK", None)
    return True if not path else _session_check(path)(session)


def token_from_request(request: HttpRequest) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.COOKIES.get(SESSION_COOKIE) or None


def current_user(request: HttpRequest) -> SessionUser | None:
    """The verified session user of a request (computed once per request)."""
    if not hasattr(request, "_session_user"):
        token = token_from_request(request)
        session = verify_session_token(token) if token else None
        if session is not None and not session_is_live(session):
            session = None
        request._session_user = session  # type: ignore[attr-defined]
    return request._session_user  # type: ignore[attr-defined]


class CurrentUserMiddleware:
    """Sets `request.current_user` (SessionUser or None) for plain Django views.

    `request.user` stays Django's own, which the admin needs for its staff sessions.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.current_user = current_user(request)  # type: ignore[attr-defined]
        return self.get_response(request)


class JWTAuthentication(BaseAuthentication):
    """DRF authentication: request.user becomes the SessionUser, or anonymous."""

    def authenticate(self, request: Request) -> tuple[SessionUser, str] | None:
        user = current_user(request._request)
        if user is None:
            return None
        return user, token_from_request(request._request) or ""

    def authenticate_header(self, request: Request) -> str:
        # Having a challenge makes DRF answer 401 (not 403) to anonymous callers.
        return AUTH_CHALLENGE


class IsSignedIn(BasePermission):
    """401 in the shared error shape unless a valid session came with the request."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, SessionUser)


def set_session_cookie(response: HttpResponse, token: str, *, max_age: int | None = None) -> None:
    """The cookie lives as long as its token (`max_age`, SESSION_TTL_SECONDS by default)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.SESSION_TTL_SECONDS if max_age is None else max_age,
        path="/",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )


def clear_session_cookie(response: HttpResponse) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", samesite="Lax")

"""The Ticketing APIs, called through the gateway on behalf of one browser request.

    api = request.api                                  # made by ApiSessionMiddleware
    ticket = api.get(f"/api/tickets/{ticket_id}").data  # or raises ApiError
    api.post("/api/orders", {"ticketId": ticket_id})

The browser's `session` cookie goes along with every call, with the browser's address and
the request id; a session cookie an API sets, renews or clears is handed back to the
browser by the middleware. Who is signed in is the token verified here with auth_svc's
public key, as every service verifies it (shared_lib.auth), so a page waits on nobody to
know; auth_svc is asked only when the token is due for renewal, beside the page's own
calls. The client never mints a token.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import urllib3
from django.conf import settings

from shared_lib.auth import SESSION_COOKIE, session_renewal_due, verify_session_token
from shared_lib.correlation import HEADER as REQUEST_ID_HEADER

logger = logging.getLogger(__name__)

UNAVAILABLE_MESSAGE = "Ticketing is unavailable right now. Please try again in a moment."
UNEXPECTED_MESSAGE = "Something went wrong. Please try again."

# A connection to the gateway is reused across requests. Connect failures are retried
# (the request never left, so even a POST is safe to resend); a read failure is not,
# since the API may have acted on it. An answer is an answer: a 429 or 503 with
# Retry-After is the page's to show (urllib3 would otherwise take it for a retry, find
# none left, and raise).
_RETRY = urllib3.Retry(
    total=2, connect=2, read=0, status=0, redirect=0, other=0, respect_retry_after_header=False
)
# Enough pooled connections for a gunicorn thread or two; more would sit idle.
_POOL_SIZE = 4

# Threads for the calls a page does not wait on in turn (the renewal beside the page's own
# call). Renewals come once per person per half token life: a few threads are plenty.
_BACKGROUND_THREADS = 4

_local = threading.local()
_background: ThreadPoolExecutor | None = None
_background_lock = threading.Lock()


def _in_background() -> ThreadPoolExecutor:
    # Made in the worker process that uses it: threads do not survive gunicorn's fork.
    global _background
    with _background_lock:
        if _background is None:
            _background = ThreadPoolExecutor(_BACKGROUND_THREADS, thread_name_prefix="api")
        return _background


def _pool() -> urllib3.PoolManager:
    # Made lazily in each process (and thread), never before gunicorn forks its workers:
    # a socket shared by two processes would interleave their requests.
    pool = getattr(_local, "pool", None)
    if pool is None:
        source = settings.API_SOURCE_ADDRESS
        pool = urllib3.PoolManager(
            maxsize=_POOL_SIZE,
            retries=_RETRY,
            block=False,
            **({"source_address": (source, 0)} if source else {}),
        )
        _local.pool = pool
    return pool


@dataclass
class ApiError(Exception):
    """An API answered 4xx/5xx; `errors` is its error shape's list."""

    status: int
    errors: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return " ".join(e["message"] for e in self.errors) or UNEXPECTED_MESSAGE

    def general(self, fields: set[str] | frozenset[str] = frozenset()) -> list[str]:
        """Messages not tied to one of `fields` (those show next to their input)."""
        return [e["message"] for e in self.errors if e.get("field") not in fields]


class ApiUnavailable(ApiError):
    """The gateway could not be reached, or could not reach the service behind it."""


@dataclass(frozen=True)
class ApiResult:
    status: int
    data: Any
    headers: urllib3.HTTPHeaderDict

    def next_cursor(self) -> str | None:
        """The `cursor` of the RFC 8288 rel="next" link, when there is a next page."""
        for link in self.headers.get("Link", "").split(","):
            target, _, params = link.partition(";")
            if 'rel="next"' in params.replace(" ", ""):
                query = parse_qs(urlsplit(target.strip().strip("<>")).query)
                cursors = query.get("cursor")
                if cursors:
                    return cursors[0]
        return None


def _errors_of(body: Any) -> list[dict[str, str]]:
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [
            {k: str(v) for k, v in e.items() if k in ("message", "field")}
            for e in body["errors"]
            if isinstance(e, dict) and "message" in e
        ]
    return []


class Api:
    def __init__(
        self,
        *,
        session_token: str | None,
        client_ip: str,
        request_id: str,
        host: str,
        base_url: str | None = None,
    ) -> None:
        self.base_url = (base_url or settings.API_BASE_URL).rstrip("/")
        self.session_token = session_token
        self.client_ip = client_ip
        self.request_id = request_id
        self.host = host
        # Set-Cookie values for `session` the APIs answered with, in order.
        self.session_cookies: list[str] = []
        self._user: dict[str, Any] | None = None
        self._user_known = False
        # The renewal asked of auth_svc in the background, and the token it is for.
        self._renewal: Future[tuple[dict[str, Any] | None, list[str]]] | None = None
        self._renewal_token: str | None = None

    def _headers(self, body: bytes | None, token: str | None) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            # The browser's Host, so links the API builds (pagination) and the Ingress's
            # host rules see the site the person is on.
            "Host": self.host,
            REQUEST_ID_HEADER: self.request_id,
            # The gateway believes this only from the client (TRUSTED_FORWARDERS): per-IP
            # rate limits then count browsers, not the one client process.
            "X-Forwarded-For": self.client_ip,
        }
        if token:
            headers["Cookie"] = f"{SESSION_COOKIE}={token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> ApiResult:
        result, set_cookies = self._send(method, path, body, params, self.session_token)
        self._keep_session_cookie(set_cookies)
        if isinstance(result, ApiError):
            raise result
        return result

    def _send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        params: dict[str, str] | None,
        token: str | None,
    ) -> tuple[ApiResult | ApiError, list[str]]:
        """One call with `token`: (its result or error, its Set-Cookie values); safe on any
        thread, since it changes nothing of this Api."""
        payload = None if body is None else json.dumps(body).encode()
        query = {k: v for k, v in (params or {}).items() if v}
        url = f"{self.base_url}{path}" + (f"?{urlencode(query)}" if query else "")
        try:
            response = _pool().request(
                method,
                url,
                body=payload,
                headers=self._headers(payload, token),
                timeout=urllib3.Timeout(connect=3.0, read=settings.API_TIMEOUT_SECONDS),
                redirect=False,
            )
        except urllib3.exceptions.HTTPError as e:
            logger.warning("API call %s %s failed: %s", method, path, e)
            raise ApiUnavailable(503, [{"message": UNAVAILABLE_MESSAGE}]) from e
        set_cookies = response.headers.getlist("Set-Cookie")
        data: Any = None
        if response.data:
            try:
                # Prices are exact decimals; a float would turn 19.99 into 19.989999...
                data = json.loads(response.data, parse_float=Decimal)
            except ValueError:
                data = None
        if response.status >= 400:
            errors = _errors_of(data)
            # The gateway's own 502/504 (service down, timed out) and an empty 503 mean
            # the site is down for now; a service's own 503 (Stripe unavailable) carries
            # a message worth showing as it is.
            if response.status in (502, 504) or (response.status == 503 and not errors):
                unavailable = ApiUnavailable(response.status, [{"message": UNAVAILABLE_MESSAGE}])
                return unavailable, set_cookies
            if response.status >= 500 and response.status != 503:
                # A fault: its detail is in the service's log, not for the person.
                logger.error("API call %s %s answered %s", method, path, response.status)
                errors = []
            error = ApiError(response.status, errors or [{"message": UNEXPECTED_MESSAGE}])
            return error, set_cookies
        return ApiResult(status=response.status, data=data, headers=response.headers), set_cookies

    def _keep_session_cookie(self, set_cookies: list[str]) -> None:
        for raw, token in _session_cookies(set_cookies):
            self.session_cookies.append(raw)
            # Later calls of this same page act as the new (or no) session.
            self.session_token = token
            self._user_known = False  # who this is now: the new token says

    def get(self, path: str, *, params: dict[str, str] | None = None) -> ApiResult:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: dict[str, Any] | None = None) -> ApiResult:
        return self.request("POST", path, {} if body is None else body)

    def put(self, path: str, body: dict[str, Any]) -> ApiResult:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> ApiResult:
        return self.request("DELETE", path)

    def begin(self) -> None:
        """At the start of a page: when the token is due for renewal, asks auth_svc for
        one in the background, so the page's own calls need not wait for it."""
        session = verify_session_token(self.session_token) if self.session_token else None
        if session is not None and session_renewal_due(session):
            self._renewal_token = self.session_token
            self._renewal = _in_background().submit(self._renew, self.session_token)

    def _renew(self, token: str) -> tuple[dict[str, Any] | None, list[str]]:
        result, set_cookies = self._send("GET", "/api/users/currentuser", None, None, token)
        if isinstance(result, ApiError):
            raise result
        return (result.data or {}).get("currentUser"), set_cookies

    def _renewal_outcome(self) -> tuple[dict[str, Any] | None, list[str]] | None:
        """What auth_svc said of the renewal (None: none was asked, or it failed: the
        token, still valid, stands as it is)."""
        if self._renewal is None:
            return None
        try:
            return self._renewal.result()
        except ApiError as e:
            logger.warning("session renewal failed: %s", e)
            return None

    def current_user(self) -> dict[str, Any] | None:
        """Who the browser is signed in as: what its token says, as in every service (a
        signed-out token counts until its `exp`), or what auth_svc answered when asked to
        renew it (an ended session is nobody)."""
        if not self._user_known:
            outcome = None
            if self.session_token is not None and self.session_token == self._renewal_token:
                outcome = self._renewal_outcome()
            if outcome is not None:
                user = outcome[0]
            else:
                session = verify_session_token(self.session_token) if self.session_token else None
                user = session.as_dict() if session is not None else None
            self._user, self._user_known = user, True
        return self._user

    def cookies_for_browser(self) -> list[str]:
        """The session cookies to hand back: the page's own calls' (a sign-in, a sign-out)
        or else the renewal's. Waits for a renewal still under way, so none is lost."""
        if self.session_cookies:
            return self.session_cookies
        outcome = self._renewal_outcome()
        return [raw for raw, _token in _session_cookies(outcome[1])] if outcome else []


def _session_cookies(set_cookies: list[str]) -> list[tuple[str, str | None]]:
    """(raw Set-Cookie, the token it sets or None when it clears) for each `session`."""
    found = []
    for raw in set_cookies:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(raw)
        except Exception:  # noqa: S112 - a malformed cookie from upstream is not ours
            continue
        if SESSION_COOKIE in cookie:
            morsel = cookie[SESSION_COOKIE]
            cleared = not morsel.value or morsel["max-age"] == "0"
            found.append((raw, None if cleared else morsel.value))
    return found

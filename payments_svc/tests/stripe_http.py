"""Reading what localstripe charged, and a recording HTTP hop in front of it.

    ledger = StripeLedger(localstripe)
    [intent] = ledger.payment_intents(order.id)        # by metadata orderId
    proxy = StripeProxy(localstripe).start()            # point STRIPE_API_BASE at proxy.url
    proxy.fail("POST", "/v1/refunds", "refuse")         # the next refund meets an outage
    proxy.fail("POST", CONFIRM, "lose")                 # a path may name {id}
    proxy.rewrite("GET", "/v1/payment_intents/{id}", fn) # every answer goes through fn

Both talk real HTTP: the ledger reads localstripe's own API (independently of the code
under test), the proxy forwards the SDK's requests unchanged and only records them (so a
test can see the Idempotency-Key on the wire) or, when told, answers the way an outage
or a lost response would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import requests
from django.db import connections

from shared_lib.testing.processes import ServerThread, free_port

API_KEY = "sk_test_local"
# What tests sign webhooks with (settings.STRIPE_WEBHOOK_SECRET set to it).
WEBHOOK_SECRET = "whsec_test_" + "x" * 24
CONFIRM = "/v1/payment_intents/{id}/confirm"
# localstripe pages lists (default 10) but has no maximum: one page holds everything.
EVERYTHING = 100_000


def unreachable_url() -> str:
    """A local address nobody listens on: connecting fails at once, as in an outage."""
    return f"http://127.0.0.1:{free_port()}"


def signature(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """A Stripe-Signature header as Stripe makes it: HMAC-SHA256 of "<timestamp>.<body>"."""
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """A Stripe event carrying `obj` (a PaymentIntent, a Charge, ... as the fake holds it)."""
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


class StripeLedger:
    def __init__(self, base: str) -> None:
        self.base = base

    def _list(self, resource: str, **params: Any) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.base}/v1/{resource}",
            params={"limit": EVERYTHING, **params},
            auth=(API_KEY, ""),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["data"]

    def payment_intents(self, order_id: Any) -> list[dict[str, Any]]:
        """Every PaymentIntent created for this order (declined ones too), oldest first."""
        intents = [
            intent
            for intent in self._list("payment_intents")
            if intent["metadata"].get("orderId") == str(order_id)
        ]
        return sorted(intents, key=lambda intent: intent["created"])

    def succeeded(self, order_id: Any) -> list[dict[str, Any]]:
        return [i for i in self.payment_intents(order_id) if i["status"] == "succeeded"]

    def refunds(self, payment_intent_id: str) -> list[dict[str, Any]]:
        return self._list("refunds", payment_intent=payment_intent_id)

    def intent(self, intent_id: str) -> dict[str, Any]:
        response = requests.get(
            f"{self.base}/v1/payment_intents/{intent_id}", auth=(API_KEY, ""), timeout=10
        )
        response.raise_for_status()
        return response.json()

    def card_last4(self, payment_method_id: str) -> str:
        """The last digits of the card a PaymentMethod holds (Stripe's test PaymentMethods,
        `pm_card_visa`, become a PaymentMethod of their own when used, as at Stripe)."""
        response = requests.get(
            f"{self.base}/v1/payment_methods/{payment_method_id}", auth=(API_KEY, ""), timeout=10
        )
        response.raise_for_status()
        return response.json()["card"]["last4"]

    def authenticate(self, client_secret: str, *, success: bool) -> dict[str, Any]:
        """The cardholder passes (or fails) the 3-D Secure challenge, as the Stripe.js
        stand-in's confirmCardPayment does in a browser: with the client secret alone."""
        intent_id = client_secret.split("_secret_")[0]
        response = requests.post(
            f"{self.base}/v1/payment_intents/{intent_id}/_authenticate",
            params={"success": "true" if success else "false"},
            json={"key": "pk_test_local", "client_secret": client_secret},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def reconfirm(self, intent_id: str, payment_method: str) -> int:
        """Give an intent another card and confirm it, as a browser holding its client
        secret could; the status code of the first refusal (200 when it went through)."""
        for path, data in (("", {"payment_method": payment_method}), ("/confirm", {})):
            response = requests.post(
                f"{self.base}/v1/payment_intents/{intent_id}{path}",
                data=data,
                auth=(API_KEY, ""),
                timeout=10,
            )
            if response.status_code != 200:
                return response.status_code
        return 200

    def refund_by_hand(self, payment_intent_id: str) -> str:
        """Refund as staff would in Stripe's dashboard (behind payments_svc's back)."""
        response = requests.post(
            f"{self.base}/v1/refunds",
            data={"payment_intent": payment_intent_id},
            auth=(API_KEY, ""),
            timeout=10,
        )
        response.raise_for_status()
        return response.json()["id"]


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    idempotency_key: str | None
    status: int | None  # None: the connection was dropped without an answer


class StripeProxy(ServerThread):
    """Forwards to localstripe and records; faults and hooks are per (method, path)."""

    REFUSE = "refuse"  # answer 503 without forwarding: Stripe is down, nothing charged
    LOSE = "lose"  # forward, then drop the connection: charged, but nobody heard back

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.recorded: list[Recorded] = []
        self.errors: list[BaseException] = []
        self._faults: dict[tuple[str, str], list[str]] = {}
        self._hooks: dict[tuple[str, str], Callable[[], None]] = {}
        self._rewrites: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def fail(self, method: str, path: str, *modes: str) -> None:
        """The next len(modes) requests to method+path meet these faults, in order."""
        with self._lock:
            self._faults.setdefault((method, path), []).extend(modes)

    def before(self, method: str, path: str, hook: Callable[[], None]) -> None:
        """Run hook (once, in the proxy's thread) before forwarding the next such request."""
        self._hooks[(method, path)] = hook

    def rewrite(
        self, method: str, path: str, change: Callable[[dict[str, Any]], dict[str, Any]] | None
    ) -> None:
        """Pass every successful JSON answer to method+path through change (None: stop)."""
        with self._lock:
            if change is None:
                self._rewrites.pop((method, path), None)
            else:
                self._rewrites[(method, path)] = change

    def keys(self, method: str, path: str) -> list[str | None]:
        return [r.idempotency_key for r in self.requests(method, path)]

    def requests(self, method: str, path: str) -> list[Recorded]:
        """What was sent to method+path (a path may name {id})."""
        return [r for r in self.recorded if r.method == method and _matches(path, r.path)]

    def _find(self, table: dict[tuple[str, str], Any], method: str, path: str) -> Any:
        for (m, pattern), value in table.items():
            if m == method and _matches(pattern, path):
                return (m, pattern), value
        return None, None

    def _take(self, method: str, path: str) -> tuple[str | None, Callable[[], None] | None]:
        with self._lock:
            _, modes = self._find(self._faults, method, path)
            mode = modes.pop(0) if modes else None
            key, hook = self._find(self._hooks, method, path)
            if key is not None:
                del self._hooks[key]
        return mode, hook

    def _changed(self, method: str, path: str, status: int, content: bytes) -> bytes:
        with self._lock:
            _, change = self._find(self._rewrites, method, path)
        if change is None or status != 200:
            return content
        return json.dumps(change(json.loads(content))).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                key = self.headers.get("Idempotency-Key")
                mode, hook = proxy._take(self.command, path)
                if hook is not None:
                    try:
                        hook()
                    except BaseException as exc:  # surfaced by the fixture's teardown
                        proxy.errors.append(exc)
                    finally:
                        connections.close_all()  # this thread's own database connection
                if mode == StripeProxy.REFUSE:
                    proxy.recorded.append(Recorded(self.command, path, key, 503))
                    self._answer(503, b'{"error": {"type": "api_error", "message": "down"}}')
                    return
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in {"host", "content-length", "connection"}
                }
                upstream = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    data=body,
                    headers=headers,
                    timeout=30,
                )
                if mode == StripeProxy.LOSE:
                    proxy.recorded.append(Recorded(self.command, path, key, None))
                    self.close_connection = True  # no answer at all: the outcome is unknown
                    return
                proxy.recorded.append(Recorded(self.command, path, key, upstream.status_code))
                content = proxy._changed(self.command, path, upstream.status_code, upstream.content)
                self._answer(upstream.status_code, content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _serve

        return Handler


def _matches(pattern: str, path: str) -> bool:
    if "{id}" not in pattern:
        return pattern == path
    regex = "^" + re.escape(pattern).replace(re.escape("{id}"), "[^/]+") + "$"
    return re.match(regex, path) is not None

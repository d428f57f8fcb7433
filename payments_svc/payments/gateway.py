"""Stripe, through the official SDK: the only place that talks to it.

    pm = payment_method_for("tok_visa", idempotency_key="...")    # pm_... as they are
    intent_id = intent_create(amount_cents=2050, payment_method=pm, idempotency_key="...",
                              metadata={...})                       # not confirmed: no charge
    intent = intent_confirm(intent_id, idempotency_key="...")      # Intent(id, status, ...)
    intent = intent_cancel(intent_id)      # one waiting for its cardholder: never charged
    refund_id = stripe_refund(payment_intent_id=intent_id, idempotency_key="...")

    event = webhook_event(request.body, request.headers.get("Stripe-Signature"))

Errors come back as our own: CardDeclined (definitely not charged, with Stripe's
message), GatewayUnavailable (outage or timeout: the outcome is unknown), RefundRefused
(Stripe will never accept this refund as asked, with its error code), InvalidWebhook (a
body Stripe did not sign with our secret, or that is no event).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)

# Legacy card tokens (Stripe Checkout, Stripe.js v2) start so; PaymentMethods are made from them.
TOKEN_PREFIX = "tok_"  # noqa: S105 (a prefix, not a secret)


class CardDeclined(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GatewayUnavailable(Exception):
    pass


class RefundRefused(Exception):
    """Stripe answered a refund with an error that no retry changes (bad request)."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidWebhook(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# Seconds a webhook's signed timestamp may lie behind (or ahead of) our clock: Stripe's
# default, which stops a captured body from being replayed later.
WEBHOOK_TOLERANCE_SECONDS = 300
WEBHOOK_SIGNATURE_INVALID = "Stripe-Signature is missing, invalid or too old"
WEBHOOK_NOT_AN_EVENT = "The body is not a Stripe event"
WEBHOOK_NOT_CONFIGURED = "Stripe webhooks are not configured here (STRIPE_WEBHOOK_SECRET)"


@dataclass(frozen=True)
class WebhookEvent:
    id: str  # evt_...
    type: str  # payment_intent.succeeded, charge.refunded, ...
    object: dict[str, Any]  # the PaymentIntent, Charge, ... as the event carries it


@dataclass(frozen=True)
class Intent:
    """What Stripe says about one PaymentIntent."""

    id: str
    status: str  # succeeded, processing, requires_action, requires_payment_method, ...
    error: str = ""  # why its last payment failed, in Stripe's words
    # What the buyer's browser needs to run the next action (3-D Secure) with Stripe.js.
    client_secret: str = ""


@cache
def _client(api_key: str, api_base: str | None, timeout: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else {},
        http_client=stripe.RequestsClient(timeout=timeout),
        # Never let the SDK resend a request on its own: whether an unanswered confirm went
        # through is settled by retrieving the attempt's PaymentIntent, not by hope.
        max_network_retries=0,
    )


def client() -> stripe.StripeClient:
    return _client(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS
    )


def _message(exc: stripe.StripeError) -> str:
    return exc.user_message or str(exc)


def _unavailable(what: str, exc: stripe.StripeError) -> GatewayUnavailable:
    logger.error(f"stripe {what} failed", extra={"error": f"{type(exc).__name__}: {exc}"})
    return GatewayUnavailable(str(exc))


def _intent(obj: Any) -> Intent:
    error = getattr(obj, "last_payment_error", None)
    message = getattr(error, "message", None) if error else None
    secret = getattr(obj, "client_secret", None)
    return Intent(id=obj.id, status=obj.status, error=message or "", client_secret=secret or "")


def payment_method_for(token: str, *, idempotency_key: str) -> str:
    """The PaymentMethod to charge: a pm_ id as it is, a legacy card token made into one
    (as Stripe recommends for tokens; a real token is single-use, so the key makes a
    retry get the same PaymentMethod back)."""
    if not token.startswith(TOKEN_PREFIX):
        return token
    try:
        method: Any = client().v1.payment_methods.create(
            params={"type": "card", "card": {"token": token}},
            options={"idempotency_key": idempotency_key},
        )
    except (stripe.CardError, stripe.InvalidRequestError) as exc:
        # e.g. "No such token": Stripe refused before charging anything.
        raise CardDeclined(_message(exc)) from exc
    except stripe.StripeError as exc:  # connection, timeout, 5xx, rate limit, auth
        raise _unavailable("payment method", exc) from exc
    return method.id


def intent_create(
    *, amount_cents: int, payment_method: str, idempotency_key: str, metadata: dict[str, str]
) -> str:
    """Create a PaymentIntent without confirming it (nothing is charged yet); its id."""
    try:
        intent: Any = client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": "usd",
                "payment_method": payment_method,
                "payment_method_types": ["card"],
                "metadata": metadata,
            },
            options={"idempotency_key": idempotency_key},
        )
    except (stripe.CardError, stripe.InvalidRequestError) as exc:
        # e.g. "No such PaymentMethod": refused before anything could be charged.
        raise CardDeclined(_message(exc)) from exc
    except stripe.StripeError as exc:
        raise _unavailable("payment intent", exc) from exc
    return intent.id


def intent_confirm(intent_id: str, *, idempotency_key: str) -> Intent:
    """Confirm (charge) a PaymentIntent; CardDeclined when the card is refused."""
    return _act_on_intent(
        "confirm",
        intent_id,
        lambda: client().v1.payment_intents.confirm(
            intent_id, options={"idempotency_key": idempotency_key}
        ),
    )


def _act_on_intent(what: str, intent_id: str, call: Any) -> Intent:
    """Stripe's answer to confirming or cancelling an intent. One Stripe refuses as the
    intent stands (confirmed by a request whose answer was lost, succeeded before it
    could be cancelled) is answered with what the intent says now."""
    try:
        return _intent(call())
    except stripe.CardError as exc:
        raise CardDeclined(_message(exc)) from exc
    except stripe.InvalidRequestError as exc:
        logger.warning(f"stripe {what} refused", extra={"error": f"{exc}"})
        return intent_retrieve(intent_id)
    except stripe.StripeError as exc:
        raise _unavailable(what, exc) from exc


def intent_retrieve(intent_id: str) -> Intent:
    try:
        intent: Any = client().v1.payment_intents.retrieve(intent_id)
    except stripe.StripeError as exc:
        # Not found is not "not charged" here: the id came from Stripe itself.
        raise _unavailable("retrieve", exc) from exc
    return _intent(intent)


def intent_cancel(intent_id: str) -> Intent:
    """Cancel a PaymentIntent nobody may finish any more (declined, or its order gone):
    its client secret can no longer charge. One that succeeded meanwhile says so."""
    return _act_on_intent(
        "cancel", intent_id, lambda: client().v1.payment_intents.cancel(intent_id)
    )


def intent_find(*, attempt_id: str) -> Intent | None:
    """The PaymentIntent whose metadata names this attempt, if Stripe has one.

    For an attempt with no intent id stored: its create request may have reached Stripe
    with the answer lost. A succeeded one wins if there are several.
    """
    try:
        found: Any = client().v1.payment_intents.search(
            params={"query": f"metadata['attemptId']:'{attempt_id}'"}
        )
    except stripe.StripeError as exc:
        raise _unavailable("search", exc) from exc
    intents = [_intent(obj) for obj in found.data]
    intents.sort(key=lambda intent: intent.status != "succeeded")
    return intents[0] if intents else None


def stripe_refund(*, payment_intent_id: str, idempotency_key: str) -> str:
    """Refund the whole of a PaymentIntent's charge; the Refund id."""
    try:
        refund: Any = client().v1.refunds.create(
            params={"payment_intent": payment_intent_id},
            options={"idempotency_key": idempotency_key},
        )
    except (stripe.InvalidRequestError, stripe.IdempotencyError) as exc:
        raise RefundRefused(_message(exc), exc.code) from exc
    except stripe.StripeError as exc:
        raise _unavailable("refund", exc) from exc
    return refund.id


def webhook_event(payload: bytes, signature: str | None) -> WebhookEvent:
    """The event Stripe sent, once its Stripe-Signature proves it came from Stripe (signed
    with STRIPE_WEBHOOK_SECRET within WEBHOOK_TOLERANCE_SECONDS); InvalidWebhook if not."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise InvalidWebhook(WEBHOOK_NOT_CONFIGURED)
    try:
        event: Any = stripe.Webhook.construct_event(
            payload, signature, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as exc:
        raise InvalidWebhook(WEBHOOK_SIGNATURE_INVALID) from exc
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # signed, but no event
        raise InvalidWebhook(WEBHOOK_NOT_AN_EVENT) from exc
    body = event.to_dict() if hasattr(event, "to_dict") else {}
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    event_id, event_type = body.get("id"), body.get("type")
    if not (isinstance(event_id, str) and isinstance(event_type, str) and isinstance(obj, dict)):
        raise InvalidWebhook(WEBHOOK_NOT_AN_EVENT)
    return WebhookEvent(id=event_id, type=event_type, object=obj)

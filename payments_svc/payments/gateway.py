"""Stripe, through the official SDK: the only place that talks to it.

    charge = stripe_charge(amount_cents=2050, token="pm_card_visa", idempotency_key="...")
    refund_id = stripe_refund(payment_intent_id=charge, idempotency_key="...")

Errors come back as our own: CardDeclined (definitely not charged, with Stripe's
message), GatewayUnavailable (outage or timeout: the outcome is unknown).
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import stripe
from django.conf import settings

logger = logging.getLogger(__name__)


class CardDeclined(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class GatewayUnavailable(Exception):
    pass


@cache
def _client(api_key: str, api_base: str | None, timeout: int) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base} if api_base else {},
        http_client=stripe.RequestsClient(timeout=timeout),
        # Never let the SDK resend a charge on its own: whether an unanswered charge went
        # through is settled by our attempt record and its idempotency key, not by hope.
        max_network_retries=0,
    )


def client() -> stripe.StripeClient:
    return _client(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT_SECONDS
    )


def stripe_charge(
    *, amount_cents: int, token: str, idempotency_key: str, metadata: dict[str, str]
) -> str:
    """Create and confirm a PaymentIntent at once; its id when it succeeded."""
    try:
        intent: Any = client().v1.payment_intents.create(
            params={
                "amount": amount_cents,
                "currency": "usd",
                "payment_method": token,
                "payment_method_types": ["card"],
                "confirm": True,
                "metadata": metadata,
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.CardError as exc:
        raise CardDeclined(exc.user_message or str(exc)) from exc
    except stripe.InvalidRequestError as exc:
        # e.g. "No such PaymentMethod": Stripe refused before charging anything.
        raise CardDeclined(exc.user_message or str(exc)) from exc
    except stripe.StripeError as exc:  # connection, timeout, 5xx, rate limit, auth
        logger.error("stripe charge failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        raise GatewayUnavailable(str(exc)) from exc
    if intent.status != "succeeded":
        # Cards needing 3-D Secure etc. are not supported by this flow.
        raise CardDeclined(f"Payment could not be completed (status: {intent.status})")
    return intent.id


def stripe_refund(*, payment_intent_id: str, idempotency_key: str) -> str:
    try:
        refund: Any = client().v1.refunds.create(
            params={"payment_intent": payment_intent_id},
            options={"idempotency_key": idempotency_key},
        )
    except stripe.StripeError as exc:
        raise GatewayUnavailable(str(exc)) from exc
    return refund.id

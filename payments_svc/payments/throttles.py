"""How often one buyer may try a card, and ask Stripe about a payment (docs/api.md, rate
limits): each is a call to Stripe, whose own rate limit every buyer shares."""

from __future__ import annotations

from shared_lib.ratelimit import PerUserThrottle


class PaymentCreateThrottle(PerUserThrottle):
    """Card attempts per buyer: a few declines and retries pass, card testing (trying
    stolen cards one after another) does not."""

    scope, rate_setting = "payments-user", "RATE_LIMIT_PAYMENTS"


class PaymentCheckThrottle(PerUserThrottle):
    """Payment checks per buyer: each open payment's check asks Stripe."""

    scope, rate_setting = "payment-checks-user", "RATE_LIMIT_PAYMENT_CHECKS"

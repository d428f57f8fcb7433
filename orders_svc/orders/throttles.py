"""How fast one buyer may place orders (docs/api.md, rate limits)."""

from __future__ import annotations

from shared_lib.ratelimit import PerUserThrottle


class OrderCreateThrottle(PerUserThrottle):
    """Per buyer, so cancelling and re-ordering cannot churn through tickets."""

    scope, rate_setting = "orders-user", "RATE_LIMIT_ORDERS"

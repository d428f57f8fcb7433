"""How fast one buyer may place orders (docs/api.md, rate limits)."""

from __future__ import annotations

from rest_framework.request import Request

from shared_lib.ratelimit import RedisRateThrottle


class OrderCreateThrottle(RedisRateThrottle):
    """Per signed-in user, so cancelling and re-ordering cannot churn through tickets."""

    scope, rate_setting = "orders-user", "RATE_LIMIT_ORDERS"

    def get_ident(self, request: Request) -> str | None:  # type: ignore[override]
        return request.user.id if request.user.is_authenticated else None

"""Thin HTTP adapters over orders.services (docs/api.md, /api/orders...)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orders import selectors, services
from orders.models import Order
from orders.throttles import OrderCreateThrottle
from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.fields import IdField, ObjectBodySerializer
from shared_lib.pagination import PAGE_PARAMETERS, paginate
from shared_lib.schema import error_responses


class OrderInputSerializer(ObjectBodySerializer):
    """The ticket to buy."""

    ticketId = IdField()


class OrderTicketSerializer(serializers.Serializer):
    """The ticket as the order sees it: its current title, the price the order was made at."""

    id = serializers.UUIDField(source="ticket_id")
    title = serializers.CharField(source="ticket.title")
    price = serializers.DecimalField(
        max_digits=8,
        decimal_places=2,
        coerce_to_string=False,
        help_text="The price the order was made at: what the buyer pays, whatever later edits.",
    )
    version = serializers.IntegerField(source="ticket.version")


class OrderOutputSerializer(serializers.Serializer):
    """An order as every endpoint answers it, for the OpenAPI schema; order_json builds it
    (a serializer per row cost more than the page's query)."""

    id = serializers.UUIDField()
    userId = serializers.UUIDField(source="user_id")
    status = serializers.ChoiceField(choices=Order.Status.choices)
    expiresAt = serializers.DateTimeField(source="expires_at")
    ticket = OrderTicketSerializer(source="*")
    version = serializers.IntegerField()


# The Order fields (and its ticket's) order_json reads.
ORDER_FIELDS = (
    "id",
    "user_id",
    "status",
    "expires_at",
    "ticket_id",
    "price",
    "version",
    "ticket__title",
    "ticket__version",
)


def order_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """An order's JSON (OrderOutputSerializer's shape) from a `.values(*ORDER_FIELDS)` row
    (or _order_row). Money is a JSON number and expiresAt an ISO 8601 UTC time ending in Z,
    as the serializer renders them (the renderer writes the datetime)."""
    return {
        "id": str(row["id"]),
        "userId": str(row["user_id"]),
        "status": row["status"],
        "expiresAt": row["expires_at"],
        "ticket": {
            "id": str(row["ticket_id"]),
            "title": row["ticket__title"],
            "price": float(row["price"]),
            "version": row["ticket__version"],
        },
        "version": row["version"],
    }


def _order_row(order: Order) -> dict[str, Any]:
    """An Order (with its ticket) as the row order_json reads."""
    return {
        **vars(order),
        "ticket__title": order.ticket.title,
        "ticket__version": order.ticket.version,
    }


class OrderListCreateApi(APIView):
    permission_classes = [IsSignedIn]

    def get_throttles(self) -> list[OrderCreateThrottle]:
        # Only placing orders is limited; reading one's own list is not.
        return [OrderCreateThrottle()] if self.request.method == "POST" else []

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: OrderOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        orders = selectors.order_list_for(user_id=uuid.UUID(request.user.id))
        page = paginate(request, orders.values(*ORDER_FIELDS, "created_at"))
        return page.response([order_json(row) for row in page.items])

    @extend_schema(
        request=OrderInputSerializer,
        # 404: no such ticket; 400 also for a reserved ticket, one's own, or too many
        # unpaid orders (429, past RATE_LIMIT_ORDERS, comes with the throttle).
        responses={201: OrderOutputSerializer, **error_responses(404)},
    )
    def post(self, request: Request) -> Response:
        serializer = OrderInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        order = services.order_create(
            user_id=uuid.UUID(request.user.id),
            user_email=request.user.email,
            # The service takes an id as the wire carries it (shared_lib.ids.parse_id).
            ticket_id=str(serializer.validated_data["ticketId"]),
        )
        return Response(order_json(_order_row(order)), status=201)


class OrderDetailApi(APIView):
    permission_classes = [IsSignedIn]

    @extend_schema(responses={200: OrderOutputSerializer})
    def get(self, request: Request, order_id: str) -> Response:
        order = selectors.order_get_for(
            order_id=uuid.UUID(order_id), user_id=uuid.UUID(request.user.id)
        )
        if order is None:
            raise NotFound()
        return Response(order_json(_order_row(order)))

    # 400: the order is already complete (paid); cancelling a cancelled one is a 204.
    @extend_schema(request=None, responses={204: None, **error_responses(400)})
    def delete(self, request: Request, order_id: str) -> Response:
        services.order_cancel(order_id=uuid.UUID(order_id), user_id=uuid.UUID(request.user.id))
        return Response(status=204)

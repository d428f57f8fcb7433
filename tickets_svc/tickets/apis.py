"""Thin HTTP adapters over tickets.services (docs/api.md, /api/tickets...)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.pagination import PAGE_PARAMETERS, paginate
from shared_lib.schema import error_responses
from tickets import selectors, services

# The rules of services.validate_ticket_input, as JSON Schema, so a client (and the fuzz
# tests) know exactly which values succeed: a title of 1-200 characters once trimmed, a
# price > 0 and < 1,000,000 with at most 2 decimals, as a number or a plain decimal string
# (surrounding spaces and trailing zeros allowed, as Decimal reads them).
TITLE_SCHEMA = {"type": "string", "pattern": r"^\s*\S([\s\S]{0,198}\S)?\s*$"}
PRICE_SCHEMA = {
    "oneOf": [
        {
            "type": "number",
            "minimum": 0,
            "exclusiveMinimum": True,
            "maximum": 1_000_000,
            "exclusiveMaximum": True,
            "multipleOf": 0.01,
        },
        {
            "type": "string",
            "pattern": r"^\s*\+?0*([1-9][0-9]{0,5}(\.[0-9]{1,2}0*)?|0\.(0[1-9]|[1-9][0-9]?)0*)\s*$",
        },
    ]
}


@extend_schema_field(TITLE_SCHEMA)
class TitleField(serializers.CharField):
    pass


@extend_schema_field(PRICE_SCHEMA)
class PriceField(serializers.Field):
    pass


class TicketInputSerializer(serializers.Serializer):
    """The request body, for the OpenAPI schema. The rules and their exact messages are in
    services (docs/development.md), which also decide the order of checks, so views pass
    the raw values."""

    title = TitleField()
    price = PriceField()


class TicketOutputSerializer(serializers.Serializer):
    """A ticket as every endpoint answers it, for the OpenAPI schema; ticket_json builds it
    (a serializer per row cost more than the page's query)."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    price = serializers.DecimalField(max_digits=8, decimal_places=2, coerce_to_string=False)
    userId = serializers.UUIDField(source="user_id")
    version = serializers.IntegerField()
    orderId = serializers.UUIDField(source="order_id", allow_null=True)


# The Ticket fields ticket_json reads.
TICKET_FIELDS = ("id", "title", "price", "user_id", "version", "order_id")


def ticket_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ticket's JSON (TicketOutputSerializer's shape) from a `.values(*TICKET_FIELDS)`
    row or a Ticket's vars(). Money is a JSON number, as the serializer renders it."""
    order_id = row["order_id"]
    return {
        "id": str(row["id"]),
        "title": row["title"],
        "price": float(row["price"]),
        "userId": str(row["user_id"]),
        "version": row["version"],
        "orderId": None if order_id is None else str(order_id),
    }


def _input(request: Request) -> dict:
    """title and price as sent (None when absent); a body that is not an object has
    neither, so the service reports both fields -- after its 404 and 403 checks."""
    data = request.data if isinstance(request.data, dict) else {}
    return {"title": data.get("title"), "price": data.get("price")}


class TicketListCreateApi(APIView):
    def get_permissions(self) -> list:
        return [IsSignedIn()] if self.request.method == "POST" else []

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: TicketOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.ticket_list_available().values(*TICKET_FIELDS, "created_at")
        page = paginate(request, rows)
        return page.response([ticket_json(row) for row in page.items])

    @extend_schema(request=TicketInputSerializer, responses={201: TicketOutputSerializer})
    def post(self, request: Request) -> Response:
        ticket = services.ticket_create(user_id=uuid.UUID(request.user.id), **_input(request))
        return Response(ticket_json(vars(ticket)), status=201)


class TicketDetailApi(APIView):
    def get_permissions(self) -> list:
        return [IsSignedIn()] if self.request.method == "PUT" else []

    @extend_schema(responses={200: TicketOutputSerializer})
    def get(self, request: Request, ticket_id: str) -> Response:
        ticket = selectors.ticket_get(ticket_id=uuid.UUID(ticket_id))
        if ticket is None:
            raise NotFound()
        return Response(ticket_json(vars(ticket)))

    @extend_schema(
        request=TicketInputSerializer,
        # 400 also for a reserved ticket, 403 for someone else's, 409 for a lost edit race.
        responses={200: TicketOutputSerializer, **error_responses(403, 409)},
    )
    def put(self, request: Request, ticket_id: str) -> Response:
        ticket = services.ticket_update(
            ticket_id=uuid.UUID(ticket_id), user_id=uuid.UUID(request.user.id), **_input(request)
        )
        return Response(ticket_json(vars(ticket)))

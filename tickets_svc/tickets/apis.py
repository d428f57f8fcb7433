"""Thin HTTP adapters over tickets.services (docs/api.md, /api/tickets...)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import IsSignedIn
from shared_lib.errors import Forbidden, NotFound
from shared_lib.fields import ObjectBodySerializer, StrictCharField
from shared_lib.pagination import PAGE_PARAMETERS, paginate
from shared_lib.schema import error_responses
from tickets import selectors, services

# The schema states what TitleField and PriceField take, from the same constants, so a
# client (and the fuzz tests) know exactly which values succeed.
_PRICE_WHOLE_DIGITS = services.PRICE_LIMIT.adjusted()  # 6: prices below 1,000,000
_PRICE_PLACES = -services.CENT.as_tuple().exponent  # 2
if services.PRICE_LIMIT != 10**_PRICE_WHOLE_DIGITS:
    raise ImproperlyConfigured("the price schema's string pattern needs a power-of-ten limit")


# The limit applies once the title is trimmed, so the schema says it with a pattern: a
# maxLength would refuse the surrounding spaces a client may send.
@extend_schema_field(
    {
        "type": "string",
        "pattern": rf"^\s*\S([\s\S]{{0,{services.TITLE_MAX_LENGTH - 2}}}\S)?\s*$",
    }
)
class TitleField(StrictCharField):
    """A string of 1 to TITLE_MAX_LENGTH characters once trimmed; anything else that is
    not a long enough string is "Title is required"."""

    default_error_messages = {
        **dict.fromkeys(("required", "null", "blank", "invalid"), services.TITLE_REQUIRED),
        "too_long": services.TITLE_TOO_LONG,
    }

    def to_internal_value(self, data: Any) -> str:
        title = super().to_internal_value(data)
        if len(title) > services.TITLE_MAX_LENGTH:
            self.fail("too_long")
        return title


# A numeric string in plain decimal notation: no exponent, no thousands separators.
_PLAIN_DECIMAL = re.compile(r"^[+-]?\d+(\.\d+)?$")


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "number",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": int(services.PRICE_LIMIT),
                "exclusiveMaximum": True,
                "multipleOf": float(services.CENT),
            },
            {
                # Surrounding spaces and trailing zeros allowed, as Decimal reads them.
                "type": "string",
                "pattern": (
                    rf"^\s*\+?0*([1-9][0-9]{{0,{_PRICE_WHOLE_DIGITS - 1}}}"
                    rf"(\.[0-9]{{1,{_PRICE_PLACES}}}0*)?"
                    rf"|0\.[0-9]{{0,{_PRICE_PLACES - 1}}}[1-9]0*)\s*$"
                ),
            },
        ]
    }
)
class PriceField(serializers.Field):
    """An exact amount: a JSON number (a Decimal from shared_lib.parsers) or a numeric
    string, more than 0, less than PRICE_LIMIT, in whole cents (trailing zeros are not
    extra decimals). Anything that is not such a number is "Price must be greater than 0"."""

    default_error_messages = {
        **dict.fromkeys(("required", "null", "invalid"), services.PRICE_POSITIVE),
        "too_high": services.PRICE_TOO_HIGH,
        "decimals": services.PRICE_DECIMALS,
    }

    def to_internal_value(self, data: Any) -> Decimal:
        # bool is an int in Python; a JSON true is not a price.
        if isinstance(data, int | Decimal) and not isinstance(data, bool):
            amount = Decimal(data)
        elif isinstance(data, str) and _PLAIN_DECIMAL.match(data.strip()):
            amount = Decimal(data.strip())
        else:
            self.fail("invalid")
        if not amount.is_finite() or amount <= 0:
            self.fail("invalid")
        # The limit first: quantize() cannot represent a number of 28+ digits at cents.
        if amount >= services.PRICE_LIMIT:
            self.fail("too_high")
        if amount != amount.quantize(services.CENT):
            self.fail("decimals")
        return amount.quantize(services.CENT)


class TicketInputSerializer(ObjectBodySerializer):
    """A ticket's title and price, every bad field reported at once (title first)."""

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
        serializer = TicketInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_create(
            user_id=uuid.UUID(request.user.id), **serializer.validated_data
        )
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
        user_id = uuid.UUID(request.user.id)
        # 404, then 403, then the body (docs/api.md): someone else's ticket is refused
        # whatever was sent. ticket_update checks both again as it writes.
        ticket = selectors.ticket_get(ticket_id=uuid.UUID(ticket_id))
        if ticket is None:
            raise NotFound()
        if ticket.user_id != user_id:
            raise Forbidden()
        serializer = TicketInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_update(
            ticket_id=ticket.id, user_id=user_id, **serializer.validated_data
        )
        return Response(ticket_json(vars(ticket)))

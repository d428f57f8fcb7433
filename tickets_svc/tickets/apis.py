"""Thin HTTP adapters over tickets.services (docs/api.md, /api/tickets...)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

from django.core.exceptions import ImproperlyConfigured
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from shared_lib.auth import IsSignedIn
from shared_lib.errors import NotFound
from shared_lib.fields import ObjectBodySerializer
from shared_lib.money import SMALLEST_CHARGE
from shared_lib.pagination import PAGE_PARAMETERS, paginate
from shared_lib.schema import error_responses
from tickets import selectors, services
from tickets.models import ticket_status

# The schema states what TitleField and PriceField take, from the same constants, so a
# client (and the fuzz tests) know exactly which values succeed.
_PRICE_WHOLE_DIGITS = services.PRICE_LIMIT.adjusted()  # 6: prices below 1,000,000
_PRICE_PLACES = -services.CENT.as_tuple().exponent  # 2
if services.PRICE_LIMIT != 10**_PRICE_WHOLE_DIGITS:
    raise ImproperlyConfigured("the price schema's string pattern needs a power-of-ten limit")
_SMALLEST_TENTHS = int(SMALLEST_CHARGE * 10)  # 5: prices from 0.50
if not 0 < _SMALLEST_TENTHS < 10 or _SMALLEST_TENTHS != SMALLEST_CHARGE * 10:
    raise ImproperlyConfigured("the price schema's string pattern needs a minimum in tenths")

T = TypeVar("T")


def _judged(rule: Callable[[Any], tuple[str | None, T]], data: Any) -> T:
    """`data` as a tickets.services rule cleans it, or the rule's message as the field's."""
    message, value = rule(data)
    if message:
        raise serializers.ValidationError(message)
    return value


# A character a title keeps as it is: neither whitespace nor refused (shared_lib.text).
_TITLE_CHARACTER = r"[^\s\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\u202a-\u202e\u2066-\u2069]"


# The limit applies once the title's whitespace is one space, so the schema says it with
# a pattern (a maxLength would refuse spaces a client may send): a first character, then
# up to TITLE_MAX_LENGTH - 1 more units, each a character or a run of whitespace before
# one (a single space once stored).
@extend_schema_field(
    {
        "type": "string",
        "pattern": (
            rf"^\s*{_TITLE_CHARACTER}(?:{_TITLE_CHARACTER}|\s+(?={_TITLE_CHARACTER}))"
            rf"{{0,{services.TITLE_MAX_LENGTH - 1}}}\s*$"
        ),
    }
)
class TitleField(serializers.CharField):
    """A title tickets.services.title_error accepts, on one line. A CharField for DRF's refusal
    of NUL and lone surrogates, which no database column stores."""

    # What DRF refuses before to_internal_value (missing, null, only spaces), in the
    # words title_error would use.
    default_error_messages = dict.fromkeys(("required", "null", "blank"), services.TITLE_REQUIRED)

    def to_internal_value(self, data: Any) -> str:
        return _judged(services.title_error, data)


@extend_schema_field(
    {
        "oneOf": [
            {
                "type": "number",
                "minimum": float(SMALLEST_CHARGE),
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
                    rf"|0\.[{_SMALLEST_TENTHS}-9][0-9]{{0,{_PRICE_PLACES - 1}}}0*)\s*$"
                ),
            },
        ]
    }
)
class PriceField(serializers.Field):
    """An amount tickets.services.price_error accepts, in cents: a JSON number (a Decimal
    from shared_lib.parsers) or a numeric string."""

    # What DRF refuses before to_internal_value (missing, null), in price_error's words.
    default_error_messages = dict.fromkeys(("required", "null"), services.PRICE_POSITIVE)

    def to_internal_value(self, data: Any) -> Decimal:
        return _judged(services.price_error, data)


class TicketInputSerializer(ObjectBodySerializer):
    """A ticket's title and price, every bad field reported at once (title first)."""

    title = TitleField(
        help_text=(
            "At most 200 characters once each run of whitespace is one space; at least one "
            "that shows (a letter, digit, punctuation mark or symbol); no control characters"
        )
    )
    price = PriceField()


class SearchField(serializers.CharField):
    """`q` (tickets.services.search_error), its words left to PostgreSQL to find."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            required=False,
            allow_blank=True,
            trim_whitespace=False,
            max_length=services.SEARCH_MAX_LENGTH,
            error_messages={"max_length": services.SEARCH_TOO_LONG},
            **kwargs,
        )

    def to_internal_value(self, data: Any) -> str:
        return _judged(services.search_error, super().to_internal_value(data))


@extend_schema_field({"type": "string", "pattern": services.PRICE_FILTER_PATTERN})
class PriceFilterField(serializers.CharField):
    """A price bound, inclusive, exact (tickets.services.price_filter_error); empty (a
    form's box left blank) is no bound, which the schema states as a blank string."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, allow_blank=True, trim_whitespace=False, **kwargs)

    def run_validation(self, data: Any = serializers.empty) -> Decimal | None:
        if data == "":
            return None
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Decimal:
        name = self.field_name or "price"
        message, amount = services.price_filter_error(super().to_internal_value(data), field=name)
        if message:
            raise serializers.ValidationError(message)
        return amount

    def fail(self, key: str, **kwargs: Any) -> None:
        # Blank, NUL, too long: one message for every bad amount.
        raise serializers.ValidationError(
            services.PRICE_FILTER_INVALID.format(field=self.field_name or "price")
        )


class TicketFilterSerializer(serializers.Serializer):
    """GET /api/tickets' filters (query parameters), each bad one a 400 on its field."""

    q = SearchField(
        help_text=(
            "Tickets whose title has every word of q as a word or the start of one, "
            "case-insensitive; at most 10 words (runs of letters and digits)"
        )
    )
    minPrice = PriceFilterField(help_text="Lowest price, inclusive")
    maxPrice = PriceFilterField(help_text="Highest price, inclusive")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        low, high = attrs.get("minPrice"), attrs.get("maxPrice")
        if low is not None and high is not None and high < low:
            raise serializers.ValidationError({"maxPrice": services.PRICE_RANGE_INVALID})
        return attrs


class TicketOutputSerializer(serializers.Serializer):
    """A ticket as every endpoint answers it, for the OpenAPI schema; ticket_json builds it
    (a serializer per row cost more than the page's query)."""

    id = serializers.UUIDField()
    title = serializers.CharField()
    price = serializers.DecimalField(max_digits=8, decimal_places=2, coerce_to_string=False)
    userId = serializers.UUIDField(source="user_id")
    version = serializers.IntegerField()
    orderId = serializers.UUIDField(source="order_id", allow_null=True)
    status = serializers.ChoiceField(
        choices=["available", "reserved", "sold", "withdrawn"],
        help_text=(
            "reserved: an order holds it; sold: that order was paid (final); "
            "withdrawn: taken off sale by staff"
        ),
    )


# The Ticket fields ticket_json reads.
TICKET_FIELDS = (
    "id",
    "title",
    "price",
    "user_id",
    "version",
    "order_id",
    "sold_at",
    "withdrawn_at",
)


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
        "status": ticket_status(
            order_id=order_id, sold_at=row["sold_at"], withdrawn_at=row["withdrawn_at"]
        ),
    }


class TicketListCreateApi(APIView):
    def get_permissions(self) -> list:
        return [IsSignedIn()] if self.request.method == "POST" else []

    @extend_schema(
        parameters=[*PAGE_PARAMETERS, TicketFilterSerializer],
        responses={200: TicketOutputSerializer(many=True), **error_responses(400)},
    )
    def get(self, request: Request) -> Response:
        filters = TicketFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        found = filters.validated_data
        rows = selectors.ticket_list_available(
            q=found.get("q", ""),
            min_price=found.get("minPrice"),
            max_price=found.get("maxPrice"),
        ).values(*TICKET_FIELDS, "created_at")
        page = paginate(request, rows)
        return page.response([ticket_json(row) for row in page.items])

    @extend_schema(request=TicketInputSerializer, responses={201: TicketOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = TicketInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_create(
            user_id=uuid.UUID(request.user.id),
            user_email=request.user.email,
            **serializer.validated_data,
        )
        return Response(ticket_json(vars(ticket)), status=201)


class TicketMineApi(APIView):
    permission_classes = [IsSignedIn]

    @extend_schema(parameters=PAGE_PARAMETERS, responses={200: TicketOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        rows = selectors.ticket_list_for_seller(user_id=uuid.UUID(request.user.id)).values(
            *TICKET_FIELDS, "created_at"
        )
        page = paginate(request, rows)
        return page.response([ticket_json(row) for row in page.items])


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
        # 404, then 403, then the body (docs/development.md): someone else's ticket is
        # refused whatever was sent.
        ticket = services.ticket_for_update(
            ticket_id=uuid.UUID(ticket_id), user_id=uuid.UUID(request.user.id)
        )
        serializer = TicketInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ticket = services.ticket_update(ticket=ticket, **serializer.validated_data)
        return Response(ticket_json(vars(ticket)))

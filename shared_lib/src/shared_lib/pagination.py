"""Cursor pagination that keeps the body a JSON list (docs/api.md).

    page = paginate(request, Ticket.objects.filter(order_id=None).values(*FIELDS))
    return page.response([ticket_json(row) for row in page.items])   # newest first
    # -> 200 [...]   Link: <http://host:8080/api/tickets?limit=20&cursor=...>; rel="next"

Rows are ordered by (created_at, id) descending and the cursor names the last row
shown, so a page is stable while new rows arrive (they sort before it) and every page is
one index range scan, however deep. The cursor is opaque (base64 JSON) to clients. A
page's items are what the queryset yields: model instances, or the plain dicts of a
`.values()` queryset (which must then include `created_at` and `id`), the cheap choice
for a list built without a serializer.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

from shared_lib.errors import BadRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 100  # larger requests are served 100 at a time, as GitHub's API does

INVALID_LIMIT = f"limit must be a whole number from 1 to {MAX_LIMIT}"
INVALID_CURSOR = "cursor is not valid"
_LIMIT_PATTERN = re.compile(r"[0-9]{1,6}")

# For @extend_schema(parameters=PAGE_PARAMETERS) on every paginated list.
PAGE_PARAMETERS = [
    OpenApiParameter(
        "limit",
        # What _limit() accepts: up to six ASCII digits, at least 1; above MAX_LIMIT the
        # page is MAX_LIMIT rows, not an error.
        {"type": "integer", "minimum": 1, "maximum": 999_999},
        description=f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT}; more means {MAX_LIMIT})",
    ),
    OpenApiParameter("cursor", str, description="From the previous page's Link rel=next"),
]


def _encode(row: Any) -> str:
    created_at, pk = (
        (row["created_at"], row["id"]) if isinstance(row, Mapping) else (row.created_at, row.pk)
    )
    raw = json.dumps({"t": created_at.isoformat(), "id": str(pk)}).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(data, dict) or not all(isinstance(data.get(k), str) for k in ["t", "id"]):
            raise ValueError("not a cursor")
        created_at = datetime.fromisoformat(data["t"])
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        # In UTC: PostgreSQL refuses offsets beyond ±15:59 that Python accepts, and an
        # instant outside years 1-9999 in UTC overflows here rather than in the query.
        return created_at.astimezone(UTC), uuid.UUID(data["id"])
    # JSON/Unicode errors are ValueErrors; a cursor of thousands of `[` exhausts the
    # decoder's recursion before it is anything else.
    except (ValueError, OverflowError, binascii.Error, RecursionError):
        raise BadRequest(INVALID_CURSOR, field="cursor") from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None:
        return DEFAULT_LIMIT  # an empty ?limit= is no number: the schema says integer
    # ASCII digits only, and few of them: str.isdigit() accepts "²", and int() refuses
    # strings of thousands of digits.
    if not _LIMIT_PATTERN.fullmatch(raw) or int(raw) < 1:
        raise BadRequest(INVALID_LIMIT, field="limit")
    return min(int(raw), MAX_LIMIT)


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_url: str | None

    def response(self, data: Any, status: int = 200) -> Response:
        headers = {"Link": f'<{self.next_url}>; rel="next"'} if self.next_url else {}
        return Response(data, status=status, headers=headers)


def paginate(request: Request, queryset: QuerySet) -> Page:
    """One page of `queryset`, newest first, from the request's ?limit= and ?cursor=."""
    limit = _limit(request)
    cursor = request.query_params.get("cursor")
    ordered = queryset.order_by("-created_at", "-pk")
    if cursor:
        created_at, last_id = _decode(cursor)
        # The first filter is the index range (everything up to the cursor's time); the
        # OR only trims ties at that instant. Written as the OR alone, PostgreSQL filters
        # every earlier entry of the index instead of seeking, and a page deep in a large
        # table reads tens of thousands of rows to return twenty.
        ordered = ordered.filter(created_at__lte=created_at).filter(
            Q(created_at__lt=created_at) | Q(pk__lt=last_id)
        )
    rows = list(ordered[: limit + 1])
    items, more = rows[:limit], len(rows) > limit
    next_url = None
    if more:
        params = {k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")}
        params.update(limit=str(limit), cursor=_encode(items[-1]))
        next_url = request.build_absolute_uri(f"{request.path}?{urlencode(params)}")
    return Page(items=items, next_url=next_url)

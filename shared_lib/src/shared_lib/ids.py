"""Ids in request bodies: canonical UUID strings, or a 400 on that field.

    order_id = parse_id(body.get("orderId"), field="orderId")
    # missing -> 400 "OrderId must be provided"; malformed -> 400 "OrderId must be a valid id"

Only the canonical dashed form is accepted, exactly like ids in paths (UUID_PATTERN);
uuid.UUID() alone would also take braces, "urn:uuid:" and bare hex.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from shared_lib.errors import BadRequest

# The canonical dashed form; shared_lib.urls uses it for ids in paths too.
UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_CANONICAL = re.compile(UUID_PATTERN)


def required_message(field: str) -> str:
    return f"{field[0].upper()}{field[1:]} must be provided"


def invalid_message(field: str) -> str:
    return f"{field[0].upper()}{field[1:]} must be a valid id"


def parse_id(value: Any, *, field: str) -> uuid.UUID:
    if value is None or value == "":
        raise BadRequest(required_message(field), field=field)
    if not isinstance(value, str) or not _CANONICAL.fullmatch(value):
        raise BadRequest(invalid_message(field), field=field)
    return uuid.UUID(value)

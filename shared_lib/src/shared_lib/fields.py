"""Serializer fields shared by the services' input serializers.

    class TicketInput(serializers.Serializer):
        price = RawValue()   # the JSON value as parsed (Decimal, int, str...), unchanged

Input serializers check the body's shape; the rules and their exact messages live in
services.py (docs/development.md), which therefore need the value as the client sent it.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class RawValue(serializers.Field):
    """Any JSON value, passed through untouched; None when absent."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", None)
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value

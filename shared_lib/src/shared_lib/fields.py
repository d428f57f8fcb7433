"""Strict serializer fields (and a body serializer) for the services' request bodies.

    class PaymentInput(ObjectBodySerializer):
        orderId = IdField()   # 400 "OrderId must be provided" / "OrderId must be a valid id"
        token = StrictRegexField(TOKEN_PATTERN, error_messages={"invalid": TOKEN_INVALID})

DRF's own fields are lenient where the API is not: CharField turns 123 into "123",
UUIDField takes braces, "urn:uuid:" and bare hex, RegexField's `$` lets a final newline
through. These take exactly what the OpenAPI schema (built from the same fields) states.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.fields import empty

from shared_lib.ids import UUID_PATTERN, invalid_message, required_message

_CANONICAL_ID = re.compile(UUID_PATTERN)


class ObjectBodySerializer(serializers.Serializer):
    """A body whose top level is not a JSON object (a list, a string, null) carries none
    of the fields, so each field reports itself missing, in its own words, rather than
    DRF's one "Invalid data. Expected a dictionary" for the whole body."""

    def run_validation(self, data: Any = empty) -> Any:
        return super().run_validation(data if isinstance(data, Mapping) else {})


class IdField(serializers.UUIDField):
    """An id: a UUID in the canonical dashed form, either case, exactly like ids in paths.

    Missing, null or "" is "<Field> must be provided" and anything else that is not such
    a string "<Field> must be a valid id", both named after the field as the client
    sends it (shared_lib.ids).
    """

    def bind(self, field_name: str, parent: Any) -> None:
        super().bind(field_name, parent)
        self.error_messages.update(
            required=required_message(field_name),
            null=required_message(field_name),
            invalid=invalid_message(field_name),
        )

    def to_internal_value(self, data: Any) -> uuid.UUID:
        if data == "":
            self.fail("required")
        if not isinstance(data, str) or not _CANONICAL_ID.fullmatch(data):
            self.fail("invalid")
        return uuid.UUID(data)


class StrictCharField(serializers.CharField):
    """A CharField that takes JSON strings only (DRF's would turn 123 into "123")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class WholeMatchValidator(RegexValidator):
    """The whole value matches, as a JSON Schema `pattern` of ^...$ means: Python's `$`
    also matches before a final newline, so RegexValidator takes "pm_x\\n" for ^pm_x$."""

    def __call__(self, value: Any) -> None:
        if not self.regex.fullmatch(str(value)):
            raise DjangoValidationError(self.message, code=self.code)


class StrictRegexField(StrictCharField):
    """A string, never trimmed, that `regex` matches whole; the schema states `regex` as
    its pattern. Every way of failing ("required", "null", "blank", "invalid") says the
    "invalid" message unless error_messages says otherwise."""

    def __init__(self, regex: str, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        messages = kwargs.pop("error_messages", {})
        invalid = messages.get("invalid", self.default_error_messages["invalid"])
        kwargs["error_messages"] = {
            **dict.fromkeys(("required", "null", "blank"), invalid),
            **messages,
        }
        super().__init__(**kwargs)
        self.validators.append(WholeMatchValidator(regex, message=self.error_messages["invalid"]))

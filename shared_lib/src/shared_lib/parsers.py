"""JSON request parsing with exact decimals.

    REST_FRAMEWORK = {"DEFAULT_PARSER_CLASSES": ["shared_lib.parsers.JSONParser"]}
    # {"price": 20.555} arrives as Decimal("20.555"), not the float 20.555000000000000604...

The stock parser turns every JSON number with a fraction into a binary float, so a price
like 20.999999999999999999 would silently become 21.0 before any validation ran. Strings
must also be text a database can store: a NUL or a lone surrogate ("\ud800") is refused
here, once for every service, instead of failing as a 500 deep in a query or a hasher.
"""

from __future__ import annotations

import codecs
import json
from decimal import Decimal
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")  # NaN, Infinity, -Infinity


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream)
            data = json.load(text, parse_float=Decimal, parse_constant=_refuse_constant)
            _check_text(data)
            return data
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

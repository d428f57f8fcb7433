"""JSON request parsing with exact decimals.

    REST_FRAMEWORK = {"DEFAULT_PARSER_CLASSES": ["shared_lib.parsers.JSONParser"]}
    # {"price": 20.555} arrives as Decimal("20.555"), not the float 20.555000000000000604...

The stock parser turns every JSON number with a fraction into a binary float, so a price
like 20.999999999999999999 would silently become 21.0 before any validation ran. Strings
must also be text a database can store: a NUL or a lone surrogate ("\ud800") is refused
here, once for every service, instead of failing as a 500 deep in a query or a hasher.
Nesting is bounded too (MAX_JSON_DEPTH): a body of 100000 `[` would otherwise exhaust
the interpreter's recursion limit in the decoder and escape as a 500.
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


# The API's request bodies are flat objects; 64 levels leave room for any client while
# staying far below the interpreter's recursion limit (1000), which the decoder and every
# later recursive walk of the data (serializers, json.dumps) spend.
MAX_JSON_DEPTH = 64
JSON_TOO_DEEP = (
    f"JSON body nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects"
)


class JSONTooDeep(ValueError):
    pass


def _check(data: Any) -> None:
    """Refuse text a database cannot store and nesting deeper than MAX_JSON_DEPTH.

    Iterative, so checking a deep document cannot itself run out of stack.
    """
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise ValueError("text must not contain NUL characters")
            value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
        elif isinstance(value, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise JSONTooDeep
            items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for key, item in items:
                if key is not None:
                    pending.append((key, depth + 1))
                pending.append((item, depth + 1))


class JSONParser(parsers.JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = codecs.getreader(encoding)(stream)
            data = json.load(text, parse_float=Decimal, parse_constant=_refuse_constant)
            _check(data)
            return data
        except (JSONTooDeep, RecursionError) as exc:
            # The decoder recurses once per level: far past MAX_JSON_DEPTH it runs out of
            # stack before it could return anything to measure. (Imported here because
            # shared_lib.errors imports DRF's views, whose settings import this parser.)
            from shared_lib.errors import BadRequest

            raise BadRequest(JSON_TOO_DEEP) from exc
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc

"""Correlation ids: one id follows a request through every event it causes, in every log line.

    MIDDLEWARE = [..., "shared_lib.correlation.CorrelationIdMiddleware", ...]
    with correlation_scope(envelope_correlation_id):   # in an event consumer
        logger.info("handled")                          # the line carries correlation_id

The gateway sends X-Request-ID (it makes one when the client did not); a request's
correlation id is that value, echoed back in the response and copied into every event
the request publishes, then into every event its handlers publish, and so on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponse

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)

# What a client may choose as its request id: short and printable, so it is safe in logs.
_ACCEPTABLE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
HEADER = "X-Request-ID"


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_correlation_id() -> str:
    """The id of the work in progress; a fresh one each time outside any request or event
    (work with no cause of its own, e.g. a periodic task, should open a correlation_scope)."""
    return _current.get() or new_correlation_id()


@contextlib.contextmanager
def correlation_scope(correlation_id: str | None) -> Iterator[str]:
    # Anything but an acceptable string (a header of another type, from any publisher)
    # gets a fresh id, never an error.
    acceptable = isinstance(correlation_id, str) and _ACCEPTABLE.fullmatch(correlation_id)
    value = correlation_id if acceptable else None
    token = _current.set(value or new_correlation_id())
    try:
        yield _current.get()  # type: ignore[misc]
    finally:
        _current.reset(token)


access_logger = logging.getLogger("ticketing.access")


class CorrelationIdMiddleware:
    """Opens the request's correlation scope, echoes the id, and writes the access log:
    one structured line per request (method, route, status, duration, client, id), so
    the web process's log is JSON like every other line (gunicorn's own access log is off).
    Probes and scrapes are answered before this middleware and stay out of the log."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Imported here, not at the top: gunicorn's master loads this module for its log
        # formatter, and prometheus_client (under shared_lib.metrics) must not be imported
        # there before the master has chosen the multiprocess directory.
        from shared_lib.http import client_ip
        from shared_lib.metrics import route_label

        started = time.perf_counter()
        with correlation_scope(request.headers.get(HEADER)) as correlation_id:
            response = self.get_response(request)
            response[HEADER] = correlation_id
            access_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "route": route_label(request),
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                    "client": client_ip(request),
                },
            )
            return response


class CorrelationFilter(logging.Filter):
    """Adds `correlation_id` to every record (None outside requests and events)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _current.get()
        return True


_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "correlation_id"}


def _extras(record: logging.LogRecord) -> dict[str, object]:
    return {key: value for key, value in vars(record).items() if key not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": getattr(record, "correlation_id", None),
            **_extras(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


# What must never reach a text log line as itself: C0 and C1 controls (\n and \r end a
# line, ESC starts a terminal sequence), DEL, the Unicode line and paragraph separators,
# and the invisible bidirectional and zero-width marks that make a line read otherwise
# than it is. A request path, a header or an exception message may hold any of them.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# A value with any of these is quoted (logfmt), so `path=/a status=500` cannot pass for
# two pairs; backslashes and quotes inside the quotes are escaped.
_NEEDS_QUOTES = re.compile(r'[\s"=\\]')
# Continuation lines of a record (its traceback) start with this, so only a record's
# first line ever starts in the first column: no logged text can open a line of its own.
CONTINUATION = "  | "


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with every control, separator and bidi character escaped (`\\n`, `\\x1b`)."""
    return _UNSAFE.sub(_escape_char, text)


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text) and not _UNSAFE.search(text):
        return text
    return '"' + printable(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


class KeyValueFormatter(logging.Formatter):
    """Human-readable, one line per event: `... message key=value key="a value"`.

    Every character that could end or disguise a line is escaped, in the message and in
    the values, so whatever a client puts in a path or a header (`%0a`, `\\u2028`, ESC)
    cannot forge a line. A traceback follows on continuation lines, each led by
    CONTINUATION; control characters inside it are escaped the same way.
    """

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        pairs = {"correlation_id": getattr(record, "correlation_id", None), **_extras(record)}
        line = " ".join(
            [
                printable(self.formatMessage(record)),
                *(f"{key}={_logfmt_value(v)}" for key, v in pairs.items() if v is not None),
            ]
        )
        details = []
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            details.append(record.exc_text)
        if record.stack_info:
            details.append(self.formatStack(record.stack_info))
        continuation = [
            CONTINUATION + printable(part) for detail in details for part in detail.split("\n")
        ]
        return "\n".join([line, *continuation])

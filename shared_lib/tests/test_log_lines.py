"""Text log lines cannot be forged: whatever a client sends is escaped in them."""

import io
import json
import logging
import sys

import pytest

from shared_lib.correlation import (
    CONTINUATION,
    CorrelationFilter,
    JsonFormatter,
    KeyValueFormatter,
    printable,
)
from shared_lib.settings.logs import TEXT_FORMAT

FORGED = "2026-01-01 00:00:00,000 INFO ticketing.access: request status=200"


@pytest.fixture
def text_log():
    """Lines the web process would write with LOG_FORMAT=text, for the access log."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(KeyValueFormatter(TEXT_FORMAT))
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger("ticketing.access")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def record(msg="event", *args, exc_info=None, **extra):
    made = logging.makeLogRecord(
        {"name": "tests.log", "levelno": logging.WARNING, "levelname": "WARNING", "msg": msg}
    )
    made.args = args
    made.exc_info = exc_info
    made.correlation_id = "corr-1"
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_path_with_an_encoded_newline_stays_on_its_line(client, text_log):
    response = client.get("/api/demo/x%0a" + FORGED.replace(" ", "%20"))

    assert response.status_code == 404
    lines = text_log.getvalue().splitlines()
    assert len(lines) == 1
    assert f'path="/api/demo/x\\n{FORGED}"' in lines[0]
    assert " status=404 " in lines[0]
    assert not any(line.startswith("2026-01-01") for line in lines)


def test_a_request_id_with_control_characters_is_replaced_not_logged(client, text_log):
    response = client.get("/api/demo/ping", HTTP_X_REQUEST_ID="abc\r\nforged")

    [line] = text_log.getvalue().splitlines()
    assert "forged" not in line
    assert f"correlation_id={response['X-Request-ID']} " in line
    assert len(response["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("next line\x85", "next line\\x85"),
        ("csi\x9b", "csi\\x9b"),
        ("line\u2028sep", "line\\u2028sep"),
        ("para\u2029sep", "para\\u2029sep"),
        ("bidi\u202egnp.exe", "bidi\\u202egnp.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("plain text, ünïcödé and emoji 🎟", "plain text, ünïcödé and emoji 🎟"),
    ],
)
def test_printable_escapes_what_could_end_or_disguise_a_line(raw, escaped):
    assert printable(raw) == escaped


def test_the_message_and_every_value_are_escaped_and_quoted_when_needed():
    line = KeyValueFormatter("%(levelname)s %(message)s").format(
        record(
            "refund for %s failed",
            "order\n" + FORGED,
            path="/a status=500",
            client='1.2.3.4 "quoted" \\ back',
            header="v\u2028" + FORGED,
            empty="",
            status=400,
        )
    )

    assert line == (
        f"WARNING refund for order\\n{FORGED} failed correlation_id=corr-1 "
        'path="/a status=500" '
        'client="1.2.3.4 \\"quoted\\" \\\\ back" '
        f'header="v\\u2028{FORGED}" '
        'empty="" '
        "status=400"
    )
    assert len(line.splitlines()) == 1


def test_a_traceback_follows_on_continuation_lines_only():
    try:
        raise ValueError("bad\n" + FORGED + "\x1b[2K")
    except ValueError:
        exc_info = sys.exc_info()

    text = KeyValueFormatter("%(levelname)s %(message)s").format(
        record("crashed", exc_info=exc_info)
    )

    head, *rest = text.split("\n")
    assert head == "WARNING crashed correlation_id=corr-1"
    assert rest[0] == CONTINUATION + "Traceback (most recent call last):"
    assert rest[-2:] == [CONTINUATION + "ValueError: bad", CONTINUATION + FORGED + "\\x1b[2K"]
    assert all(line.startswith(CONTINUATION) for line in rest)


def test_json_lines_are_escaped_by_json_itself():
    line = JsonFormatter().format(
        record("msg\n" + FORGED, path="/x\r\n\u2028\x1b\x85", header="\u202e")
    )

    assert len(line.splitlines()) == 1
    assert line.isascii()
    parsed = json.loads(line)
    assert parsed["message"] == "msg\n" + FORGED
    assert parsed["path"] == "/x\r\n\u2028\x1b\x85"
    assert parsed["header"] == "\u202e"

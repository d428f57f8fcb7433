"""A call run in a thread of its own, on a database connection of its own, for races.

thread, outcome = start_call(lambda: services.ticket_update(ticket=ticket, title=..., price=...))
thread.join(timeout=10)
assert isinstance(outcome.get("error"), Conflict)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def start_call(
    function: Callable[[], Any], outcome: dict[str, Any] | None = None
) -> tuple[threading.Thread, dict[str, Any]]:
    """Start `function()` in a new thread; `outcome` (a new dict unless given, so the call
    may add keys of its own) gets its "result", or what it raised as "error"."""
    outcome = {} if outcome is None else outcome

    def run() -> None:
        from django.db import connection

        try:
            outcome["result"] = function()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            # The thread's own connection: left open, it would keep the test database
            # from being dropped.
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome

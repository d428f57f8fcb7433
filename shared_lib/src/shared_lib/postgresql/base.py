"""Django's PostgreSQL backend without a health-check query per request: a lost
connection is found by the statement that needs it, and that statement is retried.

    DATABASES = {"default": {"ENGINE": "shared_lib.postgresql", ...}}   # shared_lib.settings
    close_old_connections()   # between requests, events, relay passes: as with Django's
    Ticket.objects.first()    # on a connection the server dropped meanwhile: reconnects

Django's CONN_HEALTH_CHECKS sends `SELECT 1` before the first query of every request and
every unit of work a worker does, to find connections the server closed while they sat
idle (a restart, a failover, an idle timeout): a round trip each time for a rare event.
Here the first statement on a connection kept from an earlier unit of work is the check:
if it fails because the connection is gone, the backend connects again in place (keeping
the unit's transaction state, since nothing of it reached the server) and runs the
statement once more. A connection lost after a unit's first statement fails that unit,
as it always did. So does a write outside a transaction whose connection failed: it may
have committed before the connection went, and it is not run twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import InterfaceError, OperationalError
from django.db.backends.postgresql import base as postgresql
from django.db.backends.utils import CursorWrapper as DjangoCursorWrapper


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The next statement is the first on a connection kept from an earlier unit of
        # work; until it succeeds, the connection may be one the server has dropped.
        self.unproven = False
        # See savepoints_suspended().
        self.suspend_savepoints = False

    def _savepoint_allowed(self) -> bool:
        return not self.suspend_savepoints and super()._savepoint_allowed()

    def savepoint_rollback(self, sid: str | None) -> None:
        if self.suspend_savepoints and self.in_atomic_block:
            # A rollback to a savepoint taken by hand while none are made (Django would
            # silently do nothing): only undoing the whole transaction undoes the work
            # since, so it is marked for rollback, and the batch runs again with them.
            self.needs_rollback = True
            return
        super().savepoint_rollback(sid)

    def connect(self) -> None:
        super().connect()
        self.unproven = False

    def close_if_unusable_or_obsolete(self) -> None:
        # Django calls this between requests (and workers between units of work); a
        # connection it keeps is reused unchecked.
        super().close_if_unusable_or_obsolete()
        self.unproven = self.connection is not None

    def make_cursor(self, cursor: Any) -> DjangoCursorWrapper:
        return CursorWrapper(cursor, self)

    def make_debug_cursor(self, cursor: Any) -> DjangoCursorWrapper:
        return CursorDebugWrapper(cursor, self)

    def reconnect_if_lost(self) -> bool:
        """After an unproven connection's first statement failed: when the connection is
        gone, a new one in its place, in the same transaction state; whether it was."""
        lost = self.connection is None or self.connection.closed or self.connection.broken
        if not lost:
            return False
        with contextlib.suppress(Exception):
            self.connection.close()
        # connect() resets what an atomic block set up; nothing of that block reached the
        # server, so the same state on the new connection is the same transaction.
        kept = (
            self.in_atomic_block,
            self.savepoint_ids,
            self.atomic_blocks,
            self.needs_rollback,
            self.run_on_commit,
            self.autocommit,
        )
        # A failure to connect is a database error like any other (a 503 to a request).
        with self.wrap_database_errors:
            self.connect()
        (
            self.in_atomic_block,
            self.savepoint_ids,
            self.atomic_blocks,
            self.needs_rollback,
            self.run_on_commit,
            autocommit,
        ) = kept
        if not autocommit:
            self._set_autocommit(False)
            self.autocommit = False
        return True


@contextlib.contextmanager
def savepoints_suspended(db: Any) -> Iterator[None]:
    """Within it, an atomic block nested in the transaction makes no savepoint: two round
    trips saved per block, for a caller that rolls the whole transaction back on any
    failure anyway. A block that fails marks the transaction for rollback instead
    (Django's `needs_rollback`), as does a rollback to a savepoint taken by hand, and a
    database error leaves it aborted: the caller must check both before it commits.
    Another engine's connection is left as it is."""
    if not isinstance(db, DatabaseWrapper):
        yield
        return
    db.suspend_savepoints = True
    try:
        yield
    finally:
        db.suspend_savepoints = False


class _RetryOnLostConnection:
    """The first statement on an unproven connection, run again on a new connection when
    it failed because the old one was gone."""

    db: DatabaseWrapper
    cursor: Any

    def _execute(self, sql: Any, params: Any, *ignored: Any) -> Any:
        return self._first_retried(super()._execute, sql, params, *ignored)  # type: ignore[misc]

    def _executemany(self, sql: Any, param_list: Any, *ignored: Any) -> Any:
        return self._first_retried(super()._executemany, sql, param_list, *ignored)  # type: ignore[misc]

    def _first_retried(self, run: Any, *args: Any) -> Any:
        if not self.db.unproven:
            return run(*args)
        self.db.unproven = False  # whatever this statement meets, it was the check
        try:
            return run(*args)
        except (OperationalError, InterfaceError):
            # A named (server-side) cursor belongs to its transaction: not replaced here.
            if getattr(self.cursor, "name", None) or not _safe_to_repeat(self.db, args[0]):
                raise
            if not self.db.reconnect_if_lost():
                raise
        self.cursor = self.db.create_cursor()
        return run(*args)


def _safe_to_repeat(db: DatabaseWrapper, sql: Any) -> bool:
    """Inside a transaction nothing is committed until COMMIT, so a statement whose
    connection died is repeatable; in autocommit only a read is."""
    if not db.get_autocommit():
        return True
    return isinstance(sql, str) and sql.lstrip()[:6].upper() == "SELECT"


class CursorWrapper(_RetryOnLostConnection, DjangoCursorWrapper):
    pass


class CursorDebugWrapper(_RetryOnLostConnection, postgresql.CursorDebugWrapper):
    pass

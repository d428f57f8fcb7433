"""`manage.py migrate` behind a PostgreSQL advisory lock: one migrator per database at once.

    DJANGO_SETTINGS_MODULE=tickets_svc.settings python /app/bin/migrate_locked.py

In Kubernetes every pod of a service with a database (web and worker, each replica, old
and new during a rolling update) runs this as an init container, so a pod never serves
or consumes before the schema its code expects exists. Several pods start at once, and
Django's `migrate` takes no lock of its own: two of them could apply the same migration
concurrently (one fails on a duplicate table; a data migration would run twice). The
first pod to take this lock migrates; the others wait for it, then find nothing to do.
docker-compose.yml runs the same script once per service before the service starts.
"""

from __future__ import annotations

import time

import django
from django.core.management import call_command
from django.db import connection
from django.db.backends.utils import CursorWrapper

# Any fixed number will do: advisory lock keys are scoped to the current database, and
# each service has a database of its own, so one key serves every service.
LOCK_KEY = 7_146_308_771_830_263_405
# How long a pod waits for another pod's migration before giving up. Generous: a long
# migration is legitimate. When it expires the init container fails and Kubernetes
# retries it with back-off, which is the right outcome for a migration stuck forever.
LOCK_WAIT_SECONDS = 15 * 60
# A waiting pod asks for the lock this often. It must not wait inside one statement
# (pg_advisory_lock): CREATE INDEX CONCURRENTLY, in the migrating session, waits for
# every transaction in progress to end, and a waiter blocked on the lock never would
# (PostgreSQL then aborts one of them as a deadlock, the index build maybe).
LOCK_POLL_SECONDS = 0.5


class LockTimeout(Exception):
    pass


def _take_lock(cursor: CursorWrapper) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
        if cursor.fetchone()[0]:
            return
        if time.monotonic() >= deadline:
            raise LockTimeout(f"another migration held the lock for {LOCK_WAIT_SECONDS} s")
        time.sleep(LOCK_POLL_SECONDS)


def migrate_locked() -> None:
    """Wait for the lock, migrate, release; the lock dies with the session on a crash."""
    django.setup()
    with connection.cursor() as cursor:
        _take_lock(cursor)
        try:
            # Same connection (Django reuses it within this thread), so the session that
            # holds the lock is the one that migrates.
            call_command("migrate", interactive=False, verbosity=1)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


if __name__ == "__main__":
    migrate_locked()

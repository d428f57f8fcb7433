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

import django
from django.core.management import call_command
from django.db import connection

# Any fixed number will do: advisory lock keys are scoped to the current database, and
# each service has a database of its own, so one key serves every service.
LOCK_KEY = 7_146_308_771_830_263_405
# How long a pod waits for another pod's migration before giving up. Generous: a long
# migration is legitimate. When it expires the init container fails and Kubernetes
# retries it with back-off, which is the right outcome for a migration stuck forever.
LOCK_WAIT_TIMEOUT = "15min"


def migrate_locked() -> None:
    """Wait for the lock, migrate, release; the lock dies with the session on a crash."""
    django.setup()
    with connection.cursor() as cursor:
        # The timeout applies to taking the lock only; the migrations run with the
        # server's default, as they would from manage.py.
        cursor.execute("SELECT set_config('lock_timeout', %s, false)", [LOCK_WAIT_TIMEOUT])
        cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        cursor.execute("RESET lock_timeout")
        try:
            # Same connection (Django reuses it within this thread), so the session that
            # holds the lock is the one that migrates.
            call_command("migrate", interactive=False, verbosity=1)
        finally:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


if __name__ == "__main__":
    migrate_locked()

"""The title index without GIN's pending list (fastupdate off).

With it on, new tickets' words wait in an unsorted list that every search reads whole
until autovacuum merges it (up to 4 MB): at 100k tickets that list made a search's
database time 2-3 times what it was once merged. Off, each listing merges its few words
at once, and a search costs the same whenever it runs.

The change takes the index's exclusive lock only for the catalogue update (lock_timeout
keeps it from queueing behind a long transaction); the words already pending are then
merged outside that lock.
"""

import django.contrib.postgres.indexes
from django.db import migrations, models

INDEX = "tickets_available_search_idx"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("tickets", "0005_seller_and_order_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                # Each statement its own transaction (the migration is not atomic), so a
                # lock timeout is the error reported, not a transaction left aborted.
                migrations.RunSQL(
                    [
                        "SET lock_timeout = '5s'",
                        f"ALTER INDEX {INDEX} SET (fastupdate = off)",
                        "RESET lock_timeout",
                    ],
                    [
                        "SET lock_timeout = '5s'",
                        f"ALTER INDEX {INDEX} RESET (fastupdate)",
                        "RESET lock_timeout",
                    ],
                ),
                migrations.RunSQL(
                    f"SELECT gin_clean_pending_list('{INDEX}'::regclass)",
                    migrations.RunSQL.noop,
                ),
            ],
            state_operations=[
                migrations.RemoveIndex(model_name="ticket", name=INDEX),
                migrations.AddIndex(
                    model_name="ticket",
                    index=django.contrib.postgres.indexes.GinIndex(
                        condition=models.Q(("order_id__isnull", True)),
                        fastupdate=False,
                        fields=["title_search"],
                        name=INDEX,
                    ),
                ),
            ],
        ),
    ]

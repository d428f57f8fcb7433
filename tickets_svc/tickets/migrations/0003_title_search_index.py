"""The title words of tickets for sale, indexed, built concurrently: sales and
reservations go on while it is made.

A concurrent build that fails (the pod killed, the query cancelled) leaves an invalid
index of that name and no record of this migration: the next attempt drops it first.
"""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models

INDEX = "tickets_available_search_idx"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0002_title_search"),
    ]

    operations = [
        migrations.RunSQL(
            f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}", reverse_sql=migrations.RunSQL.noop
        ),
        AddIndexConcurrently(
            model_name="ticket",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("order_id__isnull", True)),
                fields=["title_search"],
                name=INDEX,
            ),
        ),
    ]

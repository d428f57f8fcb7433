"""Ticket.title_search: each title's words, stored (GET /api/tickets?q=).

A stored generated column rewrites the table under an exclusive lock (about a second per
100k tickets here). lock_timeout keeps it from queueing behind a long transaction while
every read and write of tickets queues behind it: past it the migration fails and the pod
tries again. The index comes in 0003, built concurrently.
"""

import django.contrib.postgres.search
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", reverse_sql=migrations.RunSQL.noop),
        migrations.AddField(
            model_name="ticket",
            name="title_search",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.contrib.postgres.search.SearchVector("title", config="simple"),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
    ]

"""GET /api/tickets?q=: each title's words stored (Ticket.title_search), and those of
tickets for sale indexed.

Adding a stored generated column rewrites the table under an exclusive lock (about a
second per 100k tickets here); the index is then built concurrently, so sales and
reservations go on while it is made.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("tickets", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="ticket",
            name="title_search",
            field=models.GeneratedField(
                db_persist=True,
                expression=django.contrib.postgres.search.SearchVector("title", config="simple"),
                output_field=django.contrib.postgres.search.SearchVectorField(),
            ),
        ),
        AddIndexConcurrently(
            model_name="ticket",
            index=django.contrib.postgres.indexes.GinIndex(
                condition=models.Q(("order_id__isnull", True)),
                fields=["title_search"],
                name="tickets_available_search_idx",
            ),
        ),
    ]

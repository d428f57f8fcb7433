"""Ticket.sold_at: set when the order holding the ticket completes (order.completed).

A nullable column is a catalogue change, no table rewrite; lock_timeout keeps its brief
exclusive lock from queueing behind a long transaction (past it the pod tries again).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("tickets", "0003_title_search_index"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", reverse_sql=migrations.RunSQL.noop),
        migrations.AddField(
            model_name="ticket",
            name="sold_at",
            field=models.DateTimeField(
                blank=True, help_text="When its order completed: sold, for good.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="ticket",
            name="order_id",
            field=models.UUIDField(
                blank=True,
                help_text="The order holding it (or, once sold, that bought it).",
                null=True,
            ),
        ),
    ]

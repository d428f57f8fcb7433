"""Ticket.sold_at (set when the order holding it completes: order.completed),
Ticket.withdrawn_at (staff took it off sale), with the staff permission to do that, and
Ticket.user_email (where "your ticket sold" goes).

Nullable columns are catalogue changes, no table rewrite; lock_timeout keeps their brief
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
        migrations.AddField(
            model_name="ticket",
            name="withdrawn_at",
            field=models.DateTimeField(
                blank=True, help_text="When staff took it off sale (shared_lib.staff).", null=True
            ),
        ),
        migrations.AddField(
            model_name="ticket",
            name="user_email",
            field=models.EmailField(blank=True, db_default="", default="", max_length=254),
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
        migrations.AlterModelOptions(
            name="ticket",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("withdraw_ticket", "Can take a ticket off sale")],
            },
        ),
    ]

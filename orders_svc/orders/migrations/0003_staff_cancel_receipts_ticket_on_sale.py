"""The staff permission to cancel an unpaid order, Order.user_email (where the receipt
goes) and TicketReplica.on_sale (ticket.updated's onSale). Constant defaults make the
columns catalogue changes, no table rewrite; lock_timeout keeps their brief exclusive
lock from queueing behind a long transaction (past it the pod tries again).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0002_order_price"),
    ]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", reverse_sql=migrations.RunSQL.noop),
        migrations.AlterModelOptions(
            name="order",
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("cancel_order", "Can cancel an unpaid order")],
            },
        ),
        migrations.AddField(
            model_name="order",
            name="user_email",
            field=models.EmailField(blank=True, db_default="", default="", max_length=254),
        ),
        migrations.AddField(
            model_name="ticketreplica",
            name="on_sale",
            field=models.BooleanField(db_default=True, default=True),
        ),
    ]

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("orders", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="order",
            name="price",
            field=models.DecimalField(decimal_places=2, max_digits=8, null=True),
        ),
        # Orders made before the column existed were charged their replica's price at
        # the time, which is the best record there is of it.
        migrations.RunSQL(
            "UPDATE orders_order SET price = t.price FROM orders_ticketreplica t "
            "WHERE t.id = orders_order.ticket_id",
            reverse_sql=migrations.RunSQL.noop,
        ),
        migrations.AlterField(
            model_name="order",
            name="price",
            field=models.DecimalField(decimal_places=2, max_digits=8),
        ),
    ]

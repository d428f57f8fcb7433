"""A seller's listings newest first, and the ticket an order holds, indexed; built
concurrently, so sales and reservations go on meanwhile. The seller index serves every
look-up the one on user_id alone did, which goes last.
"""

from django.db import migrations, models

from shared_lib.online_schema import AddIndexConcurrentlyOnce

USER_ID_INDEX = "tickets_ticket_user_id_6f5f1c69"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("tickets", "0004_ticket_sale_state")]

    operations = [
        AddIndexConcurrentlyOnce(
            model_name="ticket",
            index=models.Index(fields=["user_id", "-created_at", "-id"], name="tickets_seller_idx"),
        ),
        AddIndexConcurrentlyOnce(
            model_name="ticket",
            index=models.Index(
                condition=models.Q(order_id__isnull=False),
                fields=["order_id"],
                name="tickets_order_idx",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX CONCURRENTLY IF EXISTS {USER_ID_INDEX}",
                    f"CREATE INDEX CONCURRENTLY {USER_ID_INDEX} ON tickets_ticket (user_id)",
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="ticket",
                    name="user_id",
                    field=models.UUIDField(help_text="The seller (auth_svc user id)."),
                ),
            ],
        ),
    ]

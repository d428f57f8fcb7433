"""Refunds become durable state settled by the worker; attempts keep their PaymentIntent id.

Refunds made before this migration were made at once, so each becomes a SUCCEEDED row
for its payment's attempt and PaymentIntent.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def fill_existing_refunds(apps, schema_editor):
    Refund = apps.get_model("payments", "Refund")
    for refund in Refund.objects.select_related("payment"):
        payment = refund.payment
        refund.attempt_id = payment.attempt_id
        refund.order_id = payment.order_id
        refund.payment_intent_id = payment.stripe_id
        refund.amount_cents = payment.amount_cents
        refund.status = "succeeded"
        refund.updated_at = refund.created_at
        refund.save()


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="paymentattempt",
            name="stripe_intent_id",
            field=models.CharField(
                blank=True,
                help_text="PaymentIntent id, stored before it is confirmed",
                max_length=255,
            ),
        ),
        migrations.AlterField(
            model_name="paymentattempt",
            name="token",
            field=models.CharField(
                help_text="What the buyer sent: a PaymentMethod id or a card token",
                max_length=255,
            ),
        ),
        migrations.AlterModelOptions(name="refund", options={"ordering": ["-created_at"]}),
        migrations.AddField(
            model_name="refund",
            name="attempt",
            field=models.OneToOneField(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refund",
                to="payments.paymentattempt",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="order",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="payments.orderreplica",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="payment_intent_id",
            field=models.CharField(max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="amount_cents",
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="status",
            field=models.CharField(
                choices=[("pending", "Pending"), ("succeeded", "Succeeded"), ("failed", "Failed")],
                default="pending",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="tries",
            field=models.PositiveIntegerField(default=0, help_text="Calls to Stripe so far"),
        ),
        migrations.AddField(
            model_name="refund",
            name="next_attempt_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddField(
            model_name="refund",
            name="last_error",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="refund",
            name="updated_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AlterField(
            model_name="refund",
            name="stripe_id",
            field=models.CharField(
                blank=True, help_text="Refund id", max_length=255, null=True, unique=True
            ),
        ),
        migrations.AlterField(
            model_name="refund",
            name="payment",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refund",
                to="payments.payment",
            ),
        ),
        migrations.RunPython(fill_existing_refunds, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="refund",
            name="attempt",
            field=models.OneToOneField(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refund",
                to="payments.paymentattempt",
            ),
        ),
        migrations.AlterField(
            model_name="refund",
            name="order",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="payments.orderreplica",
            ),
        ),
        migrations.AlterField(
            model_name="refund",
            name="payment_intent_id",
            field=models.CharField(max_length=255, unique=True),
        ),
        migrations.AlterField(
            model_name="refund",
            name="amount_cents",
            field=models.PositiveIntegerField(),
        ),
        migrations.AddIndex(
            model_name="refund",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["next_attempt_at"],
                name="payments_refund_due",
            ),
        ),
    ]

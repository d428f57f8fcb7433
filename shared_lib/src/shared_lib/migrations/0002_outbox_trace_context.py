from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("shared_lib", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="outboxevent",
            name="traceparent",
            field=models.CharField(blank=True, db_default="", default="", max_length=55),
        ),
        migrations.AddField(
            model_name="outboxevent",
            name="tracestate",
            field=models.CharField(blank=True, db_default="", default="", max_length=512),
        ),
    ]

"""Emails given up on (an address refused for good). A nullable column: a catalogue
change, no table rewrite; lock_timeout keeps its brief exclusive lock from queueing
behind a long transaction (and every query behind it)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shared_lib", "0003_staff_action_and_outgoing_email")]

    operations = [
        migrations.RunSQL("SET LOCAL lock_timeout = '5s'", reverse_sql=migrations.RunSQL.noop),
        migrations.AddField(
            model_name="outgoingemail",
            name="given_up_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]

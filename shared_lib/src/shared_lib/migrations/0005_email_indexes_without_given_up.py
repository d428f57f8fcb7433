"""The sender's index of emails leaves given-up ones out; given-up ones get their own.

Given-up rows stayed unsent, so they sat in `email_pending_idx` until purged: every send
run and metrics scrape read them all there, however many an attacker's sign-ups had
piled up within the retention. `email_due_idx` holds only rows still to send, and
`email_given_up_idx` serves their count and purge.

Built concurrently (sends and the purge go on while they are made), the new ones before
the old is dropped, so the sender always has an index. A concurrent build that fails
leaves an invalid index of its name and no record of this migration: the next attempt
drops it first.
"""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

DUE, GIVEN_UP = "email_due_idx", "email_given_up_idx"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("shared_lib", "0004_outgoing_email_given_up")]

    operations = [
        migrations.RunSQL(
            [
                f"DROP INDEX CONCURRENTLY IF EXISTS {DUE}",
                f"DROP INDEX CONCURRENTLY IF EXISTS {GIVEN_UP}",
            ],
            reverse_sql=migrations.RunSQL.noop,
        ),
        AddIndexConcurrently(
            model_name="outgoingemail",
            index=models.Index(
                condition=models.Q(("given_up_at__isnull", True), ("sent_at__isnull", True)),
                fields=["next_attempt_at", "created_at"],
                name=DUE,
            ),
        ),
        AddIndexConcurrently(
            model_name="outgoingemail",
            index=models.Index(
                condition=models.Q(("given_up_at__isnull", False)),
                fields=["given_up_at"],
                name=GIVEN_UP,
            ),
        ),
        RemoveIndexConcurrently(model_name="outgoingemail", name="email_pending_idx"),
    ]

"""The outgoing emails' indexes leave the given-up rows to one of their own.

Given-up rows stay unsent, so they sat in `email_pending_idx` (`sent_at IS NULL`) until
purged, and every metrics scrape read them all (there, or in a read of the whole
table). `email_due_idx` holds only rows still to send; `email_given_up_idx` serves the
given-up rows' count and purge; the purge of sent rows gets a partial index,
`email_sent_at_idx`: the planner took the whole `email_sent_idx` for `sent_at IS NULL`
and read the given-up rows through it.
`email_pending_idx` stays: the release before given_up_at claims through it.

Built concurrently (sends, scrapes and purges go on meanwhile), the new before the old
is dropped, so each query always has an index. A retry, forwards or back, keeps what an
earlier attempt built and builds again what it left invalid (shared_lib.online_schema).
"""

from django.db import migrations, models

from shared_lib.online_schema import AddIndexConcurrentlyOnce, RemoveIndexConcurrentlyOnce


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("shared_lib", "0004_outgoing_email_given_up")]

    operations = [
        AddIndexConcurrentlyOnce(
            model_name="outgoingemail",
            index=models.Index(
                condition=models.Q(("given_up_at__isnull", True), ("sent_at__isnull", True)),
                fields=["next_attempt_at", "created_at"],
                name="email_due_idx",
            ),
        ),
        AddIndexConcurrentlyOnce(
            model_name="outgoingemail",
            index=models.Index(
                condition=models.Q(("sent_at__isnull", False)),
                fields=["sent_at"],
                name="email_sent_at_idx",
            ),
        ),
        AddIndexConcurrentlyOnce(
            model_name="outgoingemail",
            index=models.Index(
                condition=models.Q(("given_up_at__isnull", False), ("sent_at__isnull", True)),
                fields=["given_up_at"],
                name="email_given_up_idx",
            ),
        ),
        RemoveIndexConcurrentlyOnce(model_name="outgoingemail", name="email_sent_idx"),
    ]

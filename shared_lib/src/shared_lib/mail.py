"""Email from the services: written with the change it tells of, sent by the worker.

    queue_email(key=f"receipt:{order.id}", to=buyer, subject=..., body=...)  # in the transaction

A handler that tells someone of a fact queues the email in its own transaction, so the
email exists exactly when the change does; `key` names the fact, so a redelivered event
queues nothing more. The worker's periodic send_pending_emails (WORKER_PERIODIC_TASKS)
sends each row through Django's email (SMTP, EMAIL_* settings) and marks it sent; a
failed send is tried again with back-off, unless the server refused the address itself
for good (the email is then given up). A crash between the SMTP server's acceptance and
the mark sends that one email again: its Message-ID is the row's, so mail clients show
the two as one.
"""

from __future__ import annotations

import logging
import re
import smtplib
import threading
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connections, transaction
from django.db.models.functions import Now
from django.utils import timezone

from shared_lib.models import (
    OutgoingEmail,
    backoff,
    delete_in_batches,
    failure_text,
    retry_later,
)
from shared_lib.text import plain_line

logger = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
BATCH = 50
# How long a claimed email is left to its sender. EMAIL_TIMEOUT bounds each read from the
# server, not a whole send (a slow server can trickle a reply line by line), so the lease
# is generous: a send that outlasts it goes out twice, under one Message-ID.
MIN_LEASE = timedelta(minutes=15)
LEASE_TIMEOUTS = 30
NEVER = datetime(9999, 1, 1, tzinfo=UTC)  # a given-up email's next attempt
# A refusal saying the recipient's address itself is bad (RFC 3463: 5.1.1 no such
# mailbox, 5.1.2 no such domain, 5.1.3 bad syntax, 5.1.6 moved, 5.1.10 a null MX): no retry
# can change it. Other refusals may come of the sender's own set-up (5.1.7/5.1.8 our From
# address, 5.7.1 relaying denied, authentication required) and are retried like an
# outage, so a mistake in EMAIL_* or DEFAULT_FROM_EMAIL loses no email.
_BAD_ADDRESS = re.compile(rb"5\.1\.(1|2|3|6|10)\b")


def queue_email(*, key: str, to: str, subject: str, body: str) -> OutgoingEmail | None:
    """Queue an email (inside the caller's transaction); None when `key` was queued before
    (nothing new) or there is nobody to send it to."""
    if not to:
        logger.warning("email not queued: no address", extra={"key": key})
        return None
    # A line break in a header is refused at send time (for ever) and would be a header
    # injection if it were not.
    subject = plain_line(subject)[:200]
    row, created = OutgoingEmail.objects.get_or_create(
        key=key, defaults={"to": to, "subject": subject, "body": body}
    )
    return row if created else None


def send_soon() -> None:
    """Send what is due now, in a thread of its own (for a service with no worker, after
    commit: the request does not wait on SMTP). A row it cannot send waits for the
    periodic sender (WEB_PERIODIC_TASKS / WORKER_PERIODIC_TASKS)."""
    threading.Thread(target=_send_and_close, name="send-soon", daemon=True).start()


def _send_and_close() -> None:
    try:
        send_pending_emails()
    except Exception:
        logger.exception("sending email failed; the periodic sender tries again")
    finally:
        connections.close_all()  # this thread's own database connection


def _message_id(row: OutgoingEmail) -> str:
    _, at, domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")
    domain = domain.rstrip(">") if at else "ticketing.local"
    return f"<{row.id}@{domain}>"


def send_pending_emails() -> int:
    """Send the emails due, each once; the number sent.

    Each is claimed in a short transaction and sent outside it: no lock or transaction is
    held while an SMTP server answers. An SMTP failure is recorded on its row, which is
    tried again later (or given up: an address refused for good), and ends this run,
    since the server is likely down and each try could wait EMAIL_TIMEOUT; a refused
    address does not end it (the server answered at once). Rows sent (or given up) more
    than EMAIL_RETENTION_DAYS ago are deleted first.
    """
    cutoff = timezone.now() - timedelta(days=settings.EMAIL_RETENTION_DAYS)
    delete_in_batches(OutgoingEmail.objects.filter(sent_at__lt=cutoff), order_by="sent_at")
    given_up = OutgoingEmail.objects.filter(sent_at__isnull=True, given_up_at__lt=cutoff)
    delete_in_batches(given_up, order_by="given_up_at")
    sent = 0
    # Opened by the first send (inside its try), kept for the rest of the run.
    connection = get_connection(timeout=settings.EMAIL_TIMEOUT)
    try:
        for _ in range(BATCH):
            row = _claim_due()
            if row is None:
                break
            message = EmailMessage(
                row.subject,
                row.body,
                settings.DEFAULT_FROM_EMAIL,
                [row.to],
                headers={"Message-ID": _message_id(row)},
                connection=connection,
            )
            try:
                connection.open()  # once per run: send() then leaves it open
                message.send()
            except Exception as error:  # SMTP refused, unreachable, timed out
                if _address_refused_for_good(error):
                    _give_up(row, _failure(error))
                    continue  # the server answers: the next email may well go
                delay = backoff(row.attempts, first=FIRST_RETRY, most=MAX_RETRY)
                retry_later(row, _failure(error), delay)
                logger.warning(
                    "email not sent; will retry",
                    extra={"key": row.key, "attempts": row.attempts, "error": row.last_error},
                )
                if isinstance(error, smtplib.SMTPRecipientsRefused):
                    continue  # likewise: it refused this address, at once
                break
            # The body goes with the email: what it held (a reset link) is the
            # recipient's, not a table's for anyone who can read it later.
            OutgoingEmail.objects.filter(id=row.id).update(sent_at=timezone.now(), body="")
            sent += 1
    finally:
        connection.close()
    return sent


def _address_refused_for_good(error: Exception) -> bool:
    if not isinstance(error, smtplib.SMTPRecipientsRefused) or not error.recipients:
        return False
    return all(
        500 <= code < 600 and _BAD_ADDRESS.match(reply.lstrip())
        for code, reply in error.recipients.values()
    )


def _failure(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):  # its own text is a dict's
        replies = "; ".join(
            f"{to}: {code} {reply.decode(errors='replace')}"
            for to, (code, reply) in error.recipients.items()
        )
        return failure_text(f"SMTPRecipientsRefused: {replies}")
    return failure_text(error)


def _give_up(row: OutgoingEmail, failure: str) -> None:
    """Never try `row` again; its body goes, as a sent one's does. It leaves the senders'
    index (email_due_idx), and its next attempt is moved to the end of time, so that
    a sender of a release before given_up_at (a rollback) never claims it either."""
    OutgoingEmail.objects.filter(id=row.id).update(
        given_up_at=timezone.now(), body="", last_error=failure, next_attempt_at=NEVER
    )
    logger.warning(
        "email undeliverable: the address was refused; given up",
        extra={"key": row.key, "attempts": row.attempts, "error": failure},
    )


def _claim_due() -> OutgoingEmail | None:
    """The next email due, this try counted and its next attempt moved a lease ahead:
    other senders pass it by while this one sends, and take it up should this one die
    before it records the outcome (sent again under the same Message-ID)."""
    lease = max(MIN_LEASE, timedelta(seconds=settings.EMAIL_TIMEOUT * LEASE_TIMEOUTS))
    # On the database's clock, which every sender shares (their own may differ).
    with transaction.atomic():
        row = (
            OutgoingEmail.objects.select_for_update(skip_locked=True)
            .filter(sent_at__isnull=True, given_up_at__isnull=True, next_attempt_at__lte=Now())
            .order_by("next_attempt_at", "created_at")
            .first()
        )
        if row is None:
            return None
        row.attempts += 1
        OutgoingEmail.objects.filter(id=row.id).update(
            attempts=row.attempts, next_attempt_at=Now() + lease
        )
    return row

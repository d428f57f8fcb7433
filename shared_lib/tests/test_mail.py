"""Email written with the change it tells of, sent by the worker through a real SMTP
server (the mail catcher), once per fact."""

import socket
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from shared_lib import mail
from shared_lib.metrics import EmailCollector
from shared_lib.models import OutgoingEmail

pytestmark = pytest.mark.django_db

RECEIPT = {"to": "dee@example.com", "subject": "Your ticket", "body": "Thank you.\n"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket closes


def test_a_queued_email_is_sent_once_through_smtp(mail_server, settings):
    settings.DEFAULT_FROM_EMAIL = "Ticketing <no-reply@tickets.example>"
    with transaction.atomic():
        row = mail.queue_email(key="receipt:1", **RECEIPT)

    sent = mail.send_pending_emails()
    again = mail.send_pending_emails()

    assert (sent, again) == (1, 0)
    [message] = mail_server.messages()
    assert (message["To"], message["From"], message["Subject"]) == (
        "dee@example.com",
        "Ticketing <no-reply@tickets.example>",
        "Your ticket",
    )
    assert message["Message-ID"] == f"<{row.id}@tickets.example>"
    assert message.get_content() == "Thank you.\n"
    row.refresh_from_db()
    assert (row.attempts, row.last_error) == (1, "")
    assert row.sent_at is not None


def test_one_fact_told_twice_is_one_email(mail_server):
    first = mail.queue_email(key="receipt:1", **RECEIPT)
    second = mail.queue_email(key="receipt:1", **{**RECEIPT, "subject": "Again"})

    mail.send_pending_emails()

    assert first is not None
    assert second is None
    assert [m["Subject"] for m in mail_server.messages()] == ["Your ticket"]


def test_nothing_is_queued_for_nobody(mail_server):
    assert mail.queue_email(key="receipt:1", **{**RECEIPT, "to": ""}) is None

    assert OutgoingEmail.objects.count() == 0


@transaction.atomic
def change_that_fails():
    mail.queue_email(key="receipt:1", **RECEIPT)
    raise RuntimeError("the change failed")


def test_an_email_of_a_change_rolled_back_is_never_sent(mail_server):
    with pytest.raises(RuntimeError):
        change_that_fails()

    assert mail.send_pending_emails() == 0
    assert mail_server.messages() == []


def test_while_smtp_is_down_the_email_waits_and_is_sent_once_it_is_back(mail_server, settings):
    row = mail.queue_email(key="receipt:1", **RECEIPT)
    mail.queue_email(key="receipt:2", **RECEIPT)
    settings.EMAIL_PORT = closed_port()

    assert mail.send_pending_emails() == 0

    row.refresh_from_db()
    assert row.attempts == 1
    assert row.sent_at is None
    assert row.last_error.startswith("ConnectionRefusedError")
    assert row.next_attempt_at > timezone.now() + timedelta(seconds=25)
    # The run stopped at the first failure: the second was not tried against a dead server.
    assert OutgoingEmail.objects.get(key="receipt:2").attempts == 0
    settings.EMAIL_PORT = mail_server.port
    assert mail.send_pending_emails() == 1  # the second; the first waits out its back-off
    OutgoingEmail.objects.filter(id=row.id).update(next_attempt_at=timezone.now())
    assert mail.send_pending_emails() == 1
    assert sorted(m["Message-ID"] for m in mail_server.messages()) == sorted(
        f"<{r.id}@ticketing.local>" for r in OutgoingEmail.objects.all()
    )


def test_a_subject_with_line_breaks_is_sent_on_one_line(mail_server):
    # A ticket title is the seller's text: it must not add headers or block the send.
    mail.queue_email(
        key="sold:1", **{**RECEIPT, "subject": "Your ticket sold: Opera\r\nBcc: all@example.com"}
    )

    assert mail.send_pending_emails() == 1

    [message] = mail_server.messages()
    assert message["Subject"] == "Your ticket sold: Opera Bcc: all@example.com"
    assert message["Bcc"] is None


def test_sent_rows_are_deleted_after_the_retention_unsent_ones_never(mail_server, settings):
    settings.EMAIL_RETENTION_DAYS = 7
    old_sent = mail.queue_email(key="receipt:old", **RECEIPT)
    new_sent = mail.queue_email(key="receipt:new", **RECEIPT)
    old_unsent = mail.queue_email(key="receipt:waiting", **RECEIPT)
    now = timezone.now()
    OutgoingEmail.objects.filter(id=old_sent.id).update(sent_at=now - timedelta(days=8))
    OutgoingEmail.objects.filter(id=new_sent.id).update(sent_at=now - timedelta(days=6))
    OutgoingEmail.objects.filter(id=old_unsent.id).update(
        created_at=now - timedelta(days=30), next_attempt_at=now + timedelta(hours=1)
    )

    assert mail.send_pending_emails() == 0

    assert sorted(OutgoingEmail.objects.values_list("key", flat=True)) == [
        "receipt:new",
        "receipt:waiting",
    ]


def test_a_row_failing_for_days_still_waits_its_longest_back_off(mail_server, settings):
    row = mail.queue_email(key="receipt:1", **RECEIPT)
    OutgoingEmail.objects.filter(id=row.id).update(attempts=60)  # about two days of outage
    settings.EMAIL_PORT = closed_port()

    assert mail.send_pending_emails() == 0

    row.refresh_from_db()
    assert row.attempts == 61
    assert row.last_error.startswith("ConnectionRefusedError")
    wait = row.next_attempt_at - timezone.now()
    assert timedelta(minutes=59) < wait <= mail.MAX_RETRY


def test_an_email_claimed_by_a_sender_is_left_to_it(mail_server):
    row = mail.queue_email(key="receipt:1", **RECEIPT)
    claimed = mail._claim_due()  # another sender, now talking to its SMTP server

    assert mail.send_pending_emails() == 0

    assert claimed.id == row.id
    assert mail_server.messages() == []
    # A generous lease: EMAIL_TIMEOUT bounds each read of a send, not the whole of it.
    leased_for = OutgoingEmail.objects.get(id=row.id).next_attempt_at - timezone.now()
    assert leased_for > timedelta(minutes=14)
    # That sender died before recording anything: once its lease runs out, the email goes,
    # under the one Message-ID.
    OutgoingEmail.objects.filter(id=row.id).update(next_attempt_at=timezone.now())
    assert mail.send_pending_emails() == 1
    [message] = mail_server.messages()
    assert message["Message-ID"] == f"<{row.id}@ticketing.local>"
    assert OutgoingEmail.objects.get(id=row.id).attempts == 2


@pytest.fixture
def silent_smtp_server():
    """A port that accepts connections and never says a word (an SMTP server hung)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held = []

    def accept():
        try:
            held.append(listener.accept()[0])
            accepted.set()
        except OSError:
            pass  # closed by the fixture

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], accepted
    listener.close()
    for conn in held:
        conn.close()


@pytest.mark.django_db(transaction=True)
def test_no_lock_or_transaction_is_held_while_an_smtp_server_answers(
    mail_server, silent_smtp_server, settings
):
    port, accepted = silent_smtp_server  # in place of the catcher
    settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = port, 2
    row = mail.queue_email(key="receipt:1", **RECEIPT)
    sender = threading.Thread(target=mail._send_and_close)

    sender.start()
    try:
        assert accepted.wait(5), "the sender never connected"
        # Mid-send: the row can be locked at once, and the sender's database session is
        # not inside a transaction.
        with transaction.atomic():
            locked = OutgoingEmail.objects.select_for_update(nowait=True).get(id=row.id)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%%'"
            )
            in_transaction = cursor.fetchone()[0]
    finally:
        sender.join(10)

    assert (locked.attempts, in_transaction) == (1, 0)
    assert locked.next_attempt_at > timezone.now()  # claimed: other senders pass it by
    row.refresh_from_db()
    assert row.sent_at is None
    assert row.last_error.startswith(("TimeoutError", "SMTPServerDisconnected")), row.last_error


def test_the_email_backlog_is_on_the_metrics(mail_server):
    sent = mail.queue_email(key="receipt:sent", **RECEIPT)
    mail.send_pending_emails()
    failing = mail.queue_email(key="receipt:failing", **RECEIPT)
    waiting = mail.queue_email(key="receipt:waiting", **RECEIPT)
    an_hour_ago = timezone.now() - timedelta(hours=1)
    OutgoingEmail.objects.filter(id=failing.id).update(
        created_at=an_hour_ago, attempts=3, last_error="SMTPServerDisconnected: gone"
    )

    samples = {s.name: s.value for m in EmailCollector().collect() for s in m.samples}

    assert OutgoingEmail.objects.get(id=sent.id).sent_at is not None
    assert waiting.sent_at is None
    assert samples["ticketing_email_unsent"] == 2
    assert samples["ticketing_email_failing"] == 1
    assert 3590 < samples["ticketing_email_oldest_unsent_age_seconds"] < 3700


NO_SUCH_USER = "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown"


def test_an_address_refused_for_good_is_given_up_and_the_run_goes_on(mail_server, settings):
    mail_server.refuse["nobody@example.com"] = NO_SUCH_USER
    bad = mail.queue_email(key="receipt:bad", **{**RECEIPT, "to": "nobody@example.com"})
    good = mail.queue_email(key="receipt:good", **RECEIPT)

    assert mail.send_pending_emails() == 1

    bad.refresh_from_db()
    assert bad.given_up_at is not None
    assert (bad.sent_at, bad.attempts, bad.body) == (None, 1, "")
    assert bad.last_error == f"SMTPRecipientsRefused: nobody@example.com: {NO_SUCH_USER}"
    assert [m["To"] for m in mail_server.messages()] == [RECEIPT["to"]]
    assert OutgoingEmail.objects.get(id=good.id).sent_at is not None
    # Never tried again: not due before the end of time (so not by a sender of the
    # release before either), and passed by if it were.
    assert bad.next_attempt_at == mail.NEVER
    OutgoingEmail.objects.filter(id=bad.id).update(next_attempt_at=timezone.now())
    assert mail.send_pending_emails() == 0
    assert OutgoingEmail.objects.get(id=bad.id).attempts == 1


@pytest.mark.parametrize(
    "reply",
    [
        # The sender's own set-up (relaying, authentication): its emails must not be lost.
        "550 5.7.1 <nobody@example.com>: Relay access denied",
        "550 5.1.8 <no-reply@ticketing.local>: Sender address rejected: Domain not found",
        "550 Requested action not taken",  # says nothing of the address: tried again
        "450 4.2.1 Mailbox busy, try later",
        "452 4.2.2 Mailbox full",
    ],
)
def test_a_refusal_that_may_pass_is_tried_again_later(mail_server, reply, caplog):
    mail_server.refuse["nobody@example.com"] = reply
    row = mail.queue_email(key="receipt:bad", **{**RECEIPT, "to": "nobody@example.com"})
    mail.queue_email(key="receipt:next", **RECEIPT)

    # The server answered: the run goes on to the next email.
    assert mail.send_pending_emails() == 1

    [warning] = [r for r in caplog.records if r.getMessage() == "email not sent; will retry"]
    assert (warning.levelname, warning.key) == ("WARNING", "receipt:bad")

    row.refresh_from_db()
    assert (row.given_up_at, row.sent_at, row.attempts) == (None, None, 1)
    assert row.body == RECEIPT["body"]
    assert row.last_error == f"SMTPRecipientsRefused: nobody@example.com: {reply}"
    assert row.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert [m["To"] for m in mail_server.messages()] == [RECEIPT["to"]]


def test_a_nul_in_a_servers_reply_is_recorded_written_out(mail_server):
    mail_server.refuse["nobody@example.com"] = "550 5.7.1 blocked\x00here"
    row = mail.queue_email(key="receipt:bad", **{**RECEIPT, "to": "nobody@example.com"})

    assert mail.send_pending_emails() == 0

    row.refresh_from_db()
    assert row.last_error == "SMTPRecipientsRefused: nobody@example.com: 550 5.7.1 blocked\\x00here"
    assert row.next_attempt_at > timezone.now() + timedelta(seconds=25)


def test_given_up_emails_are_counted_apart_and_deleted_after_the_retention(mail_server, settings):
    settings.EMAIL_RETENTION_DAYS = 7
    mail_server.refuse["nobody@example.com"] = NO_SUCH_USER
    old = mail.queue_email(key="receipt:old", **{**RECEIPT, "to": "nobody@example.com"})
    new = mail.queue_email(key="receipt:new", **{**RECEIPT, "to": "nobody@example.com"})
    mail.send_pending_emails()

    samples = {s.name: s.value for m in EmailCollector().collect() for s in m.samples}

    assert samples["ticketing_email_undeliverable"] == 2
    assert samples["ticketing_email_unsent"] == 0
    assert samples["ticketing_email_failing"] == 0
    assert samples["ticketing_email_oldest_unsent_age_seconds"] == 0
    OutgoingEmail.objects.filter(id=old.id).update(given_up_at=timezone.now() - timedelta(days=8))
    mail.send_pending_emails()
    assert list(OutgoingEmail.objects.values_list("id", flat=True)) == [new.id]


def _rows_read(plan: dict, table: str) -> tuple[int, set[str]]:
    """Rows `plan` (EXPLAIN ANALYZE's JSON) read from `table`, and how (the indexes it
    used, and "Seq Scan" if it read the table whole), over every node."""
    read, how = 0, set()
    if plan.get("Relation Name") == table:
        loops = plan.get("Actual Loops", 1)
        removed = plan.get("Rows Removed by Filter", 0) + plan.get(
            "Rows Removed by Index Recheck", 0
        )
        read += (plan["Actual Rows"] + removed) * loops
        if plan["Node Type"] == "Seq Scan":
            how.add("Seq Scan")
    if "Index Name" in plan:  # a bitmap's index scan names no table: its heap scan does
        how.add(plan["Index Name"])
    for child in plan.get("Plans", []):
        child_read, child_how = _rows_read(child, table)
        read, how = read + child_read, how | child_how
    return read, how


def _copies(row: OutgoingEmail, count: int) -> None:
    """`count` more rows as `row` is (each its own id and key), in one statement."""
    columns = [f.column for f in OutgoingEmail._meta.fields if f.column not in ("id", "key")]
    listed = ", ".join(f'"{column}"' for column in columns)
    # The model's own column names, nothing from outside.
    insert = f"INSERT INTO shared_lib_outgoingemail (id, key, {listed})"
    select = f"SELECT gen_random_uuid(), %s || n, {listed} FROM shared_lib_outgoingemail"  # noqa: S608
    sql = f"{insert} {select}, generate_series(1, %s) AS n WHERE id = %s"
    with connection.cursor() as cursor:
        cursor.execute(sql, [f"{row.key}:copy:", count, row.id])


def _replayed(
    statements: list[tuple[str, Any]], *, costs: str = ""
) -> dict[str, tuple[int, set[str]]]:
    """Each SELECT of the email table among `statements` run again under EXPLAIN ANALYZE
    (and each SET among them as it was), in order, in one transaction, after `costs` (a
    SET LOCAL of the planner's): rows read, how."""
    reads = {}
    with transaction.atomic(), connection.cursor() as cursor:
        if costs:
            cursor.execute(costs)
        for sql, params in statements:
            if sql.startswith("SET LOCAL"):
                cursor.execute(sql, params)
            elif sql.startswith("SELECT") and "shared_lib_outgoingemail" in sql:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", params)
                plan = cursor.fetchone()[0][0]["Plan"]
                reads[sql] = _rows_read(plan, "shared_lib_outgoingemail")
    return reads


def test_the_sender_and_the_backlog_never_read_given_up_emails(mail_server, settings):
    # given: a table as a deployment's may be, its statistics known: many emails sent,
    # many given up (as an attacker's sign-ups with dead addresses would leave), a burst
    # that queued and went out (the index of rows to send grew with it), one to send
    sent = mail.queue_email(key="receipt:sent", **RECEIPT)
    mail_server.refuse["nobody@example.com"] = NO_SUCH_USER
    refused = mail.queue_email(key="receipt:refused", **{**RECEIPT, "to": "nobody@example.com"})
    assert mail.send_pending_emails() == 1
    _copies(OutgoingEmail.objects.get(id=sent.id), 20_000)
    _copies(OutgoingEmail.objects.get(id=refused.id), 10_000)
    _copies(mail.queue_email(key="receipt:burst", **RECEIPT), 6_000)
    OutgoingEmail.objects.filter(key__startswith="receipt:burst").update(
        sent_at=timezone.now(), body=""
    )
    settings.EMAIL_PORT = closed_port()  # the one to send stays unsent
    mail.queue_email(key="receipt:due", **RECEIPT)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE shared_lib_outgoingemail")
    scrape, run = [], []

    def recorder(statements):
        def record(execute, sql, params, many, context):
            statements.append((sql, params))
            return execute(sql, params, many, context)

        return record

    # when: a send run and a metrics scrape, each statement then replayed under EXPLAIN
    # ANALYZE, as the planner chooses with these statistics; the scrape also with an
    # index's reads priced far above the whole table's, as a misestimate makes them (the
    # planner takes the two null tests for unrelated: thousands of rows where there is one)
    with connection.execute_wrapper(recorder(run)):
        mail.send_pending_emails()
    with connection.execute_wrapper(recorder(scrape)):
        samples = {s.name: s.value for m in EmailCollector().collect() for s in m.samples}
    reads = {**_replayed(run), **_replayed(scrape)}
    cheap_scan = _replayed(scrape, costs="SET LOCAL random_page_cost = 1000")

    # then: only the given-up rows' count reads them, from their own index; the claim,
    # the backlog and the purges read at most the one email to send
    assert samples["ticketing_email_undeliverable"] == 10_001
    assert samples["ticketing_email_unsent"] == 1
    counts = [read for sql, read in reads.items() if '"given_up_at" IS NOT NULL' in sql]
    assert counts == [(10_001, {"email_given_up_idx"})]
    others = {sql: read for sql, read in reads.items() if '"given_up_at" IS NOT NULL' not in sql}
    assert len(others) >= 4  # the backlog, the two purges' selections, the claim
    assert all(rows <= 1 and "Seq Scan" not in how for rows, how in others.values()), others
    backlog = [read for sql, read in cheap_scan.items() if '"given_up_at" IS NULL' in sql]
    assert backlog == [(1, {"email_due_idx"})]

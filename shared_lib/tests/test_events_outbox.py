import logging
import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from shared_lib.correlation import correlation_scope
from shared_lib.events import Subject, broker, outbox, publish
from shared_lib.events.contracts import ContractError, validate_data
from shared_lib.events.outbox import OutsideTransaction, relay_pending
from shared_lib.models import OutboxEvent
from tests.demo.bus import broker_unreachable, depths
from tests.demo.factories import order_created_data, ticket_data
from tests.demo.models import Visit

# demo_queues: what these tests publish must not linger for a later test's worker.
pytestmark = pytest.mark.usefixtures("transactional_db", "demo_queues")

CONNECTION_REFUSED = "OperationalError: [Errno 111] Connection refused"


def _unsent_row(*, age: timedelta, due_in: timedelta = timedelta(0), **fields):
    """An outbox row as publish() leaves it for the relay."""
    now = timezone.now()
    data = validate_data(Subject.TICKET_CREATED, ticket_data()).model_dump(mode="json")
    return OutboxEvent.objects.create(
        subject=Subject.TICKET_CREATED,
        data=data,
        correlation_id="relay-test",
        created_at=now - age,
        occurred_at=now - age,
        next_attempt_at=now + due_in,
        **fields,
    )


def _ids(messages):
    return [message.properties["message_id"] for message in messages]


def test_publish_outside_a_transaction_raises_and_writes_nothing(tap):
    with pytest.raises(OutsideTransaction, match=r"must run inside transaction\.atomic\(\)"):
        publish(Subject.TICKET_CREATED, ticket_data())

    assert OutboxEvent.objects.count() == 0
    assert tap.count() == 0


def test_invalid_data_raises_before_any_write_and_the_transaction_goes_on(tap):
    with transaction.atomic():
        Visit.objects.create(view="checkout")
        with pytest.raises(ContractError, match=r"'loc': \('price',\)"):
            publish(Subject.TICKET_CREATED, ticket_data(price="20.505"))
        with pytest.raises(ContractError, match=r"'type': 'missing'"):
            publish(Subject.ORDER_CANCELLED, {"id": str(uuid.uuid4()), "version": 1})
        with pytest.raises(ContractError, match=r"^Unknown subject 'ticket\.deleted'$"):
            publish("ticket.deleted", ticket_data())

    assert list(Visit.objects.values_list("view", flat=True)) == ["checkout"]
    assert OutboxEvent.objects.count() == 0
    assert tap.count() == 0


def test_the_row_holds_the_validated_payload_and_the_current_correlation_id(tap):
    data = ticket_data(price="20.5", color="red")

    with correlation_scope("req-42"), transaction.atomic():
        event_id = publish("ticket.created", data)
        row = OutboxEvent.objects.get()

    assert row.id == event_id
    assert row.subject == "ticket.created"
    expected = {key: value for key, value in data.items() if key != "color"}
    assert row.data == {**expected, "price": "20.50"}  # money goes out with two decimals
    assert row.correlation_id == "req-42"
    assert row.sent_at is None  # still inside the transaction: nothing sent yet
    assert row.attempts == 0
    assert row.last_error == ""


def test_after_commit_the_relay_sends_the_message_and_marks_the_row_sent(tap):
    data = ticket_data()

    with correlation_scope("req-7f3a"), transaction.atomic():
        event_id = publish(Subject.TICKET_CREATED, data)
        assert tap.count() == 0  # never before the commit
    assert tap.count() == 0  # nor after it: the writer itself sends nothing
    assert OutboxEvent.objects.get(id=event_id).sent_at is None

    assert relay_pending() == (1, False)

    [message] = tap.take()
    row = OutboxEvent.objects.get(id=event_id)
    assert message.properties["message_id"] == str(event_id)
    assert message.properties["delivery_mode"] == 2
    assert message.properties["correlation_id"] == "req-7f3a"
    assert message.headers == {"correlation_id": "req-7f3a"}
    assert message.content_type == "application/json"
    assert message.delivery_info["exchange"] == settings.EVENTS_EXCHANGE
    assert message.delivery_info["routing_key"] == "ticket.created"
    assert message.decode() == {
        "id": str(event_id),
        "subject": "ticket.created",
        "occurredAt": row.occurred_at.isoformat(),
        "data": data,
    }
    assert row.sent_at is not None
    assert row.created_at <= row.sent_at <= timezone.now()
    assert row.attempts == 0
    assert row.last_error == ""

    # Another pass (this relay or another worker's) sends nothing again.
    assert relay_pending() == (0, False)
    assert tap.count() == 0
    assert OutboxEvent.objects.get(id=event_id).sent_at == row.sent_at


def test_a_published_event_waits_in_the_queue_of_every_consuming_service(tap):
    queues = [
        broker.queue_name(s, Subject.ORDER_CREATED) for s in ("tickets", "payments", "expiration")
    ]
    with broker.connection() as conn, conn.channel() as channel:
        broker.events_exchange()(channel).declare()
        broker.declare_subscriber_queues(channel, Subject.ORDER_CREATED)
        for name in queues:
            channel.queue_purge(queue=name)

    with transaction.atomic():
        publish(Subject.ORDER_CREATED, order_created_data())
    assert relay_pending() == (1, False)

    assert depths(queues) == dict.fromkeys(queues, 1)
    # Their wait and dead-letter queues are each consumer's own, declared when it starts:
    # the publisher has no rights on them.
    dead = [broker.dead_queue_name(name) for name in queues]
    with broker.connection() as conn:
        assert broker.ready_counts(conn, dead) == dict.fromkeys(dead)  # none exists
    with broker.connection() as conn, conn.channel() as channel:
        for name in queues:
            channel.queue_purge(queue=name)


def _publish_then_fail(title, error):
    with transaction.atomic():
        publish(Subject.TICKET_CREATED, ticket_data(title=title))
        raise RuntimeError(error)


def test_a_rolled_back_transaction_leaves_no_row_and_nothing_on_the_broker(tap):
    with pytest.raises(RuntimeError, match="payment declined"):
        _publish_then_fail("Rolled back", "payment declined")

    with transaction.atomic():
        kept = publish(Subject.TICKET_CREATED, ticket_data(title="Kept"))
        with pytest.raises(RuntimeError, match="inner step failed"):  # a savepoint rolls back
            _publish_then_fail("Dropped", "inner step failed")

    assert list(OutboxEvent.objects.values_list("id", flat=True)) == [kept]
    assert relay_pending() == (1, False)
    messages = tap.take()
    assert _ids(messages) == [str(kept)]
    assert messages[0].decode()["data"]["title"] == "Kept"


def test_broker_down_the_commit_succeeds_and_the_relay_backs_off_until_it_is_back(tap, caplog):
    caplog.set_level(logging.INFO, logger="shared_lib.events")

    with broker_unreachable():
        with transaction.atomic():
            Visit.objects.create(view="sell")
            event_id = publish(Subject.TICKET_CREATED, ticket_data())

        # The writer never talks to the broker: its commit cannot fail on it.
        row = OutboxEvent.objects.get(id=event_id)
        assert list(Visit.objects.values_list("view", flat=True)) == ["sell"]
        assert (row.sent_at, row.attempts, row.last_error) == (None, 0, "")

        assert relay_pending() == (0, True)
        failed_at = timezone.now()
        row.refresh_from_db()
        assert (row.sent_at, row.attempts, row.last_error) == (None, 1, CONNECTION_REFUSED)
        # first back-off: 2 ** attempts seconds from the failure
        assert failed_at < row.next_attempt_at <= failed_at + timedelta(seconds=2)
        [warning] = [r for r in caplog.records if r.getMessage() == "outbox relay failed"]
        assert warning.levelno == logging.WARNING
        assert warning.error == CONNECTION_REFUSED

        # Still down once due: one more attempt, a longer back-off.
        OutboxEvent.objects.filter(id=event_id).update(next_attempt_at=timezone.now())
        assert relay_pending() == (0, True)
        failed_at = timezone.now()
        row.refresh_from_db()
        assert (row.sent_at, row.attempts, row.last_error) == (None, 2, CONNECTION_REFUSED)
        assert failed_at + timedelta(seconds=3) < row.next_attempt_at
        assert row.next_attempt_at <= failed_at + timedelta(seconds=4)

    assert tap.count() == 0
    # Broker back: the row is not due before its back-off ends...
    assert relay_pending() == (0, False)
    assert tap.count() == 0
    # ...and once due, it is sent exactly once.
    OutboxEvent.objects.filter(id=event_id).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert relay_pending() == (1, False)
    assert relay_pending() == (0, False)

    messages = tap.take()
    assert _ids(messages) == [str(event_id)]
    assert messages[0].decode()["id"] == str(event_id)
    row.refresh_from_db()
    assert row.sent_at is not None
    assert row.attempts == 2


def test_two_relays_at_once_publish_each_row_exactly_once(tap):
    rows = [_unsent_row(age=timedelta(minutes=1)) for _ in range(60)]
    start = threading.Barrier(2)
    sent_by_thread: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def relay(index: int) -> None:
        try:
            start.wait(timeout=10)
            while True:
                sent, failed = relay_pending(batch=7)
                assert not failed
                if not sent:
                    return
                sent_by_thread[index].append(sent)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(map(sum, sent_by_thread)) == len(rows)
    assert OutboxEvent.objects.filter(sent_at__isnull=True).count() == 0
    published = _ids(tap.take())
    assert len(published) == len(rows)
    assert sorted(published) == sorted(str(row.id) for row in rows)


def test_the_relay_sends_new_rows_at_once_and_leaves_backed_off_rows_alone(tap):
    due = _unsent_row(age=timedelta(minutes=1))
    new = _unsent_row(age=timedelta(0))
    # Written by a process whose clock runs ahead: never tried, so due all the same.
    ahead = _unsent_row(age=timedelta(0), due_in=timedelta(seconds=30))
    backed_off = _unsent_row(age=timedelta(minutes=1), due_in=timedelta(minutes=1), attempts=3)

    assert relay_pending() == (3, False)

    assert sorted(_ids(tap.take())) == sorted(str(row.id) for row in (due, new, ahead))
    assert list(OutboxEvent.objects.filter(sent_at__isnull=True).values_list("id", flat=True)) == [
        backed_off.id
    ]
    assert OutboxEvent.objects.get(id=backed_off.id).attempts == 3
    assert relay_pending() == (0, False)


def test_the_relay_sends_oldest_first_in_batches(tap):
    oldest = _unsent_row(age=timedelta(minutes=3))
    newest = _unsent_row(age=timedelta(minutes=1))
    middle = _unsent_row(age=timedelta(minutes=2))

    assert relay_pending(batch=2) == (2, False)
    assert _ids(tap.take()) == [str(oldest.id), str(middle.id)]
    assert OutboxEvent.objects.get(id=newest.id).sent_at is None

    assert relay_pending(batch=2) == (1, False)
    assert _ids(tap.take()) == [str(newest.id)]


def test_purge_deletes_only_sent_rows_past_retention():
    now = timezone.now()
    old_sent = _unsent_row(age=timedelta(days=9), sent_at=now - timedelta(days=8))
    recent_sent = _unsent_row(age=timedelta(hours=2), sent_at=now - timedelta(hours=1))
    old_unsent = _unsent_row(age=timedelta(days=30))
    assert settings.EVENTS_RETENTION_DAYS == 7

    assert outbox.purge() == 1
    remaining = set(OutboxEvent.objects.values_list("id", flat=True))
    assert remaining == {recent_sent.id, old_unsent.id}
    assert old_sent.id not in remaining

    assert outbox.purge(older_than=timedelta(minutes=30)) == 1
    assert list(OutboxEvent.objects.values_list("id", flat=True)) == [old_unsent.id]


def test_purge_with_a_zero_age_deletes_every_sent_row():
    sent = _unsent_row(age=timedelta(minutes=5), sent_at=timezone.now() - timedelta(minutes=1))
    unsent = _unsent_row(age=timedelta(minutes=5))

    assert outbox.purge(older_than=timedelta(0)) == 1
    assert list(OutboxEvent.objects.values_list("id", flat=True)) == [unsent.id]
    assert not OutboxEvent.objects.filter(id=sent.id).exists()

"""A consumer settles what it holds as one batch: one transaction, one ack, and still
each message's own fate (applied once, retried, dead-lettered) as if it came alone."""

import re
import uuid

import pytest

from shared_lib.events.consumer import Outcome
from shared_lib.events.contracts import Subject
from shared_lib.models import InboxMessage, OutboxEvent
from shared_lib.testing.events import deliver_batch, make_event
from tests.demo import handlers
from tests.demo.bus import (
    bus,
    demo_dispatcher,
    depths,
    event_records,
    main_queue,
    nonempty_demo_queues,
    send_event,
    wait_queues,
)
from tests.demo.factories import new_id, order_cancelled_data, order_created_data, ticket_data
from tests.demo.models import Effect, TicketReplica

pytestmark = pytest.mark.usefixtures("event_logs")


def _batch_sizes(caplog):
    return [record.size for record in event_records(caplog, "event batch settled")]


def _drain(dispatcher, **options):
    from shared_lib.events import broker
    from shared_lib.events.consumer import drain

    with broker.connection() as conn:
        drain(conn, dispatcher, **options)


def _applied_together(ids):
    """The inbox rows of `ids` (all present) were written by one statement."""
    stamps = set(
        InboxMessage.objects.filter(message_id__in=ids).values_list("processed_at", flat=True)
    )
    return InboxMessage.objects.filter(message_id__in=ids).count() == len(ids) and len(stamps) == 1


@bus
def test_a_backlog_is_settled_in_batches_of_at_most_the_batch_size(caplog):
    ids = [send_event("ticket.created", ticket_data(title=f"T{i}")) for i in range(10)]

    _drain(demo_dispatcher(batch_size=4))

    sizes = _batch_sizes(caplog)
    assert sum(sizes) == 10
    assert max(sizes) == 4  # the backlog was there: batches filled up to the limit
    assert all(1 <= size <= 4 for size in sizes)
    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(ids)
    assert len(event_records(caplog, "event handled")) == 10
    assert nonempty_demo_queues() == {}


@bus
def test_a_failing_message_in_a_batch_is_retried_alone_and_the_others_commit(caplog):
    before = send_event("ticket.created", ticket_data(title="before"))
    poison = send_event("ticket.created", ticket_data(title=handlers.POISON_TITLE))
    order_id = new_id()
    early = send_event(  # overtakes its order.created: NotYet
        "order.cancelled", order_cancelled_data(id=order_id, version=1, ticket_id=new_id())
    )
    echo_ticket = new_id()
    echo = send_event("ticket.created", ticket_data(id=echo_ticket, title=handlers.ECHO_TITLE))
    after = send_event("ticket.created", ticket_data(title="after"))

    dispatcher = demo_dispatcher()
    _drain(dispatcher, until=lambda: len(event_records(caplog, "event retry scheduled")) >= 2)

    # The ticket queue's four were settled together, with the order.cancelled (another
    # queue's) or just before or after it, as the deliveries arrived.
    sizes = _batch_sizes(caplog)
    assert sizes[0] == 5 or sorted(sizes[:2]) == [1, 4], sizes
    # The three good ones committed in the batch's one transaction...
    assert _applied_together([before, echo, after])
    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(
        [before, echo, after]
    )
    # ...the two others left nothing behind, not even an inbox row, and wait their turn.
    assert not InboxMessage.objects.filter(message_id__in=[poison, early]).exists()
    retried = {r.event_id: r for r in event_records(caplog, "event retry scheduled")}
    assert retried[poison].error == "RuntimeError: simulated handler bug"
    assert retried[poison].waiting is False
    assert retried[early].error.startswith("not yet: order ")
    assert retried[early].waiting is True
    waiting = depths(
        [*wait_queues("ticket.created"), *wait_queues("order.cancelled")]
    )  # ready after their delay, so counted here or already back in their main queue
    back = depths([main_queue("ticket.created"), main_queue("order.cancelled")])
    assert sum(waiting.values()) + sum(back.values()) == 2
    # The echo's order.completed was written to the outbox once; the poison's rollback
    # took nothing of anyone else's with it.
    assert list(OutboxEvent.objects.values_list("subject", flat=True)) == ["order.completed"]
    assert TicketReplica.objects.get(id=echo_ticket).title == handlers.ECHO_TITLE


@bus
def test_the_same_message_twice_in_one_batch_is_applied_once(caplog):
    from tests.demo.bus import send_raw
    from tests.demo.factories import envelope

    body = envelope(Subject.TICKET_CREATED, ticket_data(title="Twice"))
    for _ in range(2):
        send_raw(body, routing_key="ticket.created", message_id=body["id"])

    _drain(demo_dispatcher())

    assert _batch_sizes(caplog) == [2]
    assert list(Effect.objects.values_list("event_id", flat=True)) == [uuid.UUID(body["id"])]
    assert len(event_records(caplog, "event handled", body["id"])) == 1
    assert len(event_records(caplog, "event duplicate skipped", body["id"])) == 1
    assert nonempty_demo_queues() == {}


@bus
def test_a_connection_lost_mid_batch_applies_none_of_it_and_all_of_it_comes_back(caplog):
    first = send_event("ticket.created", ticket_data(title="first"))
    dies = send_event("ticket.created", ticket_data(title=handlers.CONNECTION_DIES_TITLE))
    last = send_event("ticket.created", ticket_data(title="last"))

    _drain(demo_dispatcher(), until=lambda: Effect.objects.count() == 3)

    assert _batch_sizes(caplog)[0] == 3
    # The batch died with its connection: every message waited (no failure counted)...
    retried = event_records(caplog, "event retry scheduled")
    assert sorted(r.event_id for r in retried[:3]) == sorted([first, dies, last])
    assert all(r.waiting is True and r.error.startswith("database: ") for r in retried[:3])
    assert len(retried) == 3
    # ...and each was applied exactly once when it came back.
    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(
        [first, dies, last]
    )
    assert InboxMessage.objects.count() == 3
    assert event_records(caplog, "event dead-lettered") == []


@bus
@pytest.mark.parametrize("alone", [False, True], ids=["last-in-a-batch", "alone"])
def test_a_handler_leaving_the_transaction_aborted_fails_alone_and_the_others_commit(caplog, alone):
    # Committing an aborted transaction is a silent ROLLBACK: unchecked, every event of
    # the batch would be acked as handled with nothing of it kept.
    good = (
        [] if alone else [send_event("ticket.created", ticket_data(title=f"G{i}")) for i in (1, 2)]
    )
    bad = send_event("ticket.created", ticket_data(title=handlers.SWALLOWS_DB_ERROR_TITLE))

    _drain(demo_dispatcher(), until=lambda: bool(event_records(caplog, "event retry scheduled")))

    assert _batch_sizes(caplog)[0] == len(good) + 1
    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(good)
    assert InboxMessage.objects.filter(message_id__in=good).count() == len(good)
    assert not InboxMessage.objects.filter(message_id=bad).exists()
    assert [r.event_id for r in event_records(caplog, "event handled")] == good
    (retry,) = event_records(caplog, "event retry scheduled")
    assert retry.event_id == bad
    assert retry.error.startswith(
        "shared_lib.events.consumer.AbortedTransaction: the handler caught an error and left"
    )


@bus
@pytest.mark.parametrize("alone", [False, True], ids=["last-in-a-batch", "alone"])
@pytest.mark.parametrize(
    "title",
    [handlers.UNDOES_ITS_BLOCK_TITLE, handlers.ROLLS_BACK_ITS_SAVEPOINT_TITLE],
    ids=["atomic-block", "savepoint-by-hand"],
)
def test_a_handler_undoing_its_own_atomic_block_keeps_the_rest_of_its_work(caplog, alone, title):
    # A batch runs its handlers' atomic blocks without savepoints: the failed block marks
    # the whole transaction for rollback, which must not be committed (silently rolled
    # back) nor count against the event; the batch runs again with savepoints. A rollback
    # to a savepoint taken by hand must not be a silent no-op either.
    good = (
        [] if alone else [send_event("ticket.created", ticket_data(title=f"G{i}")) for i in (1, 2)]
    )
    undoes = send_event("ticket.created", ticket_data(title=title))

    _drain(demo_dispatcher())

    assert _batch_sizes(caplog) == [len(good) + 1]
    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(
        [*good, undoes]
    )
    assert not Effect.objects.filter(subject="undone").exists()
    assert [r.event_id for r in event_records(caplog, "event handled")] == [*good, undoes]
    assert event_records(caplog, "event retry scheduled") == []
    assert nonempty_demo_queues() == {}


@bus
def test_a_connection_dropped_between_two_batches_is_replaced_without_a_retry(caplog):
    # A PostgreSQL restart or idle timeout while the worker waits: the next batch's first
    # statement finds the dead connection and reconnects (shared_lib.postgresql).
    from tests.test_postgresql import _backend_pid, _drop

    dispatcher = demo_dispatcher()
    first = send_event("ticket.created", ticket_data(title="first"))
    _drain(dispatcher, until=lambda: Effect.objects.count() == 1)
    dropped = _backend_pid()
    _drop(dropped)

    batch = [send_event("ticket.created", ticket_data(title=f"T{i}")) for i in range(3)]
    _drain(dispatcher, until=lambda: len(event_records(caplog, "event handled")) == 4)

    assert sorted(str(e) for e in Effect.objects.values_list("event_id", flat=True)) == sorted(
        [first, *batch]
    )
    assert event_records(caplog, "event retry scheduled") == []
    assert _backend_pid() != dropped


@bus
@pytest.mark.parametrize("header", [42, ["a", "list"], {"a": 1}, "", "x" * 500])
def test_a_correlation_id_header_of_any_type_gets_a_fresh_id(caplog, header):
    from tests.demo.bus import send_raw
    from tests.demo.factories import envelope

    body = envelope(Subject.TICKET_CREATED, ticket_data(title="Odd header"))
    send_raw(
        body,
        routing_key="ticket.created",
        message_id=body["id"],
        headers={"correlation_id": header},
    )

    _drain(demo_dispatcher())

    (handled,) = event_records(caplog, "event handled", body["id"])
    assert re.fullmatch(r"[0-9a-f]{32}", handled.correlation_id)
    assert list(Effect.objects.values_list("event_id", flat=True)) == [uuid.UUID(body["id"])]


def _created_orders(count):
    """`count` orders through the bus (order.created applied), for the batch handler of
    order.cancelled to cancel; its call log starts empty."""
    orders = [new_id() for _ in range(count)]
    for order_id in orders:
        send_event("order.created", order_created_data(id=order_id))
    _drain(demo_dispatcher())
    handlers.cancel_batches.clear()
    return orders


@bus
def test_a_batch_handler_gets_the_batch_s_events_of_its_queue_in_one_call(caplog):
    orders = _created_orders(4)
    cancelled = [
        send_event("order.cancelled", order_cancelled_data(id=order_id)) for order_id in orders
    ]
    again = send_event("order.cancelled", order_cancelled_data(id=orders[0]))  # a repeat

    _drain(demo_dispatcher())

    # A batch is what the consumer already holds, so the five may arrive as one batch or
    # several (a frame still on the wire); each batch is one call with all its events.
    sizes = _batch_sizes(caplog)[-len(handlers.cancel_batches) :]
    assert handlers.cancel_batches == sizes
    assert sum(sizes) == 5  # the four, and the repeat (a no-op)
    effects = Effect.objects.filter(subject="order.cancelled")
    assert sorted(str(e) for e in effects.values_list("event_id", flat=True)) == sorted(cancelled)
    inbox = InboxMessage.objects.filter(message_id__in=[*cancelled, again])
    assert inbox.count() == 5
    assert inbox.values("processed_at").distinct().count() == len(sizes)  # a statement a batch
    assert nonempty_demo_queues() == {}


@pytest.mark.django_db
def test_a_batch_handler_never_takes_an_event_past_another_queue_s_delivered_before_it():
    handlers.cancel_batches.clear()
    orders = [new_id() for _ in range(3)]
    assert deliver_batch(
        [make_event(Subject.ORDER_CREATED, order_created_data(id=o)) for o in orders]
    )
    first, second, third = (
        make_event(Subject.ORDER_CANCELLED, order_cancelled_data(id=o)) for o in orders
    )
    between = make_event(Subject.TICKET_CREATED, ticket_data(title="between"))

    results = deliver_batch([first, second, between, third])

    assert results == [Outcome.APPLIED] * 4
    assert handlers.cancel_batches == [2, 1]  # the run before the ticket, then the one after
    effects = Effect.objects.filter(subject="order.cancelled").values_list("event_id", flat=True)
    assert sorted(effects) == sorted([first.id, second.id, third.id])


@bus
def test_a_batch_handler_failing_on_one_event_is_called_again_event_by_event(caplog):
    ready = _created_orders(3)
    good = [send_event("order.cancelled", order_cancelled_data(id=order_id)) for order_id in ready]
    early = send_event("order.cancelled", order_cancelled_data(id=new_id()))  # NotYet

    _drain(demo_dispatcher(), until=lambda: bool(event_records(caplog, "event retry scheduled")))

    assert handlers.cancel_batches[:5] == [4, 1, 1, 1, 1]  # together, then one at a time
    effects = Effect.objects.filter(subject="order.cancelled")
    assert sorted(str(e) for e in effects.values_list("event_id", flat=True)) == sorted(good)
    assert _applied_together(good)
    (retry,) = event_records(caplog, "event retry scheduled")
    assert retry.event_id == early
    assert retry.waiting is True

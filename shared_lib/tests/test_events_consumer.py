import json
import logging
import uuid
from datetime import datetime
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from shared_lib.events import consumer
from shared_lib.events.consumer import Outcome
from shared_lib.events.contracts import Subject
from shared_lib.events.deadletters import dead_letters, replay
from shared_lib.models import AggregateVersion, InboxMessage, StaffAction
from shared_lib.testing.events import deliver, make_event
from shared_lib.testing.waiting import wait_for
from tests.demo import handlers
from tests.demo.bus import (
    bus,
    dead_queue,
    depth,
    depths,
    drain_demo,
    event_records,
    main_queue,
    nonempty_demo_queues,
    send_event,
    send_raw,
    wait_queues,
)
from tests.demo.factories import (
    envelope,
    new_id,
    order_cancelled_data,
    order_created_data,
    ticket_data,
)
from tests.demo.models import Effect, TicketReplica

pytestmark = pytest.mark.usefixtures("event_logs")


def _effects():
    return list(Effect.objects.order_by("id").values_list("event_id", "subject", "version"))


def _inbox():
    return sorted(
        InboxMessage.objects.values_list("message_id", "consumer", "subject", "correlation_id")
    )


def _letters():
    return {letter.message_id: letter for letter in dead_letters(service="demo")}


@pytest.mark.django_db
def test_calling_a_handler_twice_applies_it_once():
    event = make_event(Subject.TICKET_CREATED, ticket_data(title="Front row"))

    assert deliver(event) is Outcome.APPLIED
    assert deliver(event) is Outcome.DUPLICATE

    assert _effects() == [(event.id, "ticket.created:created", 0)]
    assert _inbox() == [(event.id, "demo.ticket.created", "ticket.created", "test")]
    assert TicketReplica.objects.get(id=event.data.id).title == "Front row"


@pytest.mark.django_db
def test_a_republished_order_event_with_a_new_id_claims_its_version_once():
    data = order_created_data(version=0)
    first = make_event(Subject.ORDER_CREATED, data)
    again = make_event(Subject.ORDER_CREATED, data)  # same event, published twice

    assert deliver(first) is Outcome.APPLIED
    assert deliver(first) is Outcome.DUPLICATE
    assert deliver(again) is Outcome.APPLIED  # a new message id passes the inbox...

    assert _effects() == [(first.id, "order.created", 0)]  # ...but not the version claim
    assert InboxMessage.objects.count() == 2


@bus
def test_the_same_message_delivered_twice_is_applied_once(caplog):
    body = envelope(Subject.TICKET_CREATED, ticket_data(title="Twice"))
    for _ in range(2):
        send_raw(
            body,
            routing_key="ticket.created",
            message_id=body["id"],
            headers={"correlation_id": "corr-dup"},
        )

    drain_demo()

    event_id = uuid.UUID(body["id"])
    assert _effects() == [(event_id, "ticket.created:created", 0)]
    assert _inbox() == [(event_id, "demo.ticket.created", "ticket.created", "corr-dup")]
    assert len(event_records(caplog, "event handled", event_id)) == 1
    assert len(event_records(caplog, "event duplicate skipped", event_id)) == 1
    assert nonempty_demo_queues() == {}


@bus
def test_ticket_updates_out_of_order_end_at_the_last_version(caplog):
    ticket_id, user_id, order_id = new_id(), new_id(), new_id()
    ids = {0: send_event("ticket.created", ticket_data(id=ticket_id, user_id=user_id, title="v0"))}
    for version in (3, 1, 2):
        data = ticket_data(
            id=ticket_id,
            user_id=user_id,
            version=version,
            title=f"v{version}",
            price=f"2{version}.00",
            orderId=order_id if version == 3 else None,
        )
        ids[version] = send_event("ticket.updated", data)

    drain_demo(until=lambda: TicketReplica.objects.filter(id=ticket_id, version=3).exists())

    replica = TicketReplica.objects.get(id=ticket_id)
    assert (replica.title, replica.price, replica.version) == ("v3", Decimal("23.00"), 3)
    assert (str(replica.user_id), str(replica.order_id)) == (user_id, order_id)
    # Applied in version order, each once, none as stale.
    assert _effects() == [
        (uuid.UUID(ids[0]), "ticket.created:created", 0),
        (uuid.UUID(ids[1]), "ticket.updated:updated", 1),
        (uuid.UUID(ids[2]), "ticket.updated:updated", 2),
        (uuid.UUID(ids[3]), "ticket.updated:updated", 3),
    ]
    assert InboxMessage.objects.count() == 4
    retries = event_records(caplog, "event retry scheduled", ids[3])
    assert retries
    assert all(r.error.startswith(f"not yet: TicketReplica {ticket_id}: v3 ") for r in retries)
    assert event_records(caplog, "event dead-lettered") == []
    assert _letters() == {}
    assert nonempty_demo_queues() == {}


@bus
def test_an_order_cancelled_that_overtakes_order_created_waits_and_applies_after_it(caplog):
    order_id, ticket_id = new_id(), new_id()
    cancelled = send_event(
        "order.cancelled", order_cancelled_data(id=order_id, version=1, ticket_id=ticket_id)
    )

    drain_demo(until=lambda: False, timeout=1.0)  # long enough to come back twice

    assert _effects() == []
    assert InboxMessage.objects.count() == 0
    assert not AggregateVersion.objects.filter(aggregate_id=order_id).exists()
    retries = event_records(caplog, "event retry scheduled", cancelled)
    assert [(r.attempt, r.delay_ms) for r in retries[:2]] == [(1, 200), (2, 400)]
    assert {r.error for r in retries} == {f"not yet: order {order_id}: v1 on top of v-1"}
    waiting = [main_queue("order.cancelled"), *wait_queues("order.cancelled")]
    wait_for(lambda: sum(depths(waiting).values()) == 1)  # waiting, not lost or dead
    assert depth(dead_queue("order.cancelled")) == 0

    created = send_event(
        "order.created", order_created_data(id=order_id, version=0, ticket_id=ticket_id)
    )
    drain_demo(until=lambda: Effect.objects.count() == 2)

    assert _effects() == [
        (uuid.UUID(created), "order.created", 0),
        (uuid.UUID(cancelled), "order.cancelled", 1),
    ]
    assert AggregateVersion.objects.get(aggregate="order", aggregate_id=order_id).version == 1
    assert InboxMessage.objects.count() == 2
    assert _letters() == {}
    assert nonempty_demo_queues() == {}


@bus
def test_an_invalid_message_is_dead_lettered_at_once_and_the_next_one_is_handled(caplog):
    missing_title = ticket_data()
    del missing_title["title"]
    wrong_queue = envelope("ticket.updated", ticket_data(version=1))
    not_an_envelope = new_id()
    bad_price = send_event("ticket.created", ticket_data(price="cheap"))
    no_title = send_event("ticket.created", missing_title)
    send_raw(wrong_queue, routing_key="ticket.created", message_id=wrong_queue["id"])
    send_raw({"hello": "world"}, routing_key="order.created", message_id=not_an_envelope)
    good = send_event("ticket.created", ticket_data(title="Good"))

    drain_demo()

    letters = _letters()
    assert set(letters) == {bad_price, no_title, wrong_queue["id"], not_an_envelope}
    assert letters[bad_price].error.startswith("invalid message: ticket.created: [")
    assert "'type': 'decimal_parsing', 'loc': ('price',)" in letters[bad_price].error
    assert "'type': 'missing', 'loc': ('title',)" in letters[no_title].error
    assert letters[wrong_queue["id"]].error == (
        "invalid message: envelope says ticket.updated, queue carries ticket.created"
    )
    assert letters[not_an_envelope].error.startswith("invalid message: 4 validation errors")
    assert letters[not_an_envelope].queue == "demo.order.created"
    assert letters[not_an_envelope].body == {"hello": "world"}
    for message_id in (bad_price, no_title, wrong_queue["id"]):
        letter = letters[message_id]
        assert (letter.queue, letter.subject, letter.attempts) == (
            "demo.ticket.created",
            letter.body["subject"],
            0,
        )
        assert datetime.fromisoformat(letter.dead_at).tzinfo is not None
    assert letters[bad_price].body["data"]["price"] == "cheap"
    # Never retried, never handed to a handler; the good one after them is applied.
    assert event_records(caplog, "event retry scheduled") == []
    assert event_records(caplog, "event handler failed") == []
    assert _effects() == [(uuid.UUID(good), "ticket.created:created", 0)]
    assert [row[0] for row in _inbox()] == [uuid.UUID(good)]
    assert nonempty_demo_queues() == {
        "demo.ticket.created.dead": 3,
        "demo.order.created.dead": 1,
    }


@bus
def test_a_handler_bug_is_retried_then_dead_lettered_while_others_are_handled(caplog):
    poison_ticket = new_id()
    poison = send_event(
        "ticket.created", ticket_data(id=poison_ticket, title=handlers.POISON_TITLE)
    )
    good = [send_event("ticket.created", ticket_data(title=f"Good {i}")) for i in range(3)]

    drain_demo(until=lambda: bool(event_records(caplog, "event dead-lettered")))

    failures = event_records(caplog, "event handler failed", poison)
    assert len(failures) == settings.EVENTS_MAX_ATTEMPTS == 3
    assert all(r.exc_info and str(r.exc_info[1]) == "simulated handler bug" for r in failures)
    retries = event_records(caplog, "event retry scheduled", poison)
    assert [(r.attempt, r.delay_ms, r.error) for r in retries] == [
        (1, 200, "RuntimeError: simulated handler bug"),
        (2, 400, "RuntimeError: simulated handler bug"),
    ]
    [dead] = event_records(caplog, "event dead-lettered", poison)
    assert dead.levelno == logging.WARNING
    # The other messages did not wait for the poison one.
    handled = event_records(caplog, "event handled")
    assert sorted(r.event_id for r in handled) == sorted(good)
    assert max(caplog.records.index(r) for r in handled) < caplog.records.index(dead)

    [letter] = dead_letters(service="demo")
    assert letter.message_id == poison
    assert (letter.queue, letter.subject) == ("demo.ticket.created", "ticket.created")
    assert letter.attempts == 3
    assert letter.error == "RuntimeError: simulated handler bug"
    assert letter.body["data"]["title"] == "poison"
    assert not TicketReplica.objects.filter(id=poison_ticket).exists()
    assert not InboxMessage.objects.filter(message_id=poison).exists()
    assert sorted(str(e[0]) for e in _effects()) == sorted(good)
    assert nonempty_demo_queues() == {"demo.ticket.created.dead": 1}


@bus
def test_dead_letters_are_listed_without_consuming_and_replayed_after_the_fix(caplog, monkeypatch):
    poison_ticket = new_id()
    poison = send_event(
        "ticket.created", ticket_data(id=poison_ticket, title=handlers.POISON_TITLE)
    )
    invalid = send_event("order.created", order_created_data(price="-5.00"))
    drain_demo(until=lambda: len(event_records(caplog, "event dead-lettered")) == 2)

    first = dead_letters(service="demo")
    second = dead_letters(service="demo")

    assert first == second
    assert [(letter.message_id, letter.attempts) for letter in first] == [(poison, 3), (invalid, 0)]
    assert dead_letters(service="demo", queue="demo.order.created") == [first[1]]
    wait_for(
        lambda: (
            nonempty_demo_queues() == {"demo.ticket.created.dead": 1, "demo.order.created.dead": 1}
        )
    )

    # Fix the cause (the handler no longer chokes on that title), then replay that one.
    monkeypatch.setattr(handlers, "POISON_TITLE", "no longer poison")
    replayed = replay(service="demo", message_ids={poison})

    assert [letter.message_id for letter in replayed] == [poison]
    drain_demo(until=lambda: TicketReplica.objects.filter(id=poison_ticket).exists())
    assert TicketReplica.objects.get(id=poison_ticket).title == "poison"
    assert _effects() == [(uuid.UUID(poison), "ticket.created:created", 0)]
    [handled] = event_records(caplog, "event handled", poison)
    assert handled.attempt == 0  # the replay starts a fresh attempt budget
    # The other dead letter was not replayed and is still there.
    assert [letter.message_id for letter in dead_letters(service="demo")] == [invalid]
    assert nonempty_demo_queues() == {"demo.order.created.dead": 1}


@bus
def test_events_deadletters_command_lists_and_replays_by_id(caplog, monkeypatch):
    # A version gap that never closes in time: NotYet's budget shrunk to EVENTS_MAX_ATTEMPTS.
    monkeypatch.setattr(consumer, "MAX_NOT_YET_FACTOR", 1)
    ticket_id, user_id = new_id(), new_id()
    update = send_event(
        "ticket.updated", ticket_data(id=ticket_id, user_id=user_id, version=1, title="Moved")
    )
    drain_demo(until=lambda: bool(event_records(caplog, "event dead-lettered", update)))
    [letter] = dead_letters(service="demo")
    error = f"not yet: TicketReplica {ticket_id}: v1 before v0"

    out = StringIO()
    call_command("events_deadletters", "list", stdout=out)
    assert out.getvalue().splitlines() == [
        f"demo.ticket.updated  {update}  ticket.updated  attempts=0  waits=3  "
        f"dead_at={letter.dead_at}",
        f"    error: {error}",
        "1 dead letter(s)",
    ]

    out, err = StringIO(), StringIO()
    call_command("events_deadletters", "list", "--json", stdout=out, stderr=err)
    (line,) = out.getvalue().splitlines()
    total = err.getvalue().strip()
    assert json.loads(line) == {
        "queue": "demo.ticket.updated",
        "message_id": update,
        "subject": "ticket.updated",
        "error": error,
        "dead_at": letter.dead_at,
        "attempts": 0,
        "waits": 3,
        "body": letter.body,
    }
    assert total == "1 dead letter(s)"

    out = StringIO()
    call_command("events_deadletters", "list", "--queue", "demo.ticket.created", stdout=out)
    assert out.getvalue() == "0 dead letter(s)\n"
    with pytest.raises(CommandError, match=r"^demo\.nope is not one of demo's queues: "):
        call_command("events_deadletters", "list", "--queue", "demo.nope")

    with pytest.raises(CommandError, match=r"^Say who replays: --by <your name or email>$"):
        call_command("events_deadletters", "replay", "--id", update)
    assert depth(dead_queue("ticket.updated")) == 1
    out = StringIO()
    call_command("events_deadletters", "replay", "--id", new_id(), "--by", "dee", stdout=out)
    assert out.getvalue() == "0 replayed\n"
    assert depth(dead_queue("ticket.updated")) == 1
    assert StaffAction.objects.count() == 0

    # Fix the cause: the missing version 0 arrives.
    send_event("ticket.created", ticket_data(id=ticket_id, user_id=user_id, title="Stage"))
    drain_demo(until=lambda: TicketReplica.objects.filter(id=ticket_id).exists())

    out = StringIO()
    call_command("events_deadletters", "replay", "--id", update, "--by", "dee", stdout=out)
    assert out.getvalue().splitlines() == [f"replayed demo.ticket.updated {update}", "1 replayed"]
    [replayed] = StaffAction.objects.all()
    assert (replayed.actor_id, replayed.action, replayed.target, replayed.detail) == (
        "dee",
        "deadletter.replay",
        update,
        {"queue": "demo.ticket.updated", "subject": "ticket.updated"},
    )

    drain_demo(until=lambda: TicketReplica.objects.filter(id=ticket_id, version=1).exists())
    assert TicketReplica.objects.get(id=ticket_id).title == "Moved"
    assert [(str(e[0]), e[1]) for e in _effects()][-1] == (update, "ticket.updated:updated")
    out = StringIO()
    call_command("events_deadletters", "list", stdout=out)
    assert out.getvalue() == "0 dead letter(s)\n"
    assert nonempty_demo_queues() == {}


@bus
@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b"{not json"), ("text/plain", b"hello")],
    ids=["broken-json", "not-json"],
)
def test_an_undecodable_message_is_dead_lettered_and_the_consumer_goes_on(content_type, body):
    bad = new_id()
    send_raw(
        body,
        routing_key="ticket.created",
        message_id=bad,
        serializer=None,
        content_type=content_type,
        content_encoding="utf-8",
    )
    good = send_event("ticket.created", ticket_data(title="After the garbage"))

    drain_demo()

    assert [str(e[0]) for e in _effects()] == [good]
    assert list(_letters()) == [bad]
    assert depth(main_queue("ticket.created")) == 0


@bus
def test_a_valid_event_with_an_overlong_correlation_id_is_still_applied(caplog):
    event_id = send_event("ticket.created", ticket_data(), correlation_id="c" * 65)

    drain_demo(
        until=lambda: Effect.objects.exists() or bool(event_records(caplog, "event dead-lettered")),
        timeout=5,
    )

    assert [str(e[0]) for e in _effects()] == [event_id]
    [row] = InboxMessage.objects.all()
    assert len(row.correlation_id) == 32  # replaced like an unsafe X-Request-ID
    assert _letters() == {}

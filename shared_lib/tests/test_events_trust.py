"""Least privilege on the bus: who may publish what, and what a consumer believes.

Each service's broker user (rabbitmq_users) may publish only its own subjects; the
consumer applies an event only when its AMQP user_id (which RabbitMQ verifies) is the
subject's producer, also after a retry or a dead-letter replay, and dead-letters
anything else, malformed delivery headers included, without stalling its queue.
"""

import re
import uuid

import pytest
from amqp.exceptions import AccessRefused, PreconditionFailed
from kombu import Connection, Producer

from shared_lib.events import broker
from shared_lib.events.consumer import ERROR_HEADER, ORIGINAL_USER_HEADER
from shared_lib.events.contracts import PRODUCERS, Subject
from shared_lib.events.deadletters import replay
from tests.demo.bus import (
    dead_queue,
    drain_demo,
    main_queue,
    nonempty_demo_queues,
    send_raw,
    take,
    wait_queues,
)
from tests.demo.factories import envelope, ticket_data
from tests.demo.models import Effect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("demo_queues")]


@pytest.fixture
def real_producers(settings):
    """The demo consumes as production does: ticket.* only from tickets' broker user."""
    settings.EVENTS_PRODUCERS = PRODUCERS


def _effects():
    return sorted((e.event_id, e.subject) for e in Effect.objects.all())


def _send(user_url, subject, data, *, exchange=None, routing_key=None, headers=None, **options):
    body = envelope(subject, data)
    send_raw(
        body,
        routing_key=routing_key or str(subject),
        message_id=body["id"],
        headers=headers,
        exchange=exchange,
        url=user_url,
        **options,
    )
    return uuid.UUID(body["id"])


def _dead_letters(subject):
    return [(m.payload["id"], m.headers) for m in take(dead_queue(subject))]


def _forge(user_url, queue, **options):
    """A ticket.created written by `user_url`'s user straight into `queue` (the default
    exchange lets any user address a queue by name)."""
    return _send(
        user_url, Subject.TICKET_CREATED, ticket_data(), exchange="", routing_key=queue, **options
    )


def _drain_until_dead(count):
    """Drain until the demo's only messages are `count` dead ticket.created letters."""
    drain_demo(until=lambda: nonempty_demo_queues() == {dead_queue(Subject.TICKET_CREATED): count})


def _publish_confirmed(user_url, body, *, routing_key, user_id):
    """Publish to the events exchange as `user_url`'s user, waiting for the broker's word."""
    with Connection(user_url, transport_options={"confirm_publish": True}) as c:
        Producer(c.channel()).publish(
            body, exchange="ticketing.events", routing_key=routing_key, user_id=user_id
        )


def test_a_service_user_cannot_publish_another_services_subject(rabbitmq_users, tap):
    # given tickets' own user: it may publish ticket.* (the control)
    tickets = rabbitmq_users["tickets"]
    _publish_confirmed(tickets, {"n": 1}, routing_key="ticket.created", user_id="tickets")

    # when it publishes payments' subject, RabbitMQ closes the channel
    with pytest.raises(AccessRefused) as refused:
        _publish_confirmed(tickets, {"n": 2}, routing_key="payment.created", user_id="tickets")

    # then
    assert "ACCESS_REFUSED" in str(refused.value)
    assert "payment.created" in str(refused.value)
    assert [(m.delivery_info["routing_key"], m.payload) for m in tap.take()] == [
        ("ticket.created", {"n": 1})
    ]


def test_a_service_user_cannot_name_another_user_as_the_sender(rabbitmq_users):
    with pytest.raises(PreconditionFailed) as refused:
        _publish_confirmed(
            rabbitmq_users["tickets"], {"n": 1}, routing_key="ticket.created", user_id="payments"
        )
    assert "user_id property set to 'payments' but authenticated user was 'tickets'" in str(
        refused.value
    )


def test_an_event_from_its_producer_applies(rabbitmq_users, real_producers):
    event_id = _send(rabbitmq_users["tickets"], Subject.TICKET_CREATED, ticket_data())

    drain_demo()

    assert _effects() == [(event_id, "ticket.created:created")]
    assert nonempty_demo_queues() == {}


def test_an_event_from_another_services_user_is_dead_lettered_not_applied(
    rabbitmq_users, real_producers
):
    # given orders' user writes ticket.created straight into the demo's queue
    forged = _forge(rabbitmq_users["orders"], main_queue(Subject.TICKET_CREATED))
    # and one that names no sender at all
    unnamed = _forge(rabbitmq_users["admin"], main_queue(Subject.TICKET_CREATED), user_id=None)

    drain_demo()

    assert _effects() == []
    letters = _dead_letters(Subject.TICKET_CREATED)
    assert [(uuid.UUID(i), h[ERROR_HEADER], h[ORIGINAL_USER_HEADER]) for i, h in letters] == [
        (
            forged,
            "untrusted sender: ticket.created is published by tickets, this came from orders",
            "orders",
        ),
        (
            unnamed,
            "untrusted sender: ticket.created is published by tickets, "
            "this came from an unnamed user",
            "",
        ),
    ]
    assert nonempty_demo_queues() == {}


def test_a_forged_event_is_not_laundered_through_a_wait_queue(rabbitmq_users, real_producers):
    # given orders' user puts a ticket.created in the demo's wait queue, claiming that
    # tickets sent it first
    forged = _forge(
        rabbitmq_users["orders"],
        wait_queues(Subject.TICKET_CREATED)[0],
        headers={ORIGINAL_USER_HEADER: "tickets", "x-attempts": 1},
    )

    # when it expires back into the main queue
    _drain_until_dead(1)

    # then it is judged by who really sent it
    [(event_id, headers)] = _dead_letters(Subject.TICKET_CREATED)
    assert uuid.UUID(event_id) == forged
    assert headers[ERROR_HEADER] == (
        "untrusted sender: ticket.created is published by tickets, this came from orders"
    )
    assert _effects() == []


def test_a_genuine_event_that_waited_still_applies(rabbitmq_users, real_producers):
    # given ticket.updated v1 from tickets before its v0: it waits (NotYet)
    ticket = ticket_data(version=0)
    updated = _send(rabbitmq_users["tickets"], Subject.TICKET_UPDATED, {**ticket, "version": 1})
    drain_demo(
        until=lambda: any(nonempty_demo_queues().get(q) for q in wait_queues("ticket.updated"))
    )
    # when v0 arrives, v1 comes back from the wait queue, republished by the demo itself
    created = _send(rabbitmq_users["tickets"], Subject.TICKET_CREATED, ticket)
    drain_demo(until=lambda: len(_effects()) == 2)

    # then both applied, the waited one included
    assert _effects() == sorted(
        [(created, "ticket.created:created"), (updated, "ticket.updated:updated")]
    )
    assert nonempty_demo_queues() == {}


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"x-attempts": "abc"}, "malformed header x-attempts: 'abc'"),
        ({"x-attempts": -1}, "malformed header x-attempts: -1"),
        ({"x-waits": "3"}, "malformed header x-waits: '3'"),
        ({"x-waits": 1.5}, "malformed header x-waits: 1.5"),
        ({"x-attempts": True}, "malformed header x-attempts: True"),
    ],
)
def test_a_malformed_header_is_dead_lettered_and_the_queue_moves_on(
    rabbitmq_users, real_producers, headers, error
):
    bad = _send(rabbitmq_users["tickets"], Subject.TICKET_CREATED, ticket_data(), headers=headers)
    good = _send(rabbitmq_users["tickets"], Subject.TICKET_CREATED, ticket_data())

    drain_demo(until=lambda: len(_effects()) == 1)

    assert _effects() == [(good, "ticket.created:created")]
    [(event_id, dead_headers)] = _dead_letters(Subject.TICKET_CREATED)
    assert (uuid.UUID(event_id), dead_headers[ERROR_HEADER]) == (bad, error)
    assert nonempty_demo_queues() == {}


def test_replaying_a_genuine_dead_letter_applies_it(rabbitmq_users, real_producers):
    # given a genuine event dead-lettered for a garbage header
    event_id = _send(
        rabbitmq_users["tickets"],
        Subject.TICKET_CREATED,
        ticket_data(),
        headers={"x-attempts": "garbage"},
    )
    _drain_until_dead(1)
    assert _effects() == []

    # when it is replayed (attempts reset)
    [letter] = replay(service="demo")
    drain_demo(until=lambda: len(_effects()) == 1)

    # then it applies
    assert letter.message_id == str(event_id)
    assert _effects() == [(event_id, "ticket.created:created")]
    assert nonempty_demo_queues() == {}


def test_replaying_a_forged_dead_letter_dead_letters_it_again(rabbitmq_users, real_producers):
    # given a forged event in the dead-letter queue: one the consumer parked, and one
    # orders' user wrote there itself claiming tickets sent it
    parked = _forge(rabbitmq_users["orders"], main_queue(Subject.TICKET_CREATED))
    _drain_until_dead(1)
    planted = _forge(
        rabbitmq_users["orders"],
        dead_queue(Subject.TICKET_CREATED),
        headers={ORIGINAL_USER_HEADER: "tickets"},
    )

    # when both are replayed
    assert sorted(letter.message_id for letter in replay(service="demo")) == sorted(
        [str(parked), str(planted)]
    )
    _drain_until_dead(2)

    # then neither applies: both are dead again, as sent by orders
    assert _effects() == []
    letters = _dead_letters(Subject.TICKET_CREATED)
    assert sorted((uuid.UUID(i), h[ORIGINAL_USER_HEADER]) for i, h in letters) == sorted(
        [(parked, "orders"), (planted, "orders")]
    )


def test_each_producer_may_publish_exactly_its_own_subjects():
    assert set(PRODUCERS) == set(Subject)
    for producer in set(PRODUCERS.values()):
        allowed = broker.permissions(producer).topic_write
        may_publish = {s for s in Subject if re.fullmatch(allowed, str(s))}
        assert may_publish == {s for s, p in PRODUCERS.items() if p == producer}

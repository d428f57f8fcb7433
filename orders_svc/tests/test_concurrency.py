"""Races against a live server: real threads, real connections, the real database.

Transactional tests commit, so the outbox rows are really sent (relay_pending, as the
worker's relay would); the `rabbitmq_vhost` fixture points it at a throw-away vhost.
"""

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.db import connection

from orders import services
from orders.models import Order
from shared_lib.events.outbox import relay_pending
from shared_lib.models import OutboxEvent
from shared_lib.testing.api import one_winner
from shared_lib.testing.live import race
from shared_lib.testing.waiting import wait_for
from tests.factories import ticket_replica

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("rabbitmq_vhost")]

BUYERS = 50
CANCELLERS = 10


def test_many_buyers_racing_for_one_ticket_yield_exactly_one_order(race_server, make_token):
    ticket = ticket_replica()
    url = f"{race_server}/api/orders"
    tokens = [make_token(email=f"buyer{i}@example.com") for i in range(BUYERS)]

    def buy(index):
        # Half carry the session cookie, half a Bearer token: both sign the buyer in.
        if index % 2:
            return requests.post(
                url,
                json={"ticketId": str(ticket.id)},
                cookies={"session": tokens[index]},
                timeout=60,
            )
        return requests.post(
            url,
            json={"ticketId": str(ticket.id)},
            headers={"Authorization": f"Bearer {tokens[index]}"},
            timeout=60,
        )

    responses = race(BUYERS, buy)

    winner = one_winner(responses, 400, services.TICKET_RESERVED)
    order = Order.objects.get()
    assert (str(order.id), order.status, str(order.ticket_id)) == (
        winner["id"],
        "created",
        str(ticket.id),
    )
    assert Order.objects.filter(status__in=Order.ACTIVE).count() == 1
    event = OutboxEvent.objects.get()
    assert (event.subject, event.data["id"]) == ("order.created", winner["id"])
    assert relay_pending() == (1, False)  # sent as the worker's relay would, to the test vhost


def test_concurrent_cancels_of_one_order_cancel_it_once(race_server, make_token):
    ticket = ticket_replica()
    token = make_token()
    auth = {"Authorization": f"Bearer {token}"}
    created = requests.post(
        f"{race_server}/api/orders", json={"ticketId": str(ticket.id)}, headers=auth, timeout=30
    )
    assert created.status_code == 201
    url = f"{race_server}/api/orders/{created.json()['id']}"

    # A declared JSON type, as the client sends it (Django's dev server would otherwise
    # label these body-less requests text/plain).
    headers = {**auth, "Content-Type": "application/json"}

    responses = race(CANCELLERS, lambda _: requests.delete(url, headers=headers, timeout=60))

    assert [r.status_code for r in responses] == [204] * CANCELLERS
    assert all(r.content == b"" for r in responses)
    order = Order.objects.get()
    assert (order.status, order.version) == ("cancelled", 1)
    cancelled = OutboxEvent.objects.filter(subject="order.cancelled")
    assert [e.data["version"] for e in cancelled] == [1]
    assert OutboxEvent.objects.count() == 2
    assert relay_pending() == (2, False)


def test_cancel_without_a_content_type_on_the_django_server(race_server, make_token):
    ticket = ticket_replica()
    auth = {"Authorization": f"Bearer {make_token()}"}
    created = requests.post(
        f"{race_server}/api/orders", json={"ticketId": str(ticket.id)}, headers=auth, timeout=30
    )

    response = requests.delete(
        f"{race_server}/api/orders/{created.json()['id']}", headers=auth, timeout=30
    )

    assert "Content-Type" not in response.request.headers
    assert response.status_code == 204
    assert Order.objects.get().status == "cancelled"


def test_one_buyer_racing_past_the_holding_limit_gets_exactly_the_limit(
    race_server, make_token, settings
):
    settings.ORDERS_MAX_ACTIVE_PER_USER = 5
    settings.RATE_LIMIT_ORDERS = "1000/min"
    racers = 12
    tickets = [ticket_replica() for _ in range(racers)]
    user_id = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {make_token(user_id=user_id)}"}
    key = (services._HOLDING_LOCK, user_id)

    # given: the buyer's lock held here, so every racer is inside its transaction, past
    # its checks of the ticket and waiting at the count, before any of them may go on
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
    with ThreadPoolExecutor(max_workers=1) as pool:
        answers = pool.submit(
            race,
            racers,
            lambda i: requests.post(
                f"{race_server}/api/orders",
                json={"ticketId": str(tickets[i].id)},
                headers=auth,
                timeout=60,
            ),
        )
        try:
            # the race happened: all twelve are waiting at once
            wait_for(lambda: _advisory_waiters() == racers, timeout=30)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
        responses = answers.result()

    # then: the limit held
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [400] * (racers - 5)
    refused = [r.json() for r in responses if r.status_code == 400]
    assert refused == [{"errors": [{"message": services.too_many_unpaid_message(5)}]}] * 7
    assert Order.objects.filter(user_id=user_id, status="created").count() == 5
    assert OutboxEvent.objects.filter(subject="order.created").count() == 5


def _advisory_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND classid = %s",
            [services._HOLDING_LOCK],
        )
        return cursor.fetchone()[0]

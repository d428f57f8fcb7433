"""Races against a live server: real threads, real connections, the real database."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from django.db import connection

from shared_lib.errors import CONFLICT
from shared_lib.models import OutboxEvent
from shared_lib.testing.events import deliver
from tests.factories import make_ticket, order_created
from tickets import services
from tickets.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 8
EDITORS = 8


@pytest.fixture(autouse=True)
def _throwaway_vhost(rabbitmq_vhost):
    """Committed changes leave outbox rows; whatever sends them sends into a vhost
    deleted after the session."""


def put(live_server, ticket_id, token, body):
    return requests.put(
        f"{live_server.url}/api/tickets/{ticket_id}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def events_of(ticket):
    rows = OutboxEvent.objects.filter(data__id=str(ticket.id)).order_by("created_at")
    return [(row.subject, row.data) for row in rows]


def test_an_edit_racing_a_reservation_never_leaves_an_edited_reserved_ticket(
    live_server, make_token
):
    owner = str(uuid.uuid4())
    token = make_token(user_id=owner)
    outcomes = []

    for index in range(ROUNDS):
        ticket = make_ticket(user_id=owner, title="Original", price="20.00")
        order_id = uuid.uuid4()
        start = threading.Barrier(2)
        edit = {"title": f"Edited {index}", "price": "30"}

        def edit_ticket(ticket=ticket, edit=edit, start=start):
            start.wait()
            return put(live_server, ticket.id, token, edit)

        def reserve_ticket(ticket=ticket, order_id=order_id, start=start):
            start.wait()
            try:
                return deliver(order_created(ticket_id=ticket.id, order_id=order_id))
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=2) as pool:
            edited = pool.submit(edit_ticket)
            reserved = pool.submit(reserve_ticket)
            response, _ = edited.result(), reserved.result()

        row = Ticket.objects.get(id=ticket.id)
        assert row.order_id == order_id  # the reservation always takes effect
        events = [(d["version"], d["title"], d["orderId"]) for _, d in events_of(ticket)]
        if response.status_code == 200:
            # The edit went first; the reservation locked the edited ticket after it.
            assert response.json()["version"] == 1
            assert response.json()["orderId"] is None
            assert (row.title, row.price, row.version) == (edit["title"], Decimal("30.00"), 2)
            assert events == [(1, edit["title"], None), (2, edit["title"], str(order_id))]
        else:
            # The reservation went first; the edit was refused and changed nothing.
            assert response.status_code == 400
            assert response.json() == {"errors": [{"message": services.TICKET_RESERVED}]}
            assert (row.title, row.price, row.version) == ("Original", Decimal("20.00"), 1)
            assert events == [(1, "Original", str(order_id))]
        outcomes.append(response.status_code)

    assert set(outcomes) <= {200, 400}


def test_simultaneous_edits_by_the_owner_never_lose_an_update(live_server, make_token):
    owner = str(uuid.uuid4())
    token = make_token(user_id=owner)
    created = requests.post(
        f"{live_server.url}/api/tickets",
        json={"title": "Original", "price": "10"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert created.status_code == 201
    ticket_id = created.json()["id"]
    start = threading.Barrier(EDITORS)

    def edit(index):
        start.wait()
        return put(live_server, ticket_id, token, {"title": f"Edit {index}", "price": index + 1})

    with ThreadPoolExecutor(max_workers=EDITORS) as pool:
        responses = list(pool.map(edit, range(EDITORS)))

    won = [r.json() for r in responses if r.status_code == 200]
    lost = [r for r in responses if r.status_code != 200]
    assert won, "at least one edit succeeds"
    for response in lost:
        assert response.status_code == 409
        assert response.json() == {"errors": [{"message": CONFLICT}]}
    # Every success moved the version by exactly one: none was overwritten unseen.
    assert sorted(body["version"] for body in won) == list(range(1, len(won) + 1))
    row = Ticket.objects.get(id=ticket_id)
    assert row.version == len(won)
    last = max(won, key=lambda body: body["version"])
    assert (row.title, row.price) == (last["title"], Decimal(str(last["price"])))
    updates = [data for subject, data in events_of(row) if subject == "ticket.updated"]
    assert [(d["version"], d["title"]) for d in updates] == [
        (body["version"], body["title"]) for body in sorted(won, key=lambda b: b["version"])
    ]

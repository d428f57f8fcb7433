"""The purchase lifecycle across services, through the gateway, with real workers.

Users sign up with auth_svc, sell with tickets_svc and buy with orders_svc; the services
learn about each other only through RabbitMQ, so every step waits for the events.
"""

import json
import time
import uuid

import psycopg
import pytest
import requests
from kombu import Connection, Exchange

from tests.conftest import DB_PREFIX
from ticketing_devtools.catalog import service
from ticketing_devtools.provision import admin_url

PASSWORD = "a-long-secret-phrase"
SERVICES_DB = service("tickets").database(DB_PREFIX)


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def user(stack, name):
    session = requests.Session()
    response = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": f"{name}-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    session.user_id = response.json()["id"]
    return session


@pytest.fixture
def seller(stack):
    return user(stack, "seller")


@pytest.fixture
def buyer(stack):
    return user(stack, "buyer")


def sell(stack, seller, title="Front row", price="45.00"):
    response = seller.post(
        f"{stack.url}/api/tickets", json={"title": title, "price": price}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def order(stack, buyer, ticket_id):
    return buyer.post(f"{stack.url}/api/orders", json={"ticketId": ticket_id}, timeout=10)


def orderable(stack, buyer, ticket_id):
    """POST /api/orders until the ticket has reached orders_svc's replica (then 201)."""

    def attempt():
        response = order(stack, buyer, ticket_id)
        return response if response.status_code != 404 else None

    return wait_for(attempt)


def tickets_inbox_has(message_id):
    url = admin_url().rsplit("/", 1)[0] + "/" + SERVICES_DB
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT 1 FROM shared_lib_inboxmessage WHERE message_id = %s", [message_id]
        ).fetchone()
    return row is not None


def ticket(stack, ticket_id):
    return requests.get(f"{stack.url}/api/tickets/{ticket_id}", timeout=10).json()


def listed_ids(stack):
    response = requests.get(f"{stack.url}/api/tickets?limit=100", timeout=10)
    assert response.status_code == 200
    return {t["id"] for t in response.json()}


def test_a_new_ticket_becomes_orderable_and_an_order_locks_it(stack, seller, buyer):
    sold = sell(stack, seller)
    assert sold["id"] in listed_ids(stack)

    created = orderable(stack, buyer, sold["id"])

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "created"
    assert body["ticket"] == {"id": sold["id"], "title": "Front row", "price": 45.0, "version": 0}
    locked = wait_for(lambda: (t := ticket(stack, sold["id"]))["orderId"] and t)
    assert locked["orderId"] == body["id"]
    assert locked["version"] == 1
    assert sold["id"] not in listed_ids(stack)
    edit = seller.put(
        f"{stack.url}/api/tickets/{sold['id']}", json={"title": "New", "price": 50}, timeout=10
    )
    assert edit.status_code == 400
    assert edit.json() == {"errors": [{"message": "Cannot edit a reserved ticket"}]}
    again = order(stack, user(stack, "late"), sold["id"])
    assert again.status_code == 400
    assert again.json() == {"errors": [{"message": "Ticket is already reserved"}]}


def test_cancelling_releases_the_ticket_for_sale_and_edits(stack, seller, buyer):
    sold = sell(stack, seller)
    order_id = orderable(stack, buyer, sold["id"]).json()["id"]
    wait_for(lambda: ticket(stack, sold["id"])["orderId"] == order_id)

    cancelled = buyer.delete(f"{stack.url}/api/orders/{order_id}", timeout=10)

    assert cancelled.status_code == 204
    released = wait_for(lambda: (t := ticket(stack, sold["id"]))["orderId"] is None and t)
    assert released["version"] == 2
    assert sold["id"] in listed_ids(stack)
    edit = seller.put(
        f"{stack.url}/api/tickets/{sold['id']}",
        json={"title": "Balcony", "price": "30"},
        timeout=10,
    )
    assert edit.status_code == 200
    assert (edit.json()["title"], edit.json()["price"], edit.json()["version"]) == (
        "Balcony",
        30.0,
        3,
    )
    # orders_svc's replica follows the edit, so the next order shows the new title.
    replica = wait_for(lambda: (r := order(stack, buyer, sold["id"])).status_code == 201 and r)
    assert replica.json()["ticket"]["title"] == "Balcony"


def test_a_stale_cancel_of_an_old_order_does_not_release_a_newer_lock(
    stack, stack_vhost, seller, buyer
):
    sold = sell(stack, seller)
    first = orderable(stack, buyer, sold["id"]).json()["id"]
    wait_for(lambda: ticket(stack, sold["id"])["orderId"] == first)
    assert buyer.delete(f"{stack.url}/api/orders/{first}", timeout=10).status_code == 204
    wait_for(lambda: ticket(stack, sold["id"])["orderId"] is None)
    second_buyer = user(stack, "second")
    second = order(stack, second_buyer, sold["id"]).json()["id"]
    wait_for(lambda: ticket(stack, sold["id"])["orderId"] == second)
    before = ticket(stack, sold["id"])

    # A late copy of the first order's cancellation (a new message id, so the inbox does
    # not catch it: only the order's version can).
    envelope = {
        "id": str(uuid.uuid4()),
        "subject": "order.cancelled",
        "occurredAt": "2026-01-01T00:00:00+00:00",
        "data": {"id": first, "version": 1, "ticket": {"id": sold["id"]}},
    }
    with Connection(stack_vhost) as conn:
        conn.Producer().publish(
            json.dumps(envelope),
            exchange=Exchange("ticketing.events", type="topic", durable=True),
            routing_key="order.cancelled",
            content_type="application/json",
            message_id=envelope["id"],
            delivery_mode=2,
        )
    # tickets_svc's worker handled it (its inbox has it), and nothing moved.
    wait_for(lambda: tickets_inbox_has(envelope["id"]))

    assert ticket(stack, sold["id"]) == before
    assert before["orderId"] == second

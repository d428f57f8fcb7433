"""The purchase lifecycle across services, through the gateway, with real workers.

Users sign up with auth_svc, sell with tickets_svc and buy with orders_svc; the services
learn about each other only through RabbitMQ, so every step waits for the events.
"""

import json
import uuid

from kombu import Connection, Exchange

from shared_lib.testing.waiting import wait_for
from tests.system import (
    listed_ids,
    order,
    orderable,
    sell,
    ticket,
    tickets_inbox_has,
    user,
)


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
    # orders_svc's replica follows the edit: an order's embedded ticket shows it.
    again = order(stack, buyer, sold["id"])
    assert again.status_code == 201
    url = f"{stack.url}/api/orders/{again.json()['id']}"
    wait_for(lambda: buyer.get(url, timeout=10).json()["ticket"]["title"] == "Balcony")
    # v3 is the edit; the new order's own lock (v4) may already have arrived too.
    assert buyer.get(url, timeout=10).json()["ticket"]["version"] in (3, 4)


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
    # Sent as orders_svc sends it: through its own broker user, named on the message.
    with Connection(stack.env_for("orders")["RABBITMQ_URL"]) as conn:
        conn.Producer().publish(
            json.dumps(envelope),
            exchange=Exchange("ticketing.events", type="topic", durable=True),
            routing_key="order.cancelled",
            content_type="application/json",
            message_id=envelope["id"],
            delivery_mode=2,
            user_id="orders",
        )
    # tickets_svc's worker handled it (its inbox has it), and nothing moved.
    wait_for(lambda: tickets_inbox_has(envelope["id"]))

    assert ticket(stack, sold["id"]) == before
    assert before["orderId"] == second

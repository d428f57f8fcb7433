"""Only payments_svc's broker user can complete an order: a payment.created from any other
service's user is dead-lettered by the real worker, never applied."""

import uuid
from datetime import UTC, datetime

import pytest
from kombu import Connection, Exchange, Queue

from orders.models import Order
from shared_lib.testing.waiting import wait_for
from tests.factories import order_row

pytestmark = pytest.mark.django_db(transaction=True)

DEAD = "orders.payment.created.dead"


def _publish_payment_created(url: str, user: str, order_id: uuid.UUID, **route: str) -> str:
    event_id = str(uuid.uuid4())
    body = {
        "id": event_id,
        "subject": "payment.created",
        "occurredAt": datetime.now(UTC).isoformat(),
        "data": {"id": str(uuid.uuid4()), "orderId": str(order_id), "stripeId": "pi_forged"},
    }
    with Connection(url, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            body,
            exchange=route.get("exchange", Exchange("ticketing.events", type="topic")),
            routing_key=route.get("routing_key", "payment.created"),
            serializer="json",
            message_id=event_id,
            delivery_mode=2,
            user_id=user,
        )
    return event_id


def _dead_letters(admin_url: str) -> list:
    with Connection(admin_url) as conn:
        queue = Queue(DEAD, no_declare=True)(conn.channel())
        found = []
        while (message := queue.get(no_ack=True)) is not None:
            found.append(message)
        return found


def test_a_payment_created_from_another_services_user_is_dead_lettered_and_the_order_unchanged(
    event_worker, rabbitmq_users
):
    order = order_row()
    event_worker()

    # when tickets' user (a compromised tickets pod) addresses orders' queue directly:
    # it may not publish payment.created on the events exchange at all
    forged = _publish_payment_created(
        rabbitmq_users["tickets"],
        "tickets",
        order.id,
        exchange="",
        routing_key="orders.payment.created",
    )

    # then it is parked with the reason, and the order is still unpaid
    [letter] = wait_for(lambda: _dead_letters(rabbitmq_users["admin"]))
    assert letter.properties["message_id"] == forged
    assert letter.headers["x-error"] == (
        "untrusted sender: payment.created is published by payments, this came from tickets"
    )
    order.refresh_from_db()
    assert (order.status, order.version) == (Order.Status.CREATED, 0)


def test_a_payment_created_from_payments_user_completes_the_order(event_worker, rabbitmq_users):
    order = order_row()
    event_worker()

    _publish_payment_created(rabbitmq_users["payments"], "payments", order.id)

    wait_for(lambda: Order.objects.get(id=order.id).status == Order.Status.COMPLETE)
    assert _dead_letters(rabbitmq_users["admin"]) == []

"""Staff cancel an unpaid order from the admin, through services.order_cancel_by_staff; and
a ticket staff took off sale cannot be ordered."""

import pytest

from orders import services
from orders.models import Order
from shared_lib.errors import BadRequest
from shared_lib.events.consumer import Outcome
from shared_lib.models import OutboxEvent, StaffAction
from shared_lib.staff import Actor
from shared_lib.testing.admin import grant, offered_actions, run_staff_action, shown_messages
from shared_lib.testing.api import errors
from tests.factories import order_row, ticket_replica, ticket_update

pytestmark = pytest.mark.django_db

STAFF = Actor(id="b7e2d2ef-0000-4000-8000-000000000002", name="support@example.com")
CHANGELIST = "/admin/orders/orders/order/"


def cancellations():
    return [row.data for row in OutboxEvent.objects.filter(subject="order.cancelled")]


def test_staff_cancel_an_unpaid_order_its_ticket_goes_back_on_sale():
    order = order_row()

    assert services.order_cancel_by_staff(order_id=order.id, actor=STAFF) is True

    order.refresh_from_db()
    assert (order.status, order.version) == ("cancelled", 1)
    assert cancellations() == [
        {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}}
    ]
    [action] = StaffAction.objects.all()
    assert (action.actor_id, action.actor_name, action.action, action.target) == (
        STAFF.id,
        STAFF.name,
        "order.cancel",
        str(order.id),
    )


def test_a_cancelled_order_cancelled_again_by_staff_changes_and_records_nothing():
    order = order_row(status=Order.Status.CANCELLED)

    assert services.order_cancel_by_staff(order_id=order.id, actor=STAFF) is False

    assert cancellations() == []
    assert StaffAction.objects.count() == 0


def test_staff_cannot_cancel_a_paid_order():
    order = order_row(status=Order.Status.COMPLETE)

    with pytest.raises(BadRequest) as refused:
        services.order_cancel_by_staff(order_id=order.id, actor=STAFF)

    assert refused.value.message == services.ORDER_COMPLETE
    assert Order.objects.get(id=order.id).status == "complete"
    assert cancellations() == []
    assert StaffAction.objects.count() == 0


def test_staff_cancel_orders_from_the_admin(staff_admin_client):
    unpaid, paid = order_row(), order_row(status=Order.Status.COMPLETE)
    assert "cancel_order" not in offered_actions(staff_admin_client, CHANGELIST)
    grant(staff_admin_client, "orders.cancel_order")

    response = run_staff_action(staff_admin_client, CHANGELIST, "cancel_order", [unpaid, paid])

    assert sorted(shown_messages(response)) == [
        ("success", f"order {unpaid.id} (cancelled): cancelled"),
        ("warning", f"{paid}: Cannot cancel a completed order"),
    ]
    assert Order.objects.get(id=unpaid.id).status == "cancelled"
    assert [a.target for a in StaffAction.objects.all()] == [str(unpaid.id)]


def test_a_ticket_taken_off_sale_cannot_be_ordered(signed_in_client):
    ticket = ticket_replica()
    assert ticket_update(ticket, onSale=False) is Outcome.APPLIED
    buyer = signed_in_client(email="buyer@example.com")

    response = buyer.post("/api/orders", {"ticketId": str(ticket.id)}, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.TICKET_OFF_SALE,))
    assert Order.objects.count() == 0
    assert OutboxEvent.objects.filter(subject="order.created").count() == 0


def test_a_ticket_event_without_on_sale_keeps_what_the_replica_knew():
    # ticket.updated from a tickets_svc pod that predates onSale (a rolling deploy) must
    # not put a ticket staff took off sale back on sale.
    ticket = ticket_replica()
    assert ticket.on_sale is True
    assert ticket_update(ticket, onSale=False) is Outcome.APPLIED
    ticket.refresh_from_db()

    assert ticket_update(ticket, title="Renamed") is Outcome.APPLIED

    ticket.refresh_from_db()
    assert (ticket.title, ticket.on_sale, ticket.version) == ("Renamed", False, 2)
    assert ticket_update(ticket, onSale=True) is Outcome.APPLIED
    ticket.refresh_from_db()
    assert ticket.on_sale is True

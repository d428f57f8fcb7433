"""Staff take a ticket off sale from the admin, through services.ticket_withdraw_by_staff."""

import logging
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from shared_lib.errors import BadRequest
from shared_lib.events.consumer import Outcome
from shared_lib.models import OutboxEvent, StaffAction
from shared_lib.staff import Actor
from shared_lib.testing.admin import grant, offered_actions, run_staff_action, shown_messages
from shared_lib.testing.api import errors
from shared_lib.testing.events import deliver
from tests.factories import make_ticket, order_cancelled, order_completed, order_created
from tickets import services
from tickets.admin import TicketAdmin
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

STAFF = Actor(id="a6f1c1de-0000-4000-8000-000000000001", name="staff@example.com")
CHANGELIST = "/admin/tickets/tickets/ticket/"


def updates(ticket):
    """(version, orderId, onSale) of each ticket.updated of `ticket`, oldest first."""
    rows = OutboxEvent.objects.filter(subject="ticket.updated").order_by("created_at")
    return [
        (r.data["version"], r.data["orderId"], r.data["onSale"])
        for r in rows
        if r.data["id"] == str(ticket.id)
    ]


def test_a_ticket_taken_off_sale_is_announced_recorded_and_no_longer_listed(api_client):
    ticket = make_ticket(title="Off sale")
    other = make_ticket(title="Still on sale")

    assert services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF) is True

    row = Ticket.objects.get(id=ticket.id)
    assert (row.status, row.version) == ("withdrawn", 1)
    assert updates(ticket) == [(1, None, False)]
    [action] = StaffAction.objects.all()
    assert (action.actor_id, action.actor_name, action.action, action.target) == (
        STAFF.id,
        STAFF.name,
        "ticket.withdraw",
        str(ticket.id),
    )
    listed = api_client.get("/api/tickets").json()
    assert [t["id"] for t in listed] == [str(other.id)]
    assert api_client.get(f"/api/tickets/{ticket.id}").json()["status"] == "withdrawn"


def test_taking_a_ticket_off_sale_again_changes_and_records_nothing():
    ticket = make_ticket()
    services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF)

    assert services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF) is False

    assert Ticket.objects.get(id=ticket.id).version == 1
    assert len(updates(ticket)) == 1
    assert StaffAction.objects.count() == 1


def test_a_sold_ticket_cannot_be_taken_off_sale():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=order_id))
    deliver(order_completed(order_id=order_id))

    with pytest.raises(BadRequest) as refused:
        services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF)

    assert refused.value.message == "Cannot take a sold ticket off sale"
    row = Ticket.objects.get(id=ticket.id)
    assert (row.status, row.withdrawn_at, row.version) == ("sold", None, 1)
    assert StaffAction.objects.count() == 0


def test_a_reserved_ticket_taken_off_sale_stays_off_sale_when_its_order_is_cancelled():
    ticket = make_ticket()
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=order_id))

    services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF)
    assert Ticket.objects.get(id=ticket.id).status == "reserved"  # the order goes on
    deliver(order_cancelled(ticket_id=ticket.id, order_id=order_id))

    assert Ticket.objects.get(id=ticket.id).status == "withdrawn"
    assert updates(ticket) == [
        (1, str(order_id), True),
        (2, str(order_id), False),
        (3, None, False),
    ]


def test_an_order_that_raced_the_withdrawal_holds_the_ticket(caplog):
    # orders_svc took the order before ticket.updated (onSale false) reached it.
    ticket = make_ticket()
    services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF)
    order_id = uuid.uuid4()

    with caplog.at_level(logging.WARNING, logger="tickets.services"):
        outcome = deliver(order_created(ticket_id=ticket.id, order_id=order_id))

    assert outcome is Outcome.APPLIED
    row = Ticket.objects.get(id=ticket.id)
    assert (row.status, row.order_id) == ("reserved", order_id)
    assert [r.getMessage() for r in caplog.records if r.name == "tickets.services"] == [
        "an order raced the ticket's withdrawal; the order holds it"
    ]


def test_the_seller_cannot_edit_a_ticket_taken_off_sale(seller):
    ticket = make_ticket(user_id=seller.user_id)
    services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=STAFF)

    response = seller.put(
        f"/api/tickets/{ticket.id}", {"title": "Back on", "price": "5"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == errors((services.TICKET_WITHDRAWN,))
    assert Ticket.objects.get(id=ticket.id).title == ticket.title
    assert seller.get("/api/tickets/mine").json()[0]["status"] == "withdrawn"


# --- the admin -----------------------------------------------------------------------


def test_the_action_is_offered_only_to_staff_granted_its_permission(staff_admin_client):
    assert "withdraw_ticket" not in offered_actions(staff_admin_client, CHANGELIST)

    grant(staff_admin_client, "tickets.withdraw_ticket")

    assert "withdraw_ticket" in offered_actions(staff_admin_client, CHANGELIST)


def test_staff_without_the_permission_cannot_post_the_action(staff_admin_client):
    ticket = make_ticket()

    response = run_staff_action(staff_admin_client, CHANGELIST, "withdraw_ticket", [ticket])

    # With no action offered, Django treats the post as the list's own: nothing is done.
    assert response.status_code == 200
    assert shown_messages(response) == []
    assert Ticket.objects.get(id=ticket.id).status == "available"
    assert StaffAction.objects.count() == 0


def test_the_action_itself_refuses_a_user_without_the_permission(staff_admin_client, rf):
    # The second lock, should the action ever be reached another way.
    ticket = make_ticket()
    staff_admin_client.get(CHANGELIST)  # makes the row standing for them
    request = rf.post(CHANGELIST)
    request.user = get_user_model().objects.get(username=staff_admin_client.user_id)
    [withdraw] = TicketAdmin.actions

    with pytest.raises(PermissionDenied):
        withdraw(admin.site._registry[Ticket], request, Ticket.objects.filter(id=ticket.id))

    assert Ticket.objects.get(id=ticket.id).status == "available"


def test_a_staff_action_touches_at_most_fifty_rows_at_a_time(staff_admin_client):
    tickets = [make_ticket(title=f"T{i}") for i in range(51)]
    grant(staff_admin_client, "tickets.withdraw_ticket")

    response = run_staff_action(staff_admin_client, CHANGELIST, "withdraw_ticket", tickets)

    assert shown_messages(response) == [
        ("error", "Select at most 50 rows at a time; nothing was done.")
    ]
    assert not Ticket.objects.filter(withdrawn_at__isnull=False).exists()
    assert StaffAction.objects.count() == 0


def test_staff_take_tickets_off_sale_from_the_admin(staff_admin_client):
    free, sold = make_ticket(title="Free"), make_ticket(title="Gone")
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=sold.id, order_id=order_id))
    deliver(order_completed(order_id=order_id))
    grant(staff_admin_client, "tickets.withdraw_ticket")

    response = run_staff_action(staff_admin_client, CHANGELIST, "withdraw_ticket", [free, sold])

    assert response.status_code == 200
    assert sorted(shown_messages(response)) == [
        ("success", "Free: off sale"),
        ("warning", "Gone: Cannot take a sold ticket off sale"),
    ]
    assert Ticket.objects.get(id=free.id).status == "withdrawn"
    [action] = StaffAction.objects.all()
    assert (action.actor_id, action.actor_name, action.target) == (
        staff_admin_client.user_id,
        staff_admin_client.email,
        str(free.id),
    )

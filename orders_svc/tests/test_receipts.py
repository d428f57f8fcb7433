"""The buyer's receipt: queued when a payment completes the order, once, and sent by the
worker through SMTP (the mail catcher)."""

import uuid

import pytest

from orders.models import Order
from shared_lib.events.consumer import Outcome
from shared_lib.mail import send_pending_emails
from shared_lib.models import OutgoingEmail
from shared_lib.testing.events import deliver, make_event
from tests.factories import order_row, ticket_replica

pytestmark = pytest.mark.django_db


def payment(order_id):
    data = {"id": str(uuid.uuid4()), "orderId": str(order_id), "stripeId": "ch_test_1"}
    return make_event("payment.created", data)


def test_a_paid_order_sends_its_buyer_a_receipt_once(mail_server, settings):
    settings.SITE_URL = "https://tickets.example"
    order = order_row(
        ticket=ticket_replica(title="Arctic Monkeys, floor", price="1234.50"),
        user_email="dee@example.com",
    )

    assert deliver(payment(order.id)) is Outcome.APPLIED
    assert deliver(payment(order.id)) is Outcome.APPLIED  # another payment message
    assert send_pending_emails() == 1

    [receipt] = mail_server.messages()
    assert (receipt["To"], receipt["Subject"]) == (
        "dee@example.com",
        "Your ticket: Arctic Monkeys, floor",
    )
    assert receipt.get_content() == (
        "Thank you for your purchase.\n\n"
        "Ticket: Arctic Monkeys, floor\n"
        "Paid: $1,234.50\n"
        f"Order: {order.id}\n\n"
        f"Your order: https://tickets.example/orders/{order.id}\n"
    )
    assert OutgoingEmail.objects.get().key == f"receipt:{order.id}"


def test_a_title_from_before_titles_were_plain_is_one_plain_line_of_the_receipt(mail_server):
    # Listed before tickets_svc refused them: the seller's text must not write lines of
    # its own into the buyer's receipt, nor reorder what it shows.
    order = order_row(
        ticket=ticket_replica(title="Opera\n\nYour card was declined: call +1 555 0100 \u202e$1"),
        user_email="dee@example.com",
    )

    deliver(payment(order.id))
    send_pending_emails()

    [receipt] = mail_server.messages()
    lines = receipt.get_content().splitlines()
    assert "Ticket: Opera Your card was declined: call +1 555 0100 $1" in lines
    assert not any(line.startswith("Your card") for line in lines)
    assert receipt["Subject"] == "Your ticket: Opera Your card was declined: call +1 555 0100 $1"


def test_a_payment_for_a_cancelled_order_sends_no_receipt(mail_server):
    order = order_row(status=Order.Status.CANCELLED, version=1, user_email="dee@example.com")

    assert deliver(payment(order.id)) is Outcome.APPLIED

    assert OutgoingEmail.objects.count() == 0


def test_an_order_placed_before_receipts_completes_without_one(mail_server):
    order = order_row()  # no email was kept for it

    assert deliver(payment(order.id)) is Outcome.APPLIED

    assert Order.objects.get(id=order.id).status == "complete"
    assert OutgoingEmail.objects.count() == 0


def test_an_order_keeps_its_buyers_email_from_the_session(signed_in_client):
    ticket = ticket_replica()
    buyer = signed_in_client(email="dee@example.com")

    response = buyer.post("/api/orders", {"ticketId": str(ticket.id)}, format="json")

    assert response.status_code == 201
    assert Order.objects.get(id=response.json()["id"]).user_email == "dee@example.com"
    assert "userEmail" not in response.json()  # kept for the receipt, not shown

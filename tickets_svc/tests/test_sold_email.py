""" "Your ticket sold": queued when the order holding the ticket completes, once, and sent
by the worker through SMTP (the mail catcher)."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from shared_lib.events.consumer import Outcome
from shared_lib.mail import send_pending_emails
from shared_lib.models import OutgoingEmail
from shared_lib.testing.events import deliver
from tests.factories import make_ticket, order_cancelled, order_completed, order_created
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def test_the_seller_hears_once_that_their_ticket_sold(mail_server, settings):
    settings.SITE_URL = "https://tickets.example"
    ticket = make_ticket(title="Opera box", price="80.00", user_email="sam@example.com")
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=order_id))
    completed = order_completed(order_id=order_id)

    assert deliver(completed) is Outcome.APPLIED
    assert deliver(order_completed(order_id=order_id)) is Outcome.APPLIED  # told again
    assert send_pending_emails() == 1

    [news] = mail_server.messages()
    assert (news["To"], news["Subject"]) == ("sam@example.com", "Your ticket sold: Opera box")
    assert news.get_content() == (
        "Good news: your ticket sold.\n\n"
        "Ticket: Opera box\n"
        "Price: $80.00\n\n"
        "Your listings: https://tickets.example/tickets/mine\n"
    )
    assert OutgoingEmail.objects.get().key == f"sold:{ticket.id}"


def test_a_sale_learnt_long_after_its_reservation_is_not_news(mail_server):
    # As when orders_svc tells old completions again (docs/deploy.md): sold, no email.
    ticket = make_ticket(title="Opera box", price="80.00", user_email="sam@example.com")
    order_id = uuid.uuid4()
    deliver(order_created(ticket_id=ticket.id, order_id=order_id))
    Ticket.objects.filter(id=ticket.id).update(updated_at=timezone.now() - timedelta(days=30))

    assert deliver(order_completed(order_id=order_id)) is Outcome.APPLIED

    ticket.refresh_from_db()
    assert ticket.sold_at is not None
    assert OutgoingEmail.objects.count() == 0


def test_a_reservation_or_a_cancellation_sends_nothing(mail_server):
    ticket = make_ticket(user_email="sam@example.com")
    order_id = uuid.uuid4()

    deliver(order_created(ticket_id=ticket.id, order_id=order_id))
    deliver(order_cancelled(ticket_id=ticket.id, order_id=order_id))

    assert Ticket.objects.get(id=ticket.id).status == "available"
    assert OutgoingEmail.objects.count() == 0


def test_a_ticket_keeps_its_sellers_email_from_the_session(seller):
    response = seller.post("/api/tickets", {"title": "Concert", "price": "20"}, format="json")

    assert response.status_code == 201
    assert Ticket.objects.get(id=response.json()["id"]).user_email == "seller@example.com"
    assert "userEmail" not in response.json()

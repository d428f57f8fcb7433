"""Helpers for the system tests: drive the running stack over HTTP like a client would."""

import uuid

import psycopg
import requests

from shared_lib.testing.waiting import wait_for
from ticketing_devtools.backing import admin_url
from ticketing_devtools.catalog import service

# Unique per run: concurrent runs on one server keep to their own databases.
DB_PREFIX = f"ticketing_systest_{uuid.uuid4().hex[:8]}"
SIGNIN_LIMIT = 3
# Short enough for the expiry tests to wait out, long enough for the other flows.
EXPIRATION_WINDOW_SECONDS = 8
RATE_LIMIT_PREFIX = f"systest:{uuid.uuid4().hex}"
PASSWORD = "a-long-secret-phrase"
SERVICES_DB = service("tickets").database(DB_PREFIX)


def user(stack, name):
    session = requests.Session()
    response = session.post(
        f"{stack.url}/api/users/signup",
        json={"email": f"{name}-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        # Hashing the password is the slow part on purpose: a test signing up many people
        # at once queues them on two cores.
        timeout=30,
    )
    assert response.status_code == 201, response.text
    session.user_id = response.json()["id"]
    return session


def sell(stack, seller, title="Front row", price="45.00"):
    response = seller.post(
        f"{stack.url}/api/tickets", json={"title": title, "price": price}, timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def order(stack, buyer, ticket_id):
    return buyer.post(f"{stack.url}/api/orders", json={"ticketId": ticket_id}, timeout=10)


def first_answer(call, timeout=20.0):
    """Call until the answer is not a 404 (the event has not arrived yet); that answer.

    (A Response is falsy for 4xx, so it travels wrapped in a list through wait_for.)"""
    return wait_for(
        lambda: [r] if (r := call()).status_code != 404 else None,
        timeout=timeout,
        what="an answer other than 404",
    )[0]


def orderable(stack, buyer, ticket_id):
    """POST /api/orders once the ticket has reached orders_svc's replica."""
    return first_answer(lambda: order(stack, buyer, ticket_id))


def tickets_inbox_has(message_id):
    url = admin_url(SERVICES_DB)
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

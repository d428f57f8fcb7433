"""The seller's "My listings" page: over a recorded API, and through the running system
where a sale is made by the events (order.completed reaches tickets_svc)."""

import json
import time
import uuid

from storefront.views import LISTING_STATES
from tests.conftest import url_of
from tests.test_pages import _ticket, api_user, browser


def _listing(title: str, status: str) -> dict:
    held = str(uuid.uuid4()) if status in ("reserved", "sold") else None
    return {**_ticket(title), "orderId": held, "status": status}


def test_a_stranger_is_sent_to_sign_in_and_back(stack):
    response = browser().get("/tickets/mine")

    assert response.status_code == 302
    assert response["Location"] == "/auth/signin?next=%2Ftickets%2Fmine"


def test_my_listings_shows_each_state_and_offers_to_edit_only_what_is_for_sale(
    recorder, tokens, settings
):
    settings.API_BASE_URL = url_of(recorder)
    listings = [
        _listing("Sold one", "sold"),
        _listing("Held one", "reserved"),
        _listing("Free one", "available"),
        _listing("Pulled one", "withdrawn"),
    ]
    link = '<http://gw/api/tickets/mine?limit=20&cursor=abc>; rel="next"'
    recorder.answers.append((200, [("Link", link)], json.dumps(listings).encode()))
    client = browser()
    client.cookies["session"] = tokens(email="sam@example.com")

    response = client.get("/tickets/mine")

    assert response.status_code == 200
    page = response.content.decode()
    assert [(seen[0], seen[1]) for seen in recorder.seen] == [("GET", "/api/tickets/mine?limit=20")]
    states = [f'data-testid="listing-state">{LISTING_STATES[t["status"]]}<' for t in listings]
    assert [page.index(state) for state in states] == sorted(page.index(s) for s in states)
    assert LISTING_STATES == {
        "available": "For sale",
        "reserved": "Reserved",
        "sold": "Sold",
        "withdrawn": "Off sale",
    }
    edits = [f'href="/tickets/{t["id"]}/edit"' for t in listings]
    assert [edit in page for edit in edits] == [False, False, True, False]
    assert 'href="/tickets/mine?cursor=abc"' in page


def test_my_listings_when_there_are_none(recorder, tokens, settings):
    settings.API_BASE_URL = url_of(recorder)
    recorder.answers.append((200, [], b"[]"))
    client = browser()
    client.cookies["session"] = tokens(email="sam@example.com")

    page = client.get("/tickets/mine").content.decode()

    assert "You have not listed a ticket yet." in page


def test_a_sale_reaches_the_sellers_listings_through_the_events(stack):
    seller, buyer = api_user(stack), api_user(stack)
    listed = [
        seller.post(f"{stack.url}/api/tickets", json={"title": t, "price": "30"}, timeout=10)
        for t in ("To sell", "To hold", "To keep")
    ]
    assert [answer.status_code for answer in listed] == [201, 201, 201]
    to_sell, to_hold, to_keep = (answer.json()["id"] for answer in listed)

    def created(path: str, body: dict) -> str:
        # A service learns of a ticket or an order by its event: 404 until it has.
        deadline = time.monotonic() + 30
        while True:
            answer = buyer.post(f"{stack.url}{path}", json=body, timeout=30)
            if answer.status_code != 404 or time.monotonic() > deadline:
                assert answer.status_code == 201, answer.text
                return answer.json()["id"]
            time.sleep(0.2)

    sold_order = created("/api/orders", {"ticketId": to_sell})
    created("/api/payments", {"orderId": sold_order, "token": "pm_card_visa"})
    created("/api/orders", {"ticketId": to_hold})

    deadline = time.monotonic() + 30
    while True:
        mine = seller.get(f"{stack.url}/api/tickets/mine", timeout=10)
        assert mine.status_code == 200
        states = {ticket["id"]: ticket["status"] for ticket in mine.json()}
        if states[to_sell] == "sold" and states[to_hold] == "reserved":
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.2)
    assert states == {to_sell: "sold", to_hold: "reserved", to_keep: "available"}
    # The workers' email, through the stack's mail catcher: a receipt to the buyer and
    # the news to the seller, one each.
    deadline = time.monotonic() + 30
    while len(sent := [m for m in stack.mail() if m["To"] in (buyer.email, seller.email)]) < 2:
        assert time.monotonic() < deadline, sent
        time.sleep(0.5)
    assert sorted((m["To"], m["Subject"]) for m in sent) == sorted(
        [(buyer.email, "Your ticket: To sell"), (seller.email, "Your ticket sold: To sell")]
    )
    assert f"{stack.url}/orders/{sold_order}" in next(
        m.get_content() for m in sent if m["To"] == buyer.email
    )

    client = browser()
    client.cookies["session"] = seller.cookies["session"]
    page = client.get("/tickets/mine").content.decode()
    assert page.count('data-testid="listing-state">') == 3
    assert f'href="/tickets/{to_keep}/edit"' in page
    assert f'href="/tickets/{to_sell}/edit"' not in page
    # The sold ticket's own page says so, to its seller and to anyone else.
    assert "It is sold." in client.get(f"/tickets/{to_sell}").content.decode()
    assert "This ticket is sold." in browser().get(f"/tickets/{to_sell}").content.decode()
    # And it can never be edited again.
    edit = seller.put(
        f"{stack.url}/api/tickets/{to_sell}", json={"title": "Again", "price": "1"}, timeout=10
    )
    assert (edit.status_code, edit.json()) == (
        400,
        {"errors": [{"message": "Cannot edit a sold ticket"}]},
    )

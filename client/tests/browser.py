"""What a person does in the browser, as steps the browser tests share."""

import re
import time

from playwright.sync_api import Page, expect

from storefront.views import ORDER_NOT_READY, TICKET_NOT_READY
from tests.conftest import PASSWORD

ORDER_URL = re.compile(r"/orders/[0-9a-f-]{36}$")
TICKET_URL = re.compile(r"/tickets/[0-9a-f-]{36}$")


def sign_up(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/auth/signup")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def sell(page: Page, title: str, price: str) -> str:
    page.goto("/tickets/new")
    page.get_by_label("Title").fill(title)
    page.get_by_label("Price (USD)").fill(price)
    page.get_by_role("button", name="List ticket").click()
    expect(page).to_have_url(TICKET_URL)
    expect(page.get_by_role("heading", level=1)).to_have_text(title)
    return page.url.rsplit("/", 1)[1]


def purchase(page: Page, ticket_id: str, *, within: float = 15.0) -> str:
    """Click Purchase on the ticket's page; again while orders_svc has not yet heard of
    the ticket (as a person would), until the order page opens. Returns the order id."""
    deadline = time.monotonic() + within
    page.goto(f"/tickets/{ticket_id}")
    while True:
        page.get_by_role("button", name="Purchase").click()
        page.wait_for_load_state()
        if ORDER_URL.search(page.url):
            return page.url.rsplit("/", 1)[1]
        expect(page.get_by_test_id("form-alert")).to_have_text(TICKET_NOT_READY)
        assert time.monotonic() < deadline, "the ticket never became purchasable"
        time.sleep(0.3)


# Stripe's test card numbers, typed into Elements (locally the Stripe fake's stand-in).
VISA = "4242424242424242"
DECLINED_VISA = "4000000000000002"
THREE_D_SECURE_VISA = "4000000000003220"  # asks its holder to authenticate


def type_card(page: Page, number: str) -> None:
    """Type a card into the payment form's Elements, as a person would."""
    card = page.locator("#card-element")
    for field, value in (
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "10115"),
    ):
        card.get_by_placeholder(field, exact=True).fill(value)


def pay(page: Page, button: str, *, card: str = VISA, within: float = 15.0) -> None:
    """Type the card and click the Pay button; again while payments_svc has not yet heard
    of the order (the page says so, as a person would see), until the answer is something
    else."""
    deadline = time.monotonic() + within
    while True:
        type_card(page, card)
        # Stripe.js makes the PaymentMethod first, then submits: wait for that page, not
        # the one the click started on (it may still show the last answer's alert).
        with page.expect_navigation():
            page.get_by_role("button", name=button).click()
        page.wait_for_load_state()
        alert = page.get_by_test_id("form-alert")
        if not ORDER_URL.search(page.url.removesuffix("/pay")) or alert.count() == 0:
            return
        if alert.first.inner_text().strip() != ORDER_NOT_READY:
            return
        assert time.monotonic() < deadline, "the order never became payable"
        time.sleep(0.3)

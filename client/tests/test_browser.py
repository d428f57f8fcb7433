"""The whole purchase in a real browser: Debian's Chromium, driven by Playwright, against
every process of the system behind the gateway."""

import re
import time
import uuid

import requests
from playwright.sync_api import Page, expect

from storefront.views import AUTHENTICATION_FAILED, PAID, SIGNED_OUT, TICKET_LISTED
from tests.browser import (
    DECLINED_VISA,
    ORDER_URL,
    THREE_D_SECURE_VISA,
    VISA,
    pay,
    purchase,
    sell,
    sign_up,
)
from tests.conftest import EXPIRATION_WINDOW_SECONDS, unique_email

COUNTDOWN = re.compile(r"^\d+:\d\d$")
DECLINED_MESSAGE = "Your card was declined."


def test_sign_up_sell_buy_and_pay(new_page):
    seller, buyer = new_page(), new_page()
    seller_email, buyer_email = unique_email("seller"), unique_email("buyer")

    sign_up(seller, seller_email)
    ticket_id = sell(seller, "Arctic Monkeys, floor", "1234.5")
    expect(seller.get_by_role("status")).to_have_text(TICKET_LISTED)
    expect(seller.locator(".price")).to_have_text("$1,234.50")
    expect(seller.get_by_text("This is your ticket.")).to_be_visible()
    expect(seller.get_by_role("button", name="Purchase")).to_have_count(0)
    seller.get_by_role("link", name="My listings").click()
    listing = seller.locator(f"tr[data-ticket-id='{ticket_id}']")
    expect(listing.get_by_test_id("listing-state")).to_have_text("For sale")
    listing.get_by_role("link", name=re.compile("^Edit")).click()
    expect(seller).to_have_url(re.compile(rf"/tickets/{ticket_id}/edit$"))
    seller.goto(f"/tickets/{ticket_id}")

    sign_up(buyer, buyer_email)
    buyer.goto("/")
    card = buyer.locator(f"[data-ticket-id='{ticket_id}']")
    expect(card).to_contain_text("Arctic Monkeys, floor")
    expect(card).to_contain_text("$1,234.50")
    card.get_by_role("link").click()
    order_id = purchase(buyer, ticket_id)

    expect(buyer.get_by_role("heading", level=1)).to_have_text("Order for Arctic Monkeys, floor")
    expect(buyer.get_by_test_id("order-state")).to_have_text("Awaiting payment")
    countdown = buyer.get_by_test_id("countdown")
    expect(countdown).to_have_text(COUNTDOWN)
    first = countdown.inner_text()
    expect(countdown).not_to_have_text(first, timeout=3000)  # it ticks
    pay(buyer, "Pay $1,234.50")

    expect(buyer).to_have_url(re.compile(r"/orders$"))
    expect(buyer.get_by_role("status")).to_have_text(PAID)
    row = buyer.locator(f"tr[data-order-id='{order_id}']")
    expect(row).to_contain_text("Arctic Monkeys, floor")
    expect(row).to_contain_text("$1,234.50")
    expect(row.get_by_test_id("order-state")).to_have_text("Complete")
    # Sold: no longer for sale, and its page says it is taken.
    buyer.goto("/")
    expect(buyer.locator(f"[data-ticket-id='{ticket_id}']")).to_have_count(0)
    # The seller learns of the sale when tickets_svc has heard of it (order.completed).
    deadline = time.monotonic() + 20
    while not seller.get_by_text("It is sold.").is_visible():
        assert time.monotonic() < deadline, seller.locator(".note").inner_text()
        seller.wait_for_timeout(200)
        seller.reload()
    expect(seller.get_by_role("link", name="Edit ticket")).to_have_count(0)
    seller.get_by_role("link", name="My listings").click()
    listing = seller.locator(f"tr[data-ticket-id='{ticket_id}']")
    expect(listing).to_contain_text("Arctic Monkeys, floor")
    expect(listing.get_by_test_id("listing-state")).to_have_text("Sold")
    expect(listing.get_by_role("link", name=re.compile("^Edit"))).to_have_count(0)


def test_a_declined_card_shows_stripes_message_and_another_card_pays(new_page):
    seller, buyer = new_page(), new_page()
    sign_up(seller, unique_email("seller"))
    ticket_id = sell(seller, "Opera box", "80")
    sign_up(buyer, unique_email("buyer"))
    order_id = purchase(buyer, ticket_id)
    expect(buyer.locator("#card-element input")).to_have_count(5)  # Elements, mounted

    pay(buyer, "Pay $80.00", card=DECLINED_VISA)

    expect(buyer).to_have_url(re.compile(rf"/orders/{order_id}/pay$"))
    _refused_then_paid_with_another_card(buyer, order_id, DECLINED_MESSAGE, "Pay $80.00")


def _expect_order_complete(buyer: Page, order_id: str) -> None:
    """Back at the buyer's orders, where the order now reads Complete."""
    expect(buyer).to_have_url(re.compile(r"/orders$"))
    expect(
        buyer.locator(f"tr[data-order-id='{order_id}']").get_by_test_id("order-state")
    ).to_have_text("Complete")


def _refused_then_paid_with_another_card(
    buyer: Page, order_id: str, alert: str, button: str
) -> None:
    """A refused payment leaves the order payable with `alert` shown; a good card then
    completes it from the same page."""
    expect(buyer.get_by_test_id("form-alert")).to_have_text(alert)
    expect(buyer.get_by_test_id("order-state")).to_have_text("Awaiting payment")
    pay(buyer, button, card=VISA)
    _expect_order_complete(buyer, order_id)


def _challenged(new_page, title: str, price: str):
    """A buyer whose 3-D Secure card has them at their bank's challenge: (page, order id)."""
    seller, buyer = new_page(), new_page()
    sign_up(seller, unique_email("seller"))
    ticket_id = sell(seller, title, price)
    sign_up(buyer, unique_email("buyer"))
    order_id = purchase(buyer, ticket_id)
    pay(buyer, f"Pay ${price}", card=THREE_D_SECURE_VISA)
    expect(buyer.get_by_role("heading", name="Confirm with your bank")).to_be_visible()
    expect(buyer.get_by_role("button", name="Complete authentication")).to_be_visible()
    return buyer, order_id


def test_a_card_asking_for_3d_secure_pays_once_the_holder_confirms(new_page):
    buyer, order_id = _challenged(new_page, "Jazz trio", "45.00")
    expect(buyer.get_by_role("button", name=re.compile("^Pay"))).to_have_count(0)

    buyer.get_by_role("button", name="Complete authentication").click()

    _expect_order_complete(buyer, order_id)
    expect(buyer.get_by_role("status")).to_have_text(PAID)


def test_a_refused_3d_secure_challenge_charges_nothing_and_another_card_pays(new_page):
    buyer, order_id = _challenged(new_page, "Cello recital", "30.00")

    buyer.get_by_role("button", name="Fail authentication").click()

    _refused_then_paid_with_another_card(buyer, order_id, AUTHENTICATION_FAILED, "Pay $30.00")


def test_an_order_expiring_during_the_challenge_is_cancelled_and_never_keeps_money(new_page, stack):
    buyer, order_id = _challenged(new_page, "Late show", "60.00")
    cookies = {c["name"]: c["value"] for c in buyer.context.cookies()}
    api = requests.Session()
    api.cookies.update(cookies)

    # The buyer sits at the challenge until the order has expired and been cancelled.
    deadline = time.monotonic() + EXPIRATION_WINDOW_SECONDS + 30
    while api.get(f"{stack.url}/api/orders/{order_id}", timeout=10).json()["status"] != (
        "cancelled"
    ):
        assert time.monotonic() < deadline, "the order never expired"
        time.sleep(0.5)
    buyer.get_by_role("button", name="Complete authentication").click()

    expect(buyer.get_by_test_id("order-state")).to_have_text("Cancelled")
    # Whichever came first, the cancelled intent or the charge, no money is kept.
    stripe = requests.Session()
    stripe.auth = ("sk_test_local", "")
    query = f"metadata['orderId']:'{order_id}'"
    for _ in range(60):
        intents = stripe.get(
            f"{stack.url}/_stripe/v1/payment_intents/search", params={"query": query}, timeout=10
        ).json()["data"]
        charged = [i for i in intents if i["status"] == "succeeded"]
        refunded = [
            i
            for i in charged
            if stripe.get(
                f"{stack.url}/_stripe/v1/refunds", params={"payment_intent": i["id"]}, timeout=10
            ).json()["data"]
        ]
        if len(intents) == 1 and refunded == charged:
            break
        time.sleep(0.5)
    [intent] = intents
    assert intent["status"] in ("canceled", "succeeded")
    assert refunded == charged


def test_an_unpaid_order_expires_and_the_ticket_is_for_sale_again(new_page, stack):
    seller, buyer = new_page(), new_page()
    sign_up(seller, unique_email("seller"))
    ticket_id = sell(seller, "Matinee, row F", "25")
    sign_up(buyer, unique_email("buyer"))
    purchase(buyer, ticket_id)
    expect(buyer.get_by_test_id("countdown")).to_have_text(COUNTDOWN)
    buyer.goto("/")
    expect(buyer.locator(f"[data-ticket-id='{ticket_id}']")).to_have_count(0)  # held
    buyer.go_back()

    expired = buyer.get_by_test_id("expired")
    expect(expired).to_be_visible(timeout=(EXPIRATION_WINDOW_SECONDS + 5) * 1000)
    expect(expired).to_have_text("Order expired. The ticket has been released.")
    expect(buyer.get_by_role("button", name=re.compile("^Pay"))).to_be_hidden()

    # Released by the expiry event: for sale again, for anyone.
    buyer.wait_for_timeout(500)
    for _ in range(40):
        buyer.goto("/")
        if buyer.locator(f"[data-ticket-id='{ticket_id}']").count():
            break
        buyer.wait_for_timeout(500)
    expect(buyer.locator(f"[data-ticket-id='{ticket_id}']")).to_have_count(1)
    ticket = requests.get(f"{stack.url}/api/tickets/{ticket_id}", timeout=10).json()
    assert ticket["orderId"] is None
    buyer.goto("/orders")
    expect(buyer.get_by_test_id("order-state")).to_have_text("Cancelled")


def test_forms_show_the_apis_messages_and_keep_the_input(new_page):
    page = new_page()
    page.goto("/auth/signup")
    page.get_by_label("Email").fill("not-an-email")
    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Sign up").click()

    expect(page.locator("#id_email-errors")).to_have_text("Email must be valid")
    expect(page.locator("#id_password-errors")).to_have_text(
        "Password must be between 8 and 128 characters"
    )
    expect(page.get_by_label("Email")).to_have_value("not-an-email")
    expect(page.get_by_label("Email")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Password")).to_have_value("")  # never echoed back
    expect(page.get_by_test_id("current-user")).to_have_count(0)

    email = unique_email("seller")
    sign_up(page, email)
    page.goto("/tickets/new")
    page.get_by_label("Title").fill("Late show")
    page.get_by_label("Price (USD)").fill("10.999")
    page.get_by_role("button", name="List ticket").click()
    expect(page.locator("#id_price-errors")).to_have_text(
        "Price must have at most 2 decimal places"
    )
    expect(page.get_by_label("Title")).to_have_value("Late show")
    expect(page.get_by_label("Price (USD)")).to_have_value("10.999")

    page.get_by_label("Title").fill("   ")
    page.get_by_label("Price (USD)").fill("12")
    page.get_by_role("button", name="List ticket").click()
    expect(page.locator("#id_title-errors")).to_have_text("Title is required")


def test_wrong_credentials_are_an_alert_and_sign_out_signs_out(new_page):
    page = new_page()
    email = unique_email("person")
    sign_up(page, email)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text(SIGNED_OUT)
    expect(page.get_by_test_id("current-user")).to_have_count(0)

    page.goto("/auth/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("form-alert")).to_have_text("Invalid credentials")
    expect(page.get_by_label("Email")).to_have_value(email)


def test_signing_in_returns_to_the_page_that_asked(new_page):
    page = new_page()
    email = unique_email("person")
    sign_up(page, email)
    page.get_by_role("button", name="Sign out").click()

    page.goto("/tickets/new")
    expect(page).to_have_url(re.compile(r"/auth/signin\?next=%2Ftickets%2Fnew$"))
    page.get_by_label("Email").fill(email.upper())  # emails are case-insensitive
    page.get_by_label("Password").fill("a-long-secret-phrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/tickets/new$"))
    expect(page.get_by_test_id("current-user")).to_have_text(email)


def test_someone_elses_order_and_unknown_pages_are_the_not_found_page(new_page):
    seller, buyer, other = new_page(), new_page(), new_page()
    sign_up(seller, unique_email("seller"))
    ticket_id = sell(seller, "Jazz night", "30")
    sign_up(buyer, unique_email("buyer"))
    order_id = purchase(buyer, ticket_id)
    sign_up(other, unique_email("other"))

    response = other.goto(f"/orders/{order_id}")
    assert response.status == 404
    expect(other.get_by_role("heading", level=1)).to_have_text("Page not found")
    response = other.goto("/tickets/00000000-0000-4000-8000-000000000000")
    assert response.status == 404
    expect(other.get_by_role("heading", level=1)).to_have_text("Page not found")
    response = other.goto("/no/such/page")
    assert response.status == 404
    expect(other.get_by_role("heading", level=1)).to_have_text("Page not found")
    assert ORDER_URL.search(buyer.url)


def test_searching_and_filtering_by_price_from_the_home_page(new_page):
    seller = new_page()
    sign_up(seller, unique_email("seller"))
    tag = f"zq{uuid.uuid4().hex[:8]}"  # a word no other test's ticket has
    sell(seller, f"{tag} Philharmonic, stalls", "40")
    sell(seller, f"{tag} Philharmonic, gallery", "15.50")
    sell(seller, f"{tag} Folk night", "15")

    page = new_page()
    page.goto("/")
    page.get_by_label("Search").fill(f"{tag.upper()} phil")
    page.get_by_role("button", name="Search").click()

    cards = page.locator(".ticket-card h2")
    expect(cards).to_have_text([f"{tag} Philharmonic, gallery", f"{tag} Philharmonic, stalls"])
    assert f"q={tag.upper()}+phil" in page.url

    page.get_by_label("Max price").fill("15.50")
    page.get_by_role("button", name="Search").click()

    expect(cards).to_have_text([f"{tag} Philharmonic, gallery"])
    page.reload()  # the search lives in the URL
    expect(page.get_by_label("Search")).to_have_value(f"{tag.upper()} phil")
    expect(cards).to_have_text([f"{tag} Philharmonic, gallery"])

    page.get_by_label("Min price").fill("20")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("#id_max_price-errors")).to_have_text(
        "maxPrice must not be less than minPrice"
    )
    page.get_by_role("link", name="Clear").click()
    expect(page.get_by_label("Search")).to_have_value("")


def test_staff_cancel_an_unpaid_order_in_the_admin_and_it_is_recorded(new_page, stack):
    seller, buyer, staff = new_page(), new_page(), new_page()
    sign_up(seller, unique_email("seller"))
    ticket_id = sell(seller, "Staff desk", "15")
    sign_up(buyer, unique_email("buyer"))
    order_id = purchase(buyer, ticket_id)
    email = unique_email("staff")
    sign_up(staff, email)
    # Made staff in auth_svc's admin in real life; the token says so from the next sign-in.
    made_staff = f"User.objects.filter(email={email!r}).update(is_staff=True)"
    stack.manage("auth", "shell", "-c", f"from users.models import User; {made_staff}")
    staff.get_by_role("button", name="Sign out").click()
    staff.goto("/auth/signin")
    staff.get_by_label("Email").fill(email)
    staff.get_by_label("Password").fill("a-long-secret-phrase")
    staff.get_by_role("button", name="Sign in").click()
    changelist = "/admin/orders/orders/order/"
    staff.goto(changelist)  # single sign-on: the orders admin now knows them
    # They see the order, and no action on it until they are granted one.
    expect(staff.locator("#result_list")).to_contain_text(order_id)
    expect(staff.locator("select[name='action']")).to_have_count(0)
    granted = (
        f"User.objects.get(email={email!r}).user_permissions.add("
        "Permission.objects.get(codename='cancel_order'))"
    )
    stack.manage(
        "orders",
        "shell",
        "-c",
        f"from django.contrib.auth.models import Permission, User; {granted}",
    )

    staff.goto(changelist)
    staff.locator(f"input[name='_selected_action'][value='{order_id}']").check()
    staff.locator("select[name='action']").select_option("cancel_order")
    staff.get_by_role("button", name="Go").click()

    expect(staff.locator(".messagelist .success")).to_have_text(
        f"Order {order_id} (cancelled): cancelled"  # the admin capitalises messages
    )
    staff.goto("/admin/orders/shared_lib/staffaction/")
    expect(staff.locator("#result_list tbody tr")).to_have_count(1)
    expect(staff.locator("#result_list tbody tr")).to_contain_text(email)
    expect(staff.locator("#result_list tbody tr")).to_contain_text(order_id)
    buyer.reload()
    expect(buyer.get_by_test_id("order-state")).to_have_text("Cancelled")


def test_a_forgotten_password_is_reset_through_the_emailed_link(new_page, stack):
    page = new_page()
    email = unique_email("forgetful")
    sign_up(page, email)
    page.get_by_role("button", name="Sign out").click()

    page.goto("/auth/signin")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("status")).to_contain_text("we sent it a link")
    # auth_svc sends it after the request commits, to the stack's mail catcher.
    deadline = time.monotonic() + 20
    while not (sent := [m for m in stack.mail() if m["To"] == email]):
        assert time.monotonic() < deadline, "no reset email"
        time.sleep(0.2)
    link = re.search(r"(https?://\S+/auth/reset/\S+)", sent[0].get_content())[1]
    page.goto(link)
    page.get_by_label("New password").fill("a freshly chosen phrase")
    page.get_by_role("button", name="Set the password").click()

    expect(page).to_have_url(re.compile(r"/auth/signin$"))
    expect(page.get_by_role("status")).to_contain_text("Your password is changed")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("a freshly chosen phrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)
    # The link is spent.
    page.goto(link)
    page.get_by_label("New password").fill("yet another phrase")
    page.get_by_role("button", name="Set the password").click()
    expect(page.get_by_test_id("form-alert")).to_have_text(
        "This password reset link is invalid or has expired"
    )

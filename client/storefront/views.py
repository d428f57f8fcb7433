"""The pages. Each view is an adapter: read the form, call one API, render or redirect.

API errors a form can explain are shown on that form with the input kept; the rest are
turned into pages by ApiSessionMiddleware (sign-in redirect, not found, unavailable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from shared_lib.auth import clear_session_cookie
from shared_lib.error_messages import NOT_FOUND
from shared_lib.errors import error_response
from storefront.api import ApiError, ApiUnavailable
from storefront.forms import (
    CredentialsForm,
    NewPasswordForm,
    PasswordResetForm,
    PaymentForm,
    TicketForm,
    TicketSearchForm,
)
from storefront.middleware import signin_redirect

logger = logging.getLogger(__name__)

# A page of the ticket grid: four rows of three on a wide screen.
TICKETS_PER_PAGE = 12
ORDERS_PER_PAGE = 20
LISTINGS_PER_PAGE = 20

SIGNED_UP = "Welcome to Ticketing! You are signed in as {email}."
SIGNED_IN = "Signed in as {email}."
SIGNED_OUT = "You are signed out."
TICKET_LISTED = "Your ticket is listed for sale."
TICKET_UPDATED = "Your ticket is updated."
PAID = "Payment received. The ticket is yours. Enjoy the show!"
PAID_BUT_EXPIRED = (
    "Your payment arrived after the order had expired: the charge is refunded in full."
)
PAID_CONFIRMING = "Payment received. The ticket is yours: your order shows as complete in a moment."
ORDER_CANCELLED = "Order cancelled. The ticket is back on sale."
# orders_svc learns of a new ticket from an event, a moment after it is listed.
TICKET_NOT_READY = "This ticket was listed a moment ago. Please try again in a few seconds."
ORDER_NOT_READY = "Your order is still being set up for payment. Please try again in a moment."
# After the card's 3-D Secure challenge (GET /api/payments/<id> says what came of it).
AUTHENTICATION_FAILED = (
    "Your bank did not confirm this payment, so nothing was charged. Try again or use another card."
)
AUTHENTICATION_PENDING = "Your bank is waiting for you to confirm this payment."
AUTHENTICATION_TOO_LATE = (
    "The order expired before your bank confirmed the payment, so nothing was charged."
)
PAYMENT_PROCESSING = "Your payment is being processed. This page shows the result shortly."
# payments_svc's limit on checks reached (429): nothing is known of the payment just now.
PAYMENT_CHECK_LATER = (
    "Your payment cannot be checked just now. Wait a minute, then reload this page to see it."
)

ORDER_STATES = {
    "created": "Awaiting payment",
    "complete": "Complete",
    "cancelled": "Cancelled",
}
EXPIRED = "Expired"
LISTING_STATES = {
    "available": "For sale",
    "reserved": "Reserved",
    "sold": "Sold",
    "withdrawn": "Off sale",
}


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("ticket_list")


def _page_params(request: HttpRequest, limit: int) -> dict[str, str]:
    return {"limit": str(limit), "cursor": request.GET.get("cursor", "")}


# --- tickets -------------------------------------------------------------------------


@require_GET
def ticket_list(request: HttpRequest) -> HttpResponse:
    search = TicketSearchForm(request.GET)
    filters = search.filters()
    context = {
        "search": search,
        "searching": bool(filters),
        # The pager's links keep the filters, as the API's own next link does.
        "filters_query": search.query(),
        "first_page": not request.GET.get("cursor"),
        "tickets": [],
    }
    try:
        params = {**_page_params(request, TICKETS_PER_PAGE), **filters}
        result = request.api.get("/api/tickets", params=params)
    except ApiError as error:
        if error.status != 400:
            raise
        search.show(error)  # the API's message next to the filter it is about
        return render(request, "storefront/ticket_list.html", context, status=400)
    context.update(tickets=result.data, next_cursor=result.next_cursor())
    return render(request, "storefront/ticket_list.html", context)


def _ticket_page(
    request: HttpRequest, ticket: dict[str, Any], *, error: ApiError | None = None
) -> HttpResponse:
    user = request.api.current_user()
    return render(
        request,
        "storefront/ticket_detail.html",
        {
            "ticket": ticket,
            "is_owner": bool(user) and user["id"] == ticket["userId"],
            "alerts": error.general() if error else [],
        },
        status=error.status if error else 200,
    )


@require_GET
def my_listings(request: HttpRequest) -> HttpResponse:
    result = request.api.get("/api/tickets/mine", params=_page_params(request, LISTINGS_PER_PAGE))
    tickets = [
        # A status newer than this client shows under its own name.
        {**ticket, "state": LISTING_STATES.get(ticket["status"], ticket["status"])}
        for ticket in result.data
    ]
    return render(
        request,
        "storefront/my_listings.html",
        {
            "tickets": tickets,
            "next_cursor": result.next_cursor(),
            "first_page": not request.GET.get("cursor"),
        },
    )


@require_GET
def ticket_detail(request: HttpRequest, ticket_id: UUID) -> HttpResponse:
    return _ticket_page(request, request.api.get(f"/api/tickets/{ticket_id}").data)


@require_POST
def ticket_purchase(request: HttpRequest, ticket_id: UUID) -> HttpResponse:
    if not request.api.current_user():
        return signin_redirect(request, reverse("ticket_detail", args=[ticket_id]))
    try:
        order = request.api.post("/api/orders", {"ticketId": str(ticket_id)}).data
    except ApiError as error:
        if error.status == 401:
            raise
        ticket = request.api.get(f"/api/tickets/{ticket_id}").data
        if error.status == 404:  # the ticket exists (we just read it) but orders_svc
            error = ApiError(409, [{"message": TICKET_NOT_READY}])  # has not heard yet
        return _ticket_page(request, ticket, error=error)
    return redirect("order_detail", order_id=order["id"])


@require_http_methods(["GET", "POST"])
def ticket_new(request: HttpRequest) -> HttpResponse:
    if not request.api.current_user():
        return signin_redirect(request)
    form = TicketForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            ticket = request.api.post("/api/tickets", form.payload()).data
        except ApiError as error:
            if error.status == 401:
                raise
            status = error.status
            form.show(error)
        else:
            messages.success(request, TICKET_LISTED)
            return redirect("ticket_detail", ticket_id=ticket["id"])
    return render(
        request,
        "storefront/ticket_form.html",
        {"form": form, "heading": "Sell a ticket", "submit": "List ticket"},
        status=status,
    )


@require_http_methods(["GET", "POST"])
def ticket_edit(request: HttpRequest, ticket_id: UUID) -> HttpResponse:
    if not request.api.current_user():
        return signin_redirect(request)
    ticket = request.api.get(f"/api/tickets/{ticket_id}").data
    form = TicketForm(
        request.POST or None, initial={"title": ticket["title"], "price": ticket["price"]}
    )
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            request.api.put(f"/api/tickets/{ticket_id}", form.payload())
        except ApiError as error:
            if error.status in (401, 404):
                raise
            status = error.status
            form.show(error)
        else:
            messages.success(request, TICKET_UPDATED)
            return redirect("ticket_detail", ticket_id=ticket_id)
    return render(
        request,
        "storefront/ticket_form.html",
        {"form": form, "heading": "Edit your ticket", "submit": "Save changes", "ticket": ticket},
        status=status,
    )


# --- orders --------------------------------------------------------------------------


def _expires_at(order: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(order["expiresAt"].replace("Z", "+00:00"))


def order_state(order: dict[str, Any], *, now: datetime | None = None) -> str:
    """What a person calls the order's state: an unpaid order past its time is expired
    even in the moment before the expiry event has cancelled it."""
    if order["status"] == "created" and _expires_at(order) <= (now or timezone.now()):
        return EXPIRED
    return ORDER_STATES.get(order["status"], order["status"])


def _payment_form(data: Any) -> PaymentForm:
    # Without a publishable key (local runs, tests) there is no Stripe.js to collect a
    # card, so the person picks one of Stripe's test cards instead.
    return PaymentForm(data, test_cards=not settings.STRIPE_PUBLISHABLE_KEY)


def _order_page(
    request: HttpRequest,
    order: dict[str, Any],
    *,
    form: PaymentForm | None = None,
    alerts: list[str] | None = None,
    action: dict[str, str] | None = None,
    status: int = 200,
    card_form: bool = True,
) -> HttpResponse:
    """The order's page; `card_form` False when a payment of it may be waiting (the form
    would take a second card for it)."""
    now = timezone.now()
    state = order_state(order, now=now)
    seconds_left = max(0, int((_expires_at(order) - now).total_seconds()))
    return render(
        request,
        "storefront/order_detail.html",
        {
            "order": order,
            "state": state,
            "payable": state == ORDER_STATES["created"],
            "seconds_left": seconds_left,
            "form": form or _payment_form(None),
            "card_form": card_form,
            "alerts": alerts or [],
            # A card waiting for its holder: the page runs Stripe.js's challenge.
            "action": action if state == ORDER_STATES["created"] else None,
        },
        status=status,
    )


@require_GET
def order_detail(request: HttpRequest, order_id: UUID) -> HttpResponse:
    order = request.api.get(f"/api/orders/{order_id}").data
    # ?payment=<id>: a payment of this order (after a 202, and on every reload). While it
    # waits for its cardholder the page runs the challenge; while it may still charge, or
    # cannot be asked about, the page takes no second card.
    payment_id = _uuid_or_none(request.GET.get("payment", ""))
    if payment_id is None:
        return _order_page(request, order)
    try:
        payment = request.api.get(f"/api/payments/{payment_id}").data
    except ApiUnavailable:
        return _payment_check_later(request, order, status=503)
    except ApiError as error:
        if error.status == 401:
            raise
        if error.status == 429:
            return _payment_check_later(request, order, status=429)
        return _order_page(request, order)  # someone else's, or gone: the card form
    if payment["orderId"] != str(order_id):
        return _order_page(request, order)
    return _payment_page(request, order, payment_id, payment)


def _uuid_or_none(text: str) -> str | None:
    try:
        return str(UUID(text)) if text else None
    except ValueError:
        return None


def _payment_check_later(
    request: HttpRequest, order: dict[str, Any], *, status: int
) -> HttpResponse:
    return _order_page(request, order, alerts=[PAYMENT_CHECK_LATER], status=status, card_form=False)


def _payment_page(
    request: HttpRequest,
    order: dict[str, Any],
    payment_id: str,
    payment: dict[str, Any],
    *,
    alerts: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    """The order's page as its payment stands: its challenge to run; no card form while
    it may still charge (waiting, processing, paid and not yet told); after a failure,
    the card form for another card."""
    alerts = list(alerts or [])
    if payment["status"] == "failed":
        return _order_page(request, order, alerts=alerts, status=status)
    secret = payment.get("clientSecret", "") if payment["status"] == "requires_action" else ""
    if secret:
        action = {"payment_id": payment_id, "client_secret": secret}
        return _order_page(request, order, alerts=alerts, action=action, status=status)
    if payment["status"] == "requires_action":  # its secret could not be had just now
        alerts.append(PAYMENT_CHECK_LATER)
    elif payment["status"] == "processing" and PAYMENT_PROCESSING not in alerts:
        alerts.append(PAYMENT_PROCESSING)
    elif payment["status"] == "succeeded" and order["status"] == "created":
        alerts.append(PAID_CONFIRMING)  # the order completes in a moment
    return _order_page(request, order, alerts=alerts, status=status, card_form=False)


@require_POST
def order_pay(request: HttpRequest, order_id: UUID) -> HttpResponse:
    form = _payment_form(request.POST)
    status = 400
    if form.is_valid():
        try:
            paid = request.api.post(
                "/api/payments", {"orderId": str(order_id), "token": form.cleaned_data["token"]}
            )
        except ApiError as error:
            if error.status == 401:
                raise
            if error.status == 404:  # the order exists (read below, or that is the 404
                # page) but payments_svc has not heard of it yet
                error = ApiError(409, [{"message": ORDER_NOT_READY}])
            status = error.status
            form.show(error)  # a declined card: Stripe's message, next to the card
        else:
            if paid.status == 202:  # the cardholder must authenticate first
                page = reverse("order_detail", args=[order_id])
                return redirect(f"{page}?payment={paid.data['id']}")
            return _paid(request, order_id)
    order = request.api.get(f"/api/orders/{order_id}").data
    return _order_page(request, order, form=form, status=status)


def _paid(request: HttpRequest, order_id: UUID) -> HttpResponse:
    status = _order_status_after_payment(request, order_id)
    if status == "cancelled":  # expired meanwhile: payments_svc refunds the charge
        messages.warning(request, PAID_BUT_EXPIRED)
    else:
        messages.success(request, PAID if status == "complete" else PAID_CONFIRMING)
    return redirect("order_list")


@require_POST
def order_payment_check(request: HttpRequest, order_id: UUID, payment_id: UUID) -> HttpResponse:
    """After the 3-D Secure challenge ran in the browser: what Stripe made of it."""
    try:
        payment = request.api.get(f"/api/payments/{payment_id}").data
    except ApiError as error:
        if error.status != 429:
            raise
        order = request.api.get(f"/api/orders/{order_id}").data
        return _payment_check_later(request, order, status=429)
    if payment["orderId"] != str(order_id):
        raise ApiError(404, [{"message": NOT_FOUND}])  # another order's payment
    if payment["status"] == "succeeded":
        return _paid(request, order_id)
    order = request.api.get(f"/api/orders/{order_id}").data
    if payment["status"] == "failed":
        if order_state(order) != ORDER_STATES["created"]:
            return _order_page(request, order, alerts=[AUTHENTICATION_TOO_LATE])
        return _order_page(request, order, alerts=[AUTHENTICATION_FAILED], status=402)
    if payment["status"] == "requires_action":
        # The challenge was closed unanswered: offer it again.
        alerts = [AUTHENTICATION_PENDING]
        return _payment_page(request, order, str(payment_id), payment, alerts=alerts)
    return _payment_page(
        request, order, str(payment_id), payment, alerts=[PAYMENT_PROCESSING], status=202
    )


# How often the pay page looks at a just-paid order: the event takes a few ms to arrive.
_CONFIRM_POLL_SECONDS = 0.025


def _order_status_after_payment(request: HttpRequest, order_id: UUID) -> str | None:
    """After a payment: wait (up to ORDER_CONFIRM_SECONDS) until orders_svc has heard of
    it, so the page that follows shows what the person just did; the order's status then
    (still "created" when it had not, None when it could not be read)."""
    deadline = time.monotonic() + settings.ORDER_CONFIRM_SECONDS
    while True:
        try:
            status = request.api.get(f"/api/orders/{order_id}").data["status"]
        except ApiError:
            return None  # the order list will say what it can
        if status != "created" or time.monotonic() >= deadline:
            return status
        time.sleep(_CONFIRM_POLL_SECONDS)


@require_POST
def order_cancel(request: HttpRequest, order_id: UUID) -> HttpResponse:
    try:
        request.api.delete(f"/api/orders/{order_id}")
    except ApiError as error:
        if error.status in (401, 404):
            raise
        order = request.api.get(f"/api/orders/{order_id}").data
        return _order_page(request, order, alerts=error.general(), status=error.status)
    messages.success(request, ORDER_CANCELLED)
    return redirect("order_list")


@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    result = request.api.get("/api/orders", params=_page_params(request, ORDERS_PER_PAGE))
    now = timezone.now()
    orders = [{**order, "state": order_state(order, now=now)} for order in result.data]
    return render(
        request,
        "storefront/order_list.html",
        {
            "orders": orders,
            "next_cursor": result.next_cursor(),
            "first_page": not request.GET.get("cursor"),
        },
    )


# --- sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class CredentialsPage:
    endpoint: str
    heading: str
    submit: str
    greeting: str
    new_password: bool
    other_question: str
    other_page: str
    other_link: str


SIGN_UP_PAGE = CredentialsPage(
    endpoint="/api/users/signup",
    heading="Create your account",
    submit="Sign up",
    greeting=SIGNED_UP,
    new_password=True,
    other_question="Already have an account?",
    other_page="signin",
    other_link="Sign in",
)
SIGN_IN_PAGE = CredentialsPage(
    endpoint="/api/users/signin",
    heading="Sign in",
    submit="Sign in",
    greeting=SIGNED_IN,
    new_password=False,
    other_question="New to Ticketing?",
    other_page="signup",
    other_link="Create an account",
)


def _credentials_page(request: HttpRequest, page: CredentialsPage) -> HttpResponse:
    form = CredentialsForm(request.POST or None, new_password=page.new_password)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            user = request.api.post(page.endpoint, form.payload()).data
        except ApiError as error:
            status = error.status
            form.show(error)
        else:
            messages.success(request, page.greeting.format(email=user["email"]))
            return redirect(_next_url(request))
    return render(
        request,
        "storefront/credentials.html",
        {"form": form, "next": _next_url(request), **asdict(page)},
        status=status,
    )


RESET_SENT = (
    "If an account uses that email, we sent it a link to choose a new password. "
    "The link works once, within the hour."
)
# A message, not a secret.
PASSWORD_CHANGED = "Your password is changed and your sessions are ended. Sign in with it."  # noqa: S105


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    form = PasswordResetForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            request.api.post("/api/users/password-reset", form.payload())
        except ApiError as error:
            status = error.status
            form.show(error)
        else:
            messages.success(request, RESET_SENT)
            return redirect("signin")
    return render(request, "storefront/password_reset.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
def password_reset_confirm(request: HttpRequest, token: str) -> HttpResponse:
    form = NewPasswordForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            request.api.post(
                "/api/users/password-reset/confirm", {"token": token, **form.payload()}
            )
        except ApiError as error:
            status = error.status
            form.show(error)  # a bad link's message is the form's own, above its field
        else:
            messages.success(request, PASSWORD_CHANGED)
            response = redirect("signin")
            clear_session_cookie(response)  # every session of the user has ended
            return response
    return render(request, "storefront/password_reset_confirm.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    return _credentials_page(request, SIGN_UP_PAGE)


@require_http_methods(["GET", "POST"])
def signin(request: HttpRequest) -> HttpResponse:
    return _credentials_page(request, SIGN_IN_PAGE)


@require_http_methods(["GET", "POST"])
def signout(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":  # a link or a bookmark: ask, since signing out is a write
        return render(request, "storefront/signout.html")
    try:
        request.api.post("/api/users/signout")  # auth_svc ends the session
    except ApiError as error:
        # Unreachable or refusing: the session lives on at the APIs until its `exp`, but
        # this browser forgets it all the same.
        logger.warning("sign-out not recorded by auth_svc: %s", error.status)
    messages.success(request, SIGNED_OUT)
    response = redirect("ticket_list")
    # The browser forgets the token whatever auth_svc's answer said of the cookie: the
    # client, like every service, would accept it until its `exp`.
    clear_session_cookie(response)
    return response


# --- errors --------------------------------------------------------------------------


@csrf_exempt  # nothing is written; an API client's POST must see the 404, not a CSRF page
def api_not_found(request: HttpRequest, *args: str) -> HttpResponse:
    return error_response(404)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return render(
        request,
        "storefront/error.html",
        {"message": "This form has expired. Go back, reload the page and try again."},
        status=403,
    )

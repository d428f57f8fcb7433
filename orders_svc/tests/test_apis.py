import base64
import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from orders import services
from orders.models import Order
from shared_lib.auth import AUTH_CHALLENGE
from shared_lib.errors import (
    BODY_TOO_LARGE,
    MALFORMED_JSON,
    METHOD_NOT_ALLOWED,
    NOT_AUTHORIZED,
    NOT_FOUND,
    TOO_MANY_REQUESTS,
    UNSUPPORTED_MEDIA_TYPE,
)
from shared_lib.events.consumer import Outcome
from shared_lib.models import OutboxEvent
from shared_lib.pagination import INVALID_CURSOR, INVALID_LIMIT
from shared_lib.testing.admin import assert_staff_views_every_model_read_only
from shared_lib.testing.api import (
    TOKEN_CARRIERS,
    assert_admin_sends_anonymous_to_sign_in,
    assert_docs_page,
    assert_ready_on_the_database_alone,
    assert_unknown_route_is_json_404,
    carry_token,
    errors,
)
from shared_lib.testing.tokens import ATTACKS
from tests.factories import iso, order_json, order_row, ticket_replica, ticket_update

pytestmark = pytest.mark.django_db

ORDERS = "/api/orders"


def detail(order_or_id):
    return f"{ORDERS}/{getattr(order_or_id, 'id', order_or_id)}"


def buy(client, ticket_id):
    return client.post(ORDERS, {"ticketId": str(ticket_id)}, format="json")


def assert_nothing_written(orders=0):
    assert Order.objects.count() == orders
    assert OutboxEvent.objects.count() == 0


def assert_refused(response, status, *items, orders=0):
    """`response` is `status` with the error body `items`; no order or event was written."""
    assert response.status_code == status
    assert response.json() == errors(*items)
    assert_nothing_written(orders)


def assert_unchanged(order):
    before = (order.status, order.version, order.updated_at)
    order.refresh_from_db()
    assert (order.status, order.version, order.updated_at) == before


# --- POST /api/orders ----------------------------------------------------------------


def test_create_order_requires_sign_in(api_client):
    ticket = ticket_replica()

    response = buy(api_client, ticket.id)

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))
    assert response["WWW-Authenticate"] == AUTH_CHALLENGE
    assert_nothing_written()


def test_create_order_reserves_the_ticket_for_the_window(signed_in_client, settings):
    settings.EXPIRATION_WINDOW_SECONDS = 60
    ticket = ticket_replica(title="Opera", price="20.50")
    buyer = signed_in_client()
    before = timezone.now()

    response = buy(buyer, ticket.id)
    after = timezone.now()

    assert response.status_code == 201
    order = Order.objects.get()
    body = response.json()
    assert body == {
        "id": str(order.id),
        "userId": buyer.user_id,
        "status": "created",
        "expiresAt": iso(order.expires_at),
        "ticket": {"id": str(ticket.id), "title": "Opera", "price": 20.5, "version": 0},
        "version": 0,
    }
    expires_at = datetime.fromisoformat(body["expiresAt"])
    assert before + timedelta(seconds=60) <= expires_at <= after + timedelta(seconds=60)
    assert (order.status, order.version, str(order.user_id)) == ("created", 0, buyer.user_id)
    assert order.ticket_id == ticket.id


def test_create_order_records_exactly_one_order_created_event(signed_in_client):
    ticket = ticket_replica(price="20.50")
    buyer = signed_in_client()

    response = buy(buyer, ticket.id)

    event = OutboxEvent.objects.get()
    order = Order.objects.get()
    assert event.subject == "order.created"
    data = dict(event.data)
    assert datetime.fromisoformat(data.pop("expiresAt")) == order.expires_at
    assert data == {
        "id": response.json()["id"],
        "version": 0,
        "status": "created",
        "userId": buyer.user_id,
        "ticket": {"id": str(ticket.id), "price": "20.50"},
    }
    assert event.sent_at is None  # only after the commit, which this test never reaches


def test_create_order_accepts_a_bearer_token_which_wins_over_the_cookie(
    signed_in_client, make_token
):
    ticket = ticket_replica()
    client = signed_in_client()
    bearer_user = str(uuid.uuid4())

    response = client.post(
        ORDERS,
        {"ticketId": str(ticket.id)},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {make_token(user_id=bearer_user)}",
    )

    assert response.status_code == 201
    assert response.json()["userId"] == bearer_user
    assert str(Order.objects.get().user_id) == bearer_user


def test_create_order_for_an_unknown_ticket(signed_in_client):
    ticket_replica()

    response = buy(signed_in_client(), uuid.uuid4())

    assert_refused(response, 404, (NOT_FOUND,))


@pytest.mark.parametrize("body", [{}, {"ticketId": None}, {"ticketId": ""}])
def test_create_order_without_a_ticket_id(signed_in_client, body):
    ticket_replica()

    response = signed_in_client().post(ORDERS, body, format="json")

    assert_refused(response, 400, (services.TICKET_ID_REQUIRED, "ticketId"))


@pytest.mark.parametrize(
    "value",
    [
        "not-a-uuid",
        "12345",
        "6a1d0c52-93f4-4c52-a3b0-0c9f6f1e2b7",  # one digit short
        " ",
        42,
        0,
        20.5,
        True,
        "LIST",  # the real ticket's id, wrapped in a list
        "OBJECT",  # the real ticket's id, wrapped in an object
        "NUMBER",  # the real ticket's id as a 32-digit JSON number (a valid UUID as text)
        "BRACES",  # forms uuid.UUID() accepts but ids in paths do not: canonical only
        "URN",
        "HEX",
    ],
)
def test_create_order_with_a_malformed_ticket_id(signed_in_client, value):
    ticket = ticket_replica(ticket_id=uuid.UUID("12345678" * 4))
    if value == "LIST":
        value = [str(ticket.id)]
    elif value == "OBJECT":
        value = {"id": str(ticket.id)}
    elif value == "BRACES":
        value = "{" + str(ticket.id) + "}"
    elif value == "URN":
        value = ticket.id.urn
    elif value == "HEX":
        value = ticket.id.hex
    elif value == "NUMBER":
        value = int("12345678" * 4)

    response = signed_in_client().post(ORDERS, {"ticketId": value}, format="json")

    assert_refused(response, 400, (services.TICKET_ID_INVALID, "ticketId"))


def test_create_order_for_your_own_ticket(signed_in_client):
    seller = signed_in_client()
    ticket = ticket_replica(user_id=seller.user_id)

    response = buy(seller, ticket.id)

    assert_refused(response, 400, (services.OWN_TICKET,))


@pytest.mark.parametrize("price", ["0.49", "0.01"])
def test_create_order_for_a_ticket_no_card_can_pay_for(signed_in_client, price):
    # Listed before tickets_svc refused prices below the smallest charge: reserving it
    # would hold it for a payment that cannot happen.
    ticket = ticket_replica(price=price)

    response = buy(signed_in_client(), ticket.id)

    assert_refused(response, 400, (services.TICKET_TOO_CHEAP,))


@pytest.mark.parametrize("status", [Order.Status.CREATED, Order.Status.COMPLETE])
def test_create_order_for_a_ticket_another_order_holds(signed_in_client, status):
    ticket = ticket_replica()
    holder = order_row(ticket=ticket, status=status)

    response = buy(signed_in_client(), ticket.id)

    assert_refused(response, 400, (services.TICKET_RESERVED,), orders=1)
    assert_unchanged(holder)


def test_create_order_twice_for_one_ticket_by_the_same_buyer(signed_in_client):
    ticket = ticket_replica()
    buyer = signed_in_client()
    assert buy(buyer, ticket.id).status_code == 201

    response = buy(buyer, ticket.id)

    assert response.status_code == 400
    assert response.json() == errors((services.TICKET_RESERVED,))
    assert Order.objects.count() == 1
    assert OutboxEvent.objects.count() == 1


def test_a_cancelled_order_does_not_hold_the_ticket(signed_in_client):
    ticket = ticket_replica()
    old = order_row(ticket=ticket, status=Order.Status.CANCELLED, version=1)
    buyer = signed_in_client()

    response = buy(buyer, ticket.id)

    assert response.status_code == 201
    new = Order.objects.get(id=response.json()["id"])
    assert new.id != old.id
    assert new.status == "created"
    assert list(OutboxEvent.objects.values_list("subject", flat=True)) == ["order.created"]
    assert_unchanged(old)


@pytest.mark.parametrize("raw", ['{"ticketId": ', "{'ticketId': 'x'}", '{"ticketId": NaN}', "\x00"])
def test_create_order_with_malformed_json(signed_in_client, raw):
    ticket_replica()

    response = signed_in_client().post(ORDERS, raw, content_type="application/json")

    assert_refused(response, 400, (MALFORMED_JSON,))


@pytest.mark.parametrize("kind", ["list", "str"])
def test_create_order_with_a_json_body_that_is_not_an_object(signed_in_client, kind):
    # The ticket's id sent as a list or a bare string carries no ticketId: it is refused
    # the way a body without one is, not with a message about the body's type.
    ticket = ticket_replica()
    body = [str(ticket.id)] if kind == "list" else str(ticket.id)

    response = signed_in_client().post(ORDERS, json.dumps(body), content_type="application/json")

    assert_refused(response, 400, (services.TICKET_ID_REQUIRED, "ticketId"))


def test_create_order_ignores_fields_the_client_does_not_set(signed_in_client):
    ticket = ticket_replica()
    buyer = signed_in_client()
    body = {"ticketId": str(ticket.id), "userId": str(uuid.uuid4()), "status": "complete"}

    response = buyer.post(ORDERS, body, format="json")

    assert response.status_code == 201
    order = Order.objects.get()
    assert (str(order.user_id), order.status) == (buyer.user_id, "created")


@pytest.mark.parametrize("raw", ['"x"', "5", "true", "null"])
def test_create_order_with_a_json_scalar_body(signed_in_client, raw):
    ticket_replica()

    response = signed_in_client().post(ORDERS, raw, content_type="application/json")

    assert_refused(response, 400, (services.TICKET_ID_REQUIRED, "ticketId"))


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "multipart/form-data", "text/plain"]
)
def test_create_order_from_a_form_is_refused(signed_in_client, content_type):
    ticket = ticket_replica()
    client = signed_in_client()

    if content_type == "multipart/form-data":
        response = client.post(ORDERS, {"ticketId": str(ticket.id)}, format="multipart")
    else:
        response = client.post(ORDERS, f"ticketId={ticket.id}", content_type=content_type)

    assert_refused(response, 415, (UNSUPPORTED_MEDIA_TYPE,))


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("carrier", TOKEN_CARRIERS)
def test_forged_tokens_cannot_create_orders(api_client, session_keys, attack, carrier):
    ticket = ticket_replica()
    carry_token(api_client, ATTACKS[attack](session_keys), carrier)

    response = buy(api_client, ticket.id)

    assert_refused(response, 401, (NOT_AUTHORIZED,))


# --- GET /api/orders -----------------------------------------------------------------


def test_list_orders_requires_sign_in(api_client):
    order_row()

    response = api_client.get(ORDERS)

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))


def test_list_orders_shows_only_the_callers_orders_newest_first_in_every_status(
    signed_in_client,
):
    buyer = signed_in_client()
    start = timezone.now() - timedelta(hours=1)
    oldest = order_row(user_id=buyer.user_id, status="complete", version=1, created_at=start)
    middle = order_row(
        user_id=buyer.user_id,
        status="cancelled",
        version=1,
        created_at=start + timedelta(minutes=1),
    )
    newest = order_row(user_id=buyer.user_id, created_at=start + timedelta(minutes=2))
    order_row(created_at=start + timedelta(minutes=3))  # someone else's

    response = buyer.get(ORDERS)

    assert response.status_code == 200
    assert response.json() == [order_json(newest), order_json(middle), order_json(oldest)]
    assert [item["status"] for item in response.json()] == ["created", "cancelled", "complete"]
    assert "Link" not in response


def test_list_orders_embeds_the_tickets_current_title_and_the_orders_price(signed_in_client):
    buyer = signed_in_client()
    ticket = ticket_replica(title="Old title", price="10.00")
    order = order_row(ticket=ticket, user_id=buyer.user_id)
    ticket_update(ticket, title="New title", price="12.34")

    response = buyer.get(ORDERS)

    # The title follows the seller's edit; the price is the one the order was made at.
    assert response.json() == [
        {
            "id": str(order.id),
            "userId": buyer.user_id,
            "status": "created",
            "expiresAt": iso(order.expires_at),
            "ticket": {"id": str(ticket.id), "title": "New title", "price": 10.0, "version": 1},
            "version": 0,
        }
    ]


def test_a_price_edit_reaching_the_replica_after_the_order_changes_nothing_it_costs(
    signed_in_client,
):
    # given: the order is made at $5, then the seller's edit to $500 reaches the replica
    # (tickets_svc accepted it before it saw the reservation)
    ticket = ticket_replica(title="Gig", price="5.00")
    buyer = signed_in_client()
    created = buy(buyer, ticket.id)
    assert created.status_code == 201
    assert ticket_update(ticket, price="500.00") is Outcome.APPLIED

    # when
    shown = buyer.get(detail(created.json()["id"]))
    listed = buyer.get(ORDERS)

    # then: every answer shows $5, and order.created told payments_svc to charge $5
    assert created.json()["ticket"]["price"] == 5.0
    assert shown.json()["ticket"] == {
        "id": str(ticket.id),
        "title": "Gig",
        "price": 5.0,
        "version": 1,
    }
    assert listed.json()[0]["ticket"]["price"] == 5.0
    assert Order.objects.get().price == Decimal("5.00")
    (event,) = OutboxEvent.objects.filter(subject="order.created")
    assert event.data["ticket"]["price"] == "5.00"


def test_list_orders_of_someone_without_orders(signed_in_client):
    order_row()

    response = signed_in_client().get(ORDERS)

    assert response.status_code == 200
    assert response.json() == []


def _walk(client, url):
    pages = []
    while url:
        response = client.get(url)
        assert response.status_code == 200
        pages.append([item["id"] for item in response.json()])
        link = response.get("Link")
        if link is None:
            break
        assert link.startswith("<http://testserver/api/orders?")
        assert link.endswith('>; rel="next"')
        url = link[1 : -len('>; rel="next"')]
    return pages


def test_list_orders_pages_by_limit_and_link_headers(signed_in_client):
    buyer = signed_in_client()
    start = timezone.now() - timedelta(hours=1)
    orders = [
        order_row(user_id=buyer.user_id, created_at=start + timedelta(seconds=i)) for i in range(5)
    ]
    order_row(created_at=start + timedelta(seconds=10))  # someone else's
    newest_first = [str(o.id) for o in reversed(orders)]

    pages = _walk(buyer, f"{ORDERS}?limit=2")

    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:5]]


def test_list_orders_pages_stay_stable_while_orders_are_added(signed_in_client):
    buyer = signed_in_client()
    start = timezone.now() - timedelta(hours=1)
    orders = [
        order_row(user_id=buyer.user_id, created_at=start + timedelta(seconds=i)) for i in range(4)
    ]
    first = buyer.get(f"{ORDERS}?limit=2")
    next_url = first["Link"][1 : -len('>; rel="next"')]
    order_row(user_id=buyer.user_id)  # newer than all: sorts before the cursor

    pages = [[item["id"] for item in first.json()], *_walk(buyer, next_url)]

    assert pages == [[str(orders[3].id), str(orders[2].id)], [str(orders[1].id), str(orders[0].id)]]


def test_list_orders_with_equal_timestamps_pages_each_order_once(signed_in_client):
    buyer = signed_in_client()
    moment = timezone.now() - timedelta(hours=1)
    orders = [order_row(user_id=buyer.user_id, created_at=moment) for _ in range(5)]

    pages = _walk(buyer, f"{ORDERS}?limit=2")

    ids = [order_id for page in pages for order_id in page]
    assert [len(page) for page in pages] == [2, 2, 1]
    assert sorted(ids) == sorted(str(o.id) for o in orders)


def test_list_orders_link_points_at_the_gateway_host(signed_in_client):
    buyer = signed_in_client()
    order_row(user_id=buyer.user_id)
    order_row(user_id=buyer.user_id)

    response = buyer.get(
        f"{ORDERS}?limit=1", HTTP_X_FORWARDED_HOST="localhost:8080", HTTP_X_FORWARDED_PROTO="https"
    )

    assert response["Link"].startswith("<https://localhost:8080/api/orders?limit=1&cursor=")


def test_list_orders_default_and_maximum_page_sizes(signed_in_client):
    buyer = signed_in_client()
    start = timezone.now() - timedelta(hours=1)
    for i in range(101):
        order_row(user_id=buyer.user_id, created_at=start + timedelta(seconds=i))

    default = buyer.get(ORDERS)
    huge = buyer.get(f"{ORDERS}?limit=1000")

    assert len(default.json()) == 20
    assert "limit=20&" in default["Link"]
    assert len(huge.json()) == 100
    assert "limit=100&" in huge["Link"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=0", (INVALID_LIMIT, "limit")),
        ("limit=", (INVALID_LIMIT, "limit")),  # what the schema calls an integer
        ("limit=-1", (INVALID_LIMIT, "limit")),
        ("limit=abc", (INVALID_LIMIT, "limit")),
        ("limit=%C2%B2", (INVALID_LIMIT, "limit")),  # "²".isdigit() is True, int("²") fails
        ("limit=1.5", (INVALID_LIMIT, "limit")),
        (f"limit={'9' * 5000}", (INVALID_LIMIT, "limit")),  # past int()'s digit limit
        ("cursor=not-a-cursor", (INVALID_CURSOR, "cursor")),
        ("cursor=e30", (INVALID_CURSOR, "cursor")),  # base64 of {}
    ],
)
def test_list_orders_with_bad_page_parameters(signed_in_client, query, expected):
    buyer = signed_in_client()
    order_row(user_id=buyer.user_id)

    response = buyer.get(f"{ORDERS}?{query}")

    assert response.status_code == 400
    assert response.json() == errors(expected)


# --- GET /api/orders/<id> ------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_show_order_to_its_owner(signed_in_client, suffix):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    response = buyer.get(detail(order) + suffix)

    assert response.status_code == 200
    assert response.json() == order_json(order)


def test_show_order_with_an_upper_case_id(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    response = buyer.get(detail(str(order.id).upper()))

    assert response.status_code == 200
    assert response.json()["id"] == str(order.id)


def test_show_someone_elses_order_is_not_found(signed_in_client):
    order = order_row()

    response = signed_in_client().get(detail(order))

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


def test_show_unknown_order(signed_in_client):
    response = signed_in_client().get(detail(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


@pytest.mark.parametrize(
    "order_id", ["not-a-uuid", "42", "6a1d0c52-93f4-4c52-a3b0-0c9f6f1e2b7", "6a1d0c52/extra"]
)
def test_show_order_with_a_malformed_id(signed_in_client, order_id):
    response = signed_in_client().get(f"{ORDERS}/{order_id}")

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


@pytest.mark.parametrize("which", ["existing", "unknown"])
def test_show_order_requires_sign_in_before_anything_else(api_client, which):
    order_id = order_row().id if which == "existing" else uuid.uuid4()

    response = api_client.get(detail(order_id))

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))


def test_other_methods_on_an_order_are_not_allowed(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    response = buyer.put(detail(order), {"status": "complete"}, format="json")

    assert response.status_code == 405
    assert response.json() == errors((METHOD_NOT_ALLOWED,))
    assert "DELETE" in response["Allow"]
    assert_unchanged(order)


# --- DELETE /api/orders/<id> ---------------------------------------------------------


def test_cancel_order(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)
    before = order.updated_at

    response = buyer.delete(detail(order))

    assert response.status_code == 204
    assert response.content == b""
    order.refresh_from_db()
    assert (order.status, order.version) == ("cancelled", 1)
    assert order.updated_at > before
    event = OutboxEvent.objects.get()
    assert event.subject == "order.cancelled"
    assert event.data == {"id": str(order.id), "version": 1, "ticket": {"id": str(order.ticket_id)}}


def test_cancel_order_twice_publishes_nothing_new(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)
    assert buyer.delete(detail(order)).status_code == 204
    order.refresh_from_db()

    response = buyer.delete(detail(order))

    assert response.status_code == 204
    assert response.content == b""
    assert_unchanged(order)
    assert order.version == 1
    assert OutboxEvent.objects.count() == 1


def test_cancel_frees_the_ticket_for_another_buyer(signed_in_client):
    ticket = ticket_replica()
    first = signed_in_client()
    order_id = buy(first, ticket.id).json()["id"]
    assert first.delete(detail(order_id)).status_code == 204

    response = buy(signed_in_client(), ticket.id)

    assert response.status_code == 201
    assert list(OutboxEvent.objects.values_list("subject", flat=True)) == [
        "order.created",
        "order.cancelled",
        "order.created",
    ]


def test_cancel_someone_elses_order_is_not_found(signed_in_client):
    order = order_row()

    response = signed_in_client().delete(detail(order))

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))
    assert_unchanged(order)
    assert OutboxEvent.objects.count() == 0


def test_cancel_unknown_order(signed_in_client):
    response = signed_in_client().delete(detail(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))
    assert OutboxEvent.objects.count() == 0


def test_cancel_completed_order_is_refused(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id, status="complete", version=1)

    response = buyer.delete(detail(order))

    assert response.status_code == 400
    assert response.json() == errors((services.ORDER_COMPLETE,))
    assert_unchanged(order)
    assert OutboxEvent.objects.count() == 0


def test_cancel_order_requires_sign_in(api_client):
    order = order_row()

    response = api_client.delete(detail(order))

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))
    assert_unchanged(order)
    assert OutboxEvent.objects.count() == 0


def test_cancel_order_from_a_form_is_refused(signed_in_client):
    buyer = signed_in_client()
    order = order_row(user_id=buyer.user_id)

    response = buyer.delete(
        detail(order), "confirm=1", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert response.json() == errors((UNSUPPORTED_MEDIA_TYPE,))
    assert_unchanged(order)
    assert OutboxEvent.objects.count() == 0


# --- admin, schema, docs, probes -----------------------------------------------------


def test_admin_sends_anonymous_to_the_site_sign_in(api_client):
    assert_admin_sends_anonymous_to_sign_in(api_client, "/admin/orders/")


def test_staff_sign_on_views_every_admin_page_read_only(staff_admin_client):
    checked = assert_staff_views_every_model_read_only(staff_admin_client, "/admin/orders/")

    assert set(checked) >= {
        "orders.Order",
        "orders.TicketReplica",
        "shared_lib.OutboxEvent",
        "auth.User",
    }


def test_schema_documents_the_order_routes(api_client):
    response = api_client.get("/api/orders/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    assert set(paths) == {"/api/orders", "/api/orders/{order_id}"}
    assert set(paths["/api/orders"]) == {"get", "post"}
    assert set(paths["/api/orders/{order_id}"]) == {"get", "delete"}


def test_the_schema_states_the_order_body(api_client):
    response = api_client.get("/api/orders/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    schema = json.loads(response.content)
    content = schema["paths"]["/api/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert content["schema"] == {"$ref": "#/components/schemas/OrderInputRequest"}
    assert schema["components"]["schemas"]["OrderInputRequest"] == {
        "type": "object",
        "description": "The ticket to buy.",
        "properties": {"ticketId": {"type": "string", "format": "uuid"}},
        "required": ["ticketId"],
    }


def test_docs_page(api_client):
    assert_docs_page(api_client, "/api/orders/docs")


def test_readiness_checks_the_database_not_the_broker(api_client):
    assert_ready_on_the_database_alone(api_client)


def test_unknown_api_route_is_a_json_404(signed_in_client):
    assert_unknown_route_is_json_404(signed_in_client(), f"{ORDERS}/{uuid.uuid4()}/payments")


def test_prices_in_responses_are_exact_json_numbers(signed_in_client):
    ticket = ticket_replica(price="999999.99")
    buyer = signed_in_client()

    response = buy(buyer, ticket.id)

    assert json.loads(response.content, parse_float=Decimal)["ticket"]["price"] == Decimal(
        "999999.99"
    )


def _cursor(value):
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "payload",
    [
        {"t": "2020-01-01T00:00:00+00:00"},
        {"t": "2020-01-01T00:00:00", "id": "6a1d0c52-93f4-4c52-a3b0-0c9f6f1e2b77"},
        {"t": 5, "id": "6a1d0c52-93f4-4c52-a3b0-0c9f6f1e2b77"},
        {"t": "2020-01-01T00:00:00+00:00", "id": "nope"},
        {"t": "2020-01-01T00:00:00+00:00", "id": None},
        {"t": "2020-01-01T00:00:00+00:00", "id": 5},  # uuid.UUID(5) is an AttributeError
        {"t": "2020-01-01T00:00:00+00:00", "id": [1]},
        [1, 2],
        "text",
    ],
)
def test_list_orders_with_a_forged_cursor(signed_in_client, payload):
    buyer = signed_in_client()
    order_row(user_id=buyer.user_id)

    response = buyer.get(f"{ORDERS}?cursor={_cursor(payload)}")

    assert response.status_code == 400
    assert response.json() == errors((INVALID_CURSOR, "cursor"))


def test_create_order_with_a_body_over_the_limit(signed_in_client, settings):
    ticket = ticket_replica()
    body = json.dumps(
        {"ticketId": str(ticket.id), "pad": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
    )

    response = signed_in_client().post(ORDERS, body, content_type="application/json")

    assert_refused(response, 413, (BODY_TOO_LARGE,))


def test_admin_lists_orders_read_only(admin_client):
    order = order_row()

    changelist = admin_client.get("/admin/orders/orders/order/")
    change = admin_client.get(f"/admin/orders/orders/order/{order.id}/change/")
    add = admin_client.get("/admin/orders/orders/order/add/")
    replicas = admin_client.get("/admin/orders/orders/ticketreplica/")

    assert changelist.status_code == 200
    assert str(order.id) in changelist.content.decode()
    assert change.status_code == 200  # view-only: no save button
    assert b'name="_save"' not in change.content
    assert add.status_code == 403
    assert replicas.status_code == 200


# --- holding limit and rate limit ----------------------------------------------------


def test_one_more_unpaid_order_than_the_limit_is_refused(signed_in_client, settings):
    settings.ORDERS_MAX_ACTIVE_PER_USER = 2
    buyer = signed_in_client()
    held = [buy(buyer, ticket_replica().id) for _ in range(2)]
    extra = ticket_replica()

    refused = buy(buyer, extra.id)

    assert [r.status_code for r in held] == [201, 201]
    assert refused.status_code == 400
    assert refused.json() == errors((services.too_many_unpaid_message(2),))
    assert "pay or cancel one first" in refused.json()["errors"][0]["message"]
    assert not Order.objects.filter(ticket=extra).exists()
    assert OutboxEvent.objects.filter(subject="order.created").count() == 2


def test_paid_cancelled_and_lapsed_orders_do_not_count_towards_the_limit(
    signed_in_client, settings
):
    settings.ORDERS_MAX_ACTIVE_PER_USER = 1
    buyer = signed_in_client()
    order_row(user_id=buyer.user_id, status="complete")
    order_row(user_id=buyer.user_id, status="cancelled")
    # Past its window: its expiry event is on the way, the buyer need not wait for it.
    order_row(user_id=buyer.user_id, expires_in=timedelta(seconds=-1))
    order_row(status="created")  # someone else's

    response = buy(buyer, ticket_replica().id)

    assert response.status_code == 201


def test_cancelling_an_order_makes_room_for_another(signed_in_client, settings):
    settings.ORDERS_MAX_ACTIVE_PER_USER = 1
    buyer = signed_in_client()
    first = buy(buyer, ticket_replica().id)
    assert buy(buyer, ticket_replica().id).status_code == 400

    assert buyer.delete(detail(first.json()["id"])).status_code == 204
    again = buy(buyer, ticket_replica().id)

    assert again.status_code == 201


def test_placing_orders_is_rate_limited_per_user(signed_in_client, settings):
    settings.RATE_LIMIT_ORDERS = "3/min"
    settings.ORDERS_MAX_ACTIVE_PER_USER = 100
    buyer = signed_in_client()
    other = signed_in_client()
    placed = [buy(buyer, ticket_replica().id) for _ in range(3)]
    ticket = ticket_replica()

    refused = buy(buyer, ticket.id)
    others = buy(other, ticket_replica().id)
    listed = buyer.get(ORDERS)

    assert [r.status_code for r in placed] == [201, 201, 201]
    assert refused.status_code == 429
    assert refused.json() == errors((TOO_MANY_REQUESTS,))
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert not Order.objects.filter(ticket=ticket).exists()
    assert others.status_code == 201  # a limit per user, not for everyone
    assert listed.status_code == 200  # reading one's orders is not limited


def test_the_rate_limit_comes_after_sign_in(api_client, settings):
    settings.RATE_LIMIT_ORDERS = "1/min"

    responses = [buy(api_client, ticket_replica().id) for _ in range(3)]

    assert [r.status_code for r in responses] == [401, 401, 401]

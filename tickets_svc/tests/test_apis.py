import base64
import json
import re
import uuid
from decimal import Decimal

import pytest

from shared_lib.auth import SESSION_COOKIE
from shared_lib.errors import (
    BODY_TOO_LARGE,
    FORBIDDEN,
    MALFORMED_JSON,
    NOT_AUTHORIZED,
    NOT_FOUND,
    UNSUPPORTED_MEDIA_TYPE,
    InvalidInput,
)
from shared_lib.models import OutboxEvent
from shared_lib.pagination import INVALID_CURSOR, INVALID_LIMIT
from shared_lib.testing.admin import assert_staff_views_every_model_read_only
from shared_lib.testing.api import (
    TOKEN_CARRIERS,
    assert_admin_sends_anonymous_to_sign_in,
    assert_method_not_allowed,
    assert_ready_on_the_database_alone,
    assert_unknown_route_is_json_404,
    carry_token,
    errors,
)
from shared_lib.testing.tokens import ALICE, ATTACKS
from tests.factories import make_ticket, make_tickets, published, ticket_json
from tickets import services
from tickets.apis import TicketInputSerializer
from tickets.models import Ticket

pytestmark = pytest.mark.django_db

LIST = "/api/tickets"
NEXT_LINK = re.compile(r'^<(?P<url>[^>]+)>; rel="next"$')


def assert_nothing_created(response, status, error):
    """`response` is `status` with the one `error` (message, field); no ticket, no event."""
    assert response.status_code == status
    assert response.json() == errors(error)
    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def assert_list_refuses(client, parameter, value, message):
    """The list with one bad paging `parameter` is a 400 naming it."""
    make_tickets(1)

    response = client.get(LIST, {parameter: value})

    assert response.status_code == 400
    assert response.json() == errors((message, parameter))


def detail(ticket_id):
    return f"/api/tickets/{ticket_id}"


def raw_json(client, method, path, text):
    """Send `text` verbatim as the JSON body: numbers keep the exact digits written."""
    return getattr(client, method)(path, text, content_type="application/json")


def ticket_body(title: str = '"Concert"', price: str = '"20"') -> str:
    """A ticket's JSON body with `title` and `price` written verbatim."""
    return f'{{"title": {title}, "price": {price}}}'


def next_url(response):
    link = response.headers.get("Link")
    if link is None:
        return None
    match = NEXT_LINK.match(link)
    assert match, link
    return match["url"]


def listed_ids(response):
    return [item["id"] for item in response.json()]


def encode_cursor(value):
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


# --- POST /api/tickets -----------------------------------------------------------------


def test_create_requires_sign_in(api_client):
    response = api_client.post(LIST, {"title": "Concert", "price": "20"}, format="json")

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_create_returns_the_ticket_and_announces_it(seller):
    response = seller.post(LIST, {"title": "  Concert  ", "price": "20.50"}, format="json")

    assert response.status_code == 201
    ticket = Ticket.objects.get()
    body = response.json()
    assert body == {
        "id": str(ticket.id),
        "title": "Concert",
        "price": 20.5,
        "userId": seller.user_id,
        "version": 0,
        "orderId": None,
        "status": "available",
    }
    assert isinstance(body["price"], float)  # a JSON number, not a string
    assert (ticket.title, ticket.price, str(ticket.user_id)) == (
        "Concert",
        Decimal("20.50"),
        seller.user_id,
    )
    assert (ticket.order_id, ticket.version) == (None, 0)
    assert published() == [
        (
            "ticket.created",
            {
                "id": str(ticket.id),
                "version": 0,
                "title": "Concert",
                "price": "20.50",
                "userId": seller.user_id,
            },
        )
    ]


@pytest.mark.parametrize(
    ("price_json", "answered", "stored"),
    [
        ("20.5", 20.5, "20.50"),
        ("20.50", 20.5, "20.50"),
        ("20.500", 20.5, "20.50"),  # trailing zeros are not extra decimals
        ("7", 7, "7.00"),
        ('"20.50"', 20.5, "20.50"),
        ('"7"', 7, "7.00"),
        ('"0.50"', 0.5, "0.50"),
        ("0.5", 0.5, "0.50"),
        ("999999.99", 999999.99, "999999.99"),
        ('"999999.99"', 999999.99, "999999.99"),
    ],
)
def test_create_accepts_a_price_as_a_number_or_a_numeric_string(
    seller, price_json, answered, stored
):
    response = raw_json(seller, "post", LIST, ticket_body(price=price_json))

    assert response.status_code == 201
    assert response.json()["price"] == answered
    assert Ticket.objects.get().price == Decimal(stored)
    [(subject, data)] = published()
    assert (subject, data["price"]) == ("ticket.created", stored)


def test_a_title_of_200_characters_is_accepted_after_trimming(seller):
    title = "t" * 200

    response = seller.post(LIST, {"title": f"  {title}\n", "price": "5"}, format="json")

    assert response.status_code == 201
    assert response.json()["title"] == title
    assert Ticket.objects.get().title == title


@pytest.mark.parametrize(
    ("field", "value_json", "message"),
    [
        ("price", "-1", services.PRICE_POSITIVE),
        ("price", "0", services.PRICE_POSITIVE),
        ("price", "0.00", services.PRICE_POSITIVE),
        ("price", "-0.5", services.PRICE_POSITIVE),
        ("price", '"-1"', services.PRICE_POSITIVE),
        ("price", '"0"', services.PRICE_POSITIVE),
        ("price", '"abc"', services.PRICE_POSITIVE),
        ("price", '"1e3"', services.PRICE_POSITIVE),  # strings are plain decimal notation only
        ("price", '"20,50"', services.PRICE_POSITIVE),
        ("price", '"1,000"', services.PRICE_POSITIVE),
        ("price", '"Infinity"', services.PRICE_POSITIVE),
        ("price", '"NaN"', services.PRICE_POSITIVE),
        ("price", '""', services.PRICE_POSITIVE),
        ("price", '"   "', services.PRICE_POSITIVE),
        ("price", "true", services.PRICE_POSITIVE),
        ("price", "false", services.PRICE_POSITIVE),
        ("price", "null", services.PRICE_POSITIVE),
        ("price", "[20]", services.PRICE_POSITIVE),
        ("price", '{"amount": 20}', services.PRICE_POSITIVE),
        ("price", "20.555", services.PRICE_DECIMALS),
        ("price", '"20.555"', services.PRICE_DECIMALS),
        ("price", "0.001", services.PRICE_DECIMALS),
        # Below the smallest amount a card can be charged: listed, it could never be paid.
        ("price", "0.49", services.PRICE_TOO_LOW),
        ("price", '"0.01"', services.PRICE_TOO_LOW),
        ("price", "0.1", services.PRICE_TOO_LOW),
        # A float parser would make this 21.0 and accept it; the exact decimal is refused.
        ("price", "20.999999999999999999", services.PRICE_DECIMALS),
        ("price", '"20.999999999999999999"', services.PRICE_DECIMALS),
        ("price", "1000000", services.PRICE_TOO_HIGH),
        ("price", "1000000.00", services.PRICE_TOO_HIGH),
        ("price", '"1000000"', services.PRICE_TOO_HIGH),
        ("price", "1e6", services.PRICE_TOO_HIGH),
        ("price", "99999999999999999999", services.PRICE_TOO_HIGH),
        ("price", '"99999999999999999999"', services.PRICE_TOO_HIGH),
        pytest.param(
            "price",
            "1" + "0" * 30,
            services.PRICE_TOO_HIGH,
            id="31-digit-integer",
        ),
        pytest.param(
            "price",
            '"' + "9" * 30 + '"',
            services.PRICE_TOO_HIGH,
            id="30-digit-string",
        ),
        pytest.param(
            "price",
            "1e400",
            services.PRICE_TOO_HIGH,
            id="1e400",
        ),
        ("title", '""', services.TITLE_REQUIRED),
        ("title", '"   "', services.TITLE_REQUIRED),
        ("title", '"\\n\\t "', services.TITLE_REQUIRED),
        ("title", "null", services.TITLE_REQUIRED),
        ("title", "123", services.TITLE_REQUIRED),
        ("title", "true", services.TITLE_REQUIRED),
        ("title", '["Concert"]', services.TITLE_REQUIRED),
        ("title", '{"text": "Concert"}', services.TITLE_REQUIRED),
        ("title", json.dumps("t" * 201), services.TITLE_TOO_LONG),
        ("title", json.dumps(" " + "t" * 201 + " "), services.TITLE_TOO_LONG),
        # Only characters that show nothing: a blank entry in the list.
        pytest.param("title", json.dumps("\u200b\u200d"), services.TITLE_REQUIRED, id="zero-width"),
        pytest.param("title", json.dumps("\u3164 \u3164"), services.TITLE_REQUIRED, id="fillers"),
        pytest.param(
            "title", json.dumps("\u200f\u2800"), services.TITLE_REQUIRED, id="rlm-braille"
        ),
        pytest.param("title", json.dumps("\u0301\u0302"), services.TITLE_REQUIRED, id="marks"),
        pytest.param("title", json.dumps("\u0007"), services.TITLE_CONTROL, id="only-a-bell"),
        # Shown reordered (a right-to-left override), or no text at all (a bell, DEL, C1).
        pytest.param("title", json.dumps("Opera \u202e99.01$"), services.TITLE_CONTROL, id="rlo"),
        pytest.param("title", json.dumps("Opera \u2067x\u2069"), services.TITLE_CONTROL, id="rli"),
        pytest.param("title", json.dumps("Opera\u0007"), services.TITLE_CONTROL, id="bell"),
        pytest.param("title", json.dumps("Opera\u007f"), services.TITLE_CONTROL, id="del"),
        pytest.param("title", json.dumps("Opera\u0090"), services.TITLE_CONTROL, id="c1"),
    ],
)
def test_create_rejects_a_bad_title_or_price_and_writes_nothing(seller, field, value_json, message):
    # The other field valid, so the one error is this field's.
    response = raw_json(seller, "post", LIST, ticket_body(**{field: value_json}))

    assert_nothing_created(response, 400, (message, field))


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("Opera\n\nIMPORTANT: call +1 555 0100", "Opera IMPORTANT: call +1 555 0100"),
        ("Opera\tfloor\r\n  row 3\u2028", "Opera floor row 3"),
        ("Opera\u00a0\u00a0floor", "Opera floor"),
        # Joiners belong to the text (an emoji family, a Persian word), marks of direction too.
        ("Family \U0001f468\u200d\U0001f469\u200d\U0001f467", None),
        # An emoji newer than this Python's Unicode data (unassigned to it) may show.
        ("\U0001fa77", None),
        ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 \u200fconcert", None),
    ],
    ids=[
        "line-breaks",
        "tabs-and-separators",
        "no-break-spaces",
        "emoji-joiner",
        "emoji-newer-than-python",
        "zwnj-rlm",
    ],
)
def test_a_title_is_kept_on_one_line(seller, sent, kept):
    response = seller.post(LIST, {"title": sent, "price": "10"}, format="json")

    assert response.status_code == 201, response.content
    expected = sent if kept is None else kept
    assert response.json()["title"] == expected
    assert Ticket.objects.get().title == expected


def test_create_rejects_a_missing_price(seller):
    response = seller.post(LIST, {"title": "Concert"}, format="json")

    assert_nothing_created(response, 400, (services.PRICE_POSITIVE, "price"))


@pytest.mark.parametrize(
    "title_json", ['"Con\\u0000cert"', '"Con\\ud800cert"'], ids=["nul", "lone-surrogate"]
)
def test_create_refuses_text_a_database_cannot_store(seller, title_json):
    response = raw_json(seller, "post", LIST, ticket_body(title=title_json))

    assert_nothing_created(response, 400, (MALFORMED_JSON,))


def test_create_rejects_a_missing_title(seller):
    response = seller.post(LIST, {"price": "20"}, format="json")

    assert_nothing_created(response, 400, (services.TITLE_REQUIRED, "title"))


@pytest.mark.parametrize(
    "body",
    [{"title": "", "price": -1}, {}, {"title": None, "price": None}],
)
def test_create_reports_every_bad_field_at_once(seller, body):
    response = seller.post(LIST, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(
        (services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")
    )
    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_create_with_an_empty_json_body_reports_both_fields(seller):
    response = seller.post(LIST, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == errors(
        (services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")
    )
    assert Ticket.objects.count() == 0


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ('[{"title": "Concert", "price": 20}]', "list"),
        ('"Concert"', "str"),
        ("20", "int"),
        ("null", "null"),
    ],
)
def test_create_refuses_a_body_that_is_not_an_object(seller, text, kind):
    # Not an object: it carries neither field, and says so field by field.
    response = raw_json(seller, "post", LIST, text)

    assert response.status_code == 400
    assert response.json() == errors(
        (services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")
    )
    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"title": 5, "price": "-1"},
            [(services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")],
        ),
        (
            {"title": "t" * 201, "price": True},
            [(services.TITLE_TOO_LONG, "title"), (services.PRICE_POSITIVE, "price")],
        ),
        (
            {"title": ["Concert"], "price": "20.555"},
            [(services.TITLE_REQUIRED, "title"), (services.PRICE_DECIMALS, "price")],
        ),
    ],
)
def test_create_reports_wrong_types_and_bad_values_together(seller, body, expected):
    response = seller.post(LIST, body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(*expected)
    assert Ticket.objects.count() == 0
    assert OutboxEvent.objects.count() == 0


def test_create_ignores_fields_the_client_does_not_set(seller):
    body = {"title": "Concert", "price": "20", "userId": ALICE, "version": 7, "orderId": ALICE}

    response = seller.post(LIST, body, format="json")

    assert response.status_code == 201
    assert Ticket.objects.get().user_id == uuid.UUID(seller.user_id)
    assert (response.json()["version"], response.json()["orderId"]) == (0, None)


@pytest.mark.parametrize(
    "text",
    ['{"title": "Concert", "price": 20', "{'title': 'Concert'}", '{"title": "x", "price": NaN}'],
)
def test_create_with_malformed_json_is_a_400(seller, text):
    response = raw_json(seller, "post", LIST, text)

    assert_nothing_created(response, 400, (MALFORMED_JSON,))


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_create_refuses_non_json_bodies(seller, content_type):
    response = seller.post(LIST, "title=Concert&price=20", content_type=content_type)

    assert_nothing_created(response, 415, (UNSUPPORTED_MEDIA_TYPE,))


def test_create_refuses_an_oversized_body(seller, settings):
    title = "t" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

    response = seller.post(LIST, {"title": title, "price": "20"}, format="json")

    assert_nothing_created(response, 413, (BODY_TOO_LARGE,))


def test_create_accepts_a_bearer_token(api_client, make_token):
    user_id = str(uuid.uuid4())
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {make_token(user_id=user_id)}")

    response = api_client.post(LIST, {"title": "Concert", "price": "20"}, format="json")

    assert response.status_code == 201
    assert response.json()["userId"] == user_id


@pytest.mark.parametrize("attack", list(ATTACKS))
@pytest.mark.parametrize("transport", TOKEN_CARRIERS)
def test_create_with_a_forged_token_is_401(api_client, session_keys, attack, transport):
    carry_token(api_client, ATTACKS[attack](session_keys), transport)

    response = api_client.post(LIST, {"title": "Concert", "price": "20"}, format="json")

    assert_nothing_created(response, 401, (NOT_AUTHORIZED,))


# --- GET /api/tickets ------------------------------------------------------------------


def test_list_is_empty_without_tickets(api_client):
    response = api_client.get(LIST)

    assert response.status_code == 200
    assert response.json() == []
    assert "Link" not in response.headers


def test_list_shows_unreserved_tickets_newest_first(api_client):
    newest, reserved, older, oldest = make_tickets(4)
    Ticket.objects.filter(id=reserved.id).update(order_id=uuid.uuid4())

    response = api_client.get(LIST)

    assert response.status_code == 200
    assert response.json() == [ticket_json(newest), ticket_json(older), ticket_json(oldest)]
    assert response.json()[0]["price"] == 10.0
    assert "Link" not in response.headers


def test_list_needs_no_sign_in_and_ignores_a_forged_token(api_client, session_keys):
    [ticket] = make_tickets(1)
    api_client.cookies[SESSION_COOKIE] = ATTACKS["alg-none"](session_keys)

    response = api_client.get(LIST)

    assert response.status_code == 200
    assert listed_ids(response) == [str(ticket.id)]


def test_a_reserved_ticket_leaves_the_list_and_a_released_one_returns(api_client):
    ticket = make_ticket()
    order_id = uuid.uuid4()
    assert listed_ids(api_client.get(LIST)) == [str(ticket.id)]

    services.ticket_reserve(ticket_id=ticket.id, order_id=order_id)
    assert api_client.get(LIST).json() == []

    services.ticket_release(ticket_id=ticket.id, order_id=order_id)
    assert listed_ids(api_client.get(LIST)) == [str(ticket.id)]


@pytest.mark.parametrize(("count", "has_next"), [(20, False), (21, True)])
def test_list_default_page_size_is_20(api_client, count, has_next):
    tickets = make_tickets(count)

    response = api_client.get(LIST)

    assert listed_ids(response) == [str(t.id) for t in tickets[:20]]
    assert (next_url(response) is not None) is has_next


def test_list_limit_and_next_link(api_client):
    tickets = make_tickets(3)

    response = api_client.get(LIST, {"limit": "2"})

    assert listed_ids(response) == [str(tickets[0].id), str(tickets[1].id)]
    url = next_url(response)
    assert url.startswith("http://testserver/api/tickets?limit=2&cursor=")
    last_page = api_client.get(url)
    assert listed_ids(last_page) == [str(tickets[2].id)]
    assert "Link" not in last_page.headers


def test_list_serves_at_most_100(api_client):
    tickets = make_tickets(101)

    response = api_client.get(LIST, {"limit": "500"})

    assert response.status_code == 200
    assert listed_ids(response) == [str(t.id) for t in tickets[:100]]
    assert "limit=100&" in next_url(response)
    assert listed_ids(api_client.get(next_url(response))) == [str(tickets[100].id)]


@pytest.mark.parametrize(
    "limit",
    [
        "0",
        "-1",
        "x",
        "1.5",
        "+5",
        " 5",
        pytest.param(
            "²",
            id="superscript-two",
        ),
        pytest.param(
            "9" * 5000,
            id="5000-digits",
        ),
    ],
)
def test_list_refuses_a_bad_limit(api_client, limit):
    assert_list_refuses(api_client, "limit", limit, INVALID_LIMIT)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "e30",  # {}
        encode_cursor([1, 2]),
        encode_cursor({"t": "2024-01-01T00:00:00", "id": str(uuid.uuid4())}),  # naive
        encode_cursor({"t": "yesterday", "id": str(uuid.uuid4())}),
        encode_cursor({"t": "2024-01-01T00:00:00+00:00", "id": "not-a-uuid"}),
        encode_cursor({"t": 5, "id": str(uuid.uuid4())}),
        pytest.param(
            encode_cursor({"t": "2024-01-01T00:00:00+00:00", "id": 5}),
            id="integer-id",
        ),
        # Valid ISO timestamps whose UTC instant is outside what datetime can hold: they
        # overflow while the query is built unless the cursor refuses them (no 500).
        pytest.param(
            encode_cursor({"t": "0001-01-01T00:00:00+23:59", "id": str(uuid.uuid4())}),
            id="before-year-1-in-utc",
        ),
        pytest.param(
            encode_cursor({"t": "9999-12-31T23:59:59-23:59", "id": str(uuid.uuid4())}),
            id="after-year-9999-in-utc",
        ),
    ],
)
def test_list_refuses_a_bad_cursor(api_client, cursor):
    assert_list_refuses(api_client, "cursor", cursor, INVALID_CURSOR)


def test_following_the_links_walks_every_ticket_exactly_once(api_client):
    tickets = make_tickets(7)
    seen, url, pages = [], LIST + "?limit=3", 0

    while url:
        response = api_client.get(url)
        assert response.status_code == 200
        seen += listed_ids(response)
        url = next_url(response)
        pages += 1

    assert pages == 3
    assert seen == [str(t.id) for t in tickets]


def test_pages_stay_stable_while_tickets_are_added(api_client):
    tickets = make_tickets(6)
    first = api_client.get(LIST, {"limit": "2"})
    added = [make_ticket(title="Newer 1"), make_ticket(title="Newer 2")]

    seen = listed_ids(first)
    url = next_url(first)
    while url:
        response = api_client.get(url)
        seen += listed_ids(response)
        url = next_url(response)

    assert seen == [str(t.id) for t in tickets]
    assert not {str(t.id) for t in added} & set(seen)
    assert listed_ids(api_client.get(LIST, {"limit": "2"})) == [str(added[1].id), str(added[0].id)]


def test_the_next_link_points_at_the_host_the_client_used(api_client):
    make_tickets(2)

    response = api_client.get(LIST, {"limit": "1"}, HTTP_HOST="localhost:8080")

    assert next_url(response).startswith("http://localhost:8080/api/tickets?limit=1&cursor=")


def test_the_next_link_follows_the_gateway_forwarded_host_and_scheme(api_client, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "tickets.example.com"]
    make_tickets(2)

    response = api_client.get(
        LIST,
        {"limit": "1"},
        HTTP_X_FORWARDED_HOST="tickets.example.com:8443",
        HTTP_X_FORWARDED_PROTO="https",
    )

    assert next_url(response).startswith(
        "https://tickets.example.com:8443/api/tickets?limit=1&cursor="
    )


def test_list_with_a_trailing_slash(api_client):
    [ticket] = make_tickets(1)

    response = api_client.get(LIST + "/")

    assert response.status_code == 200
    assert listed_ids(response) == [str(ticket.id)]


# --- GET /api/tickets/<id> -------------------------------------------------------------


def test_show_a_ticket(api_client):
    ticket = make_ticket(title="Opera", price="99.90")

    response = api_client.get(detail(ticket.id))

    assert response.status_code == 200
    assert response.json() == {
        "id": str(ticket.id),
        "title": "Opera",
        "price": 99.9,
        "userId": str(ticket.user_id),
        "version": 0,
        "orderId": None,
        "status": "available",
    }


def test_show_a_reserved_ticket_with_its_order(api_client):
    order_id = uuid.uuid4()
    ticket = make_ticket(order_id=order_id, version=1)

    response = api_client.get(detail(ticket.id))

    assert response.status_code == 200
    assert response.json()["orderId"] == str(order_id)
    assert response.json()["version"] == 1
    assert response.json()["status"] == "reserved"


@pytest.mark.parametrize("suffix", ["/", ""])
def test_show_answers_with_or_without_a_trailing_slash_and_never_redirects(api_client, suffix):
    ticket = make_ticket()

    response = api_client.get(detail(ticket.id) + suffix)

    assert response.status_code == 200
    assert response.json()["id"] == str(ticket.id)


def test_show_accepts_an_upper_case_id(api_client):
    ticket = make_ticket()

    response = api_client.get(detail(str(ticket.id).upper()))

    assert response.status_code == 200
    assert response.json()["id"] == str(ticket.id)


@pytest.mark.parametrize(
    "ticket_id", [uuid.uuid4(), "not-a-uuid", "123", f"{uuid.uuid4()}x", f"{uuid.uuid4()}/extra"]
)
def test_show_unknown_or_malformed_id_is_404(api_client, ticket_id):
    make_ticket()

    response = api_client.get(detail(ticket_id))

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


# --- PUT /api/tickets/<id> -------------------------------------------------------------

EDIT = {"title": "  Edited  ", "price": "25"}


def assert_unchanged(ticket):
    row = Ticket.objects.get(id=ticket.id)
    assert (row.title, row.price, row.version, row.order_id) == (
        ticket.title,
        ticket.price,
        ticket.version,
        ticket.order_id,
    )
    assert OutboxEvent.objects.count() == 0


def test_update_by_the_owner(seller):
    ticket = make_ticket(user_id=seller.user_id)

    response = seller.put(detail(ticket.id), EDIT, format="json")

    assert response.status_code == 200
    assert response.json() == {
        "id": str(ticket.id),
        "title": "Edited",
        "price": 25.0,
        "userId": seller.user_id,
        "version": 1,
        "orderId": None,
        "status": "available",
    }
    row = Ticket.objects.get(id=ticket.id)
    assert (row.title, row.price, row.version, row.order_id) == (
        "Edited",
        Decimal("25.00"),
        1,
        None,
    )
    assert row.updated_at > ticket.updated_at
    assert published() == [
        (
            "ticket.updated",
            {
                "id": str(ticket.id),
                "version": 1,
                "title": "Edited",
                "price": "25.00",
                "userId": seller.user_id,
                "orderId": None,
                "onSale": True,
            },
        )
    ]


def test_every_update_adds_one_to_the_version(seller):
    ticket = make_ticket(user_id=seller.user_id)

    first = seller.put(detail(ticket.id), {"title": "A", "price": 1}, format="json")
    second = seller.put(detail(ticket.id) + "/", {"title": "A", "price": 1}, format="json")

    assert (first.json()["version"], second.json()["version"]) == (1, 2)
    assert [data["version"] for _, data in published()] == [1, 2]


def test_update_requires_sign_in(api_client):
    ticket = make_ticket()

    response = api_client.put(detail(ticket.id), EDIT, format="json")

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))
    assert_unchanged(ticket)


def test_update_requires_sign_in_before_anything_else(api_client):
    response = api_client.put(detail(uuid.uuid4()), {"title": "", "price": -1}, format="json")

    assert response.status_code == 401
    assert response.json() == errors((NOT_AUTHORIZED,))


@pytest.mark.parametrize("attack", ["alg-none", "another-ed25519-key", "expired"])
def test_update_with_a_forged_token_is_401(api_client, session_keys, attack):
    ticket = make_ticket(user_id=ALICE)  # whom the forged tokens claim to be
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {ATTACKS[attack](session_keys)}")

    response = api_client.put(detail(ticket.id), EDIT, format="json")

    assert response.status_code == 401
    assert_unchanged(ticket)


@pytest.mark.parametrize(
    "ticket_id", [uuid.uuid4(), "not-a-uuid", "123", f"{uuid.uuid4()}x"], ids=str
)
def test_update_unknown_or_malformed_id_is_404(seller, ticket_id):
    make_ticket(user_id=seller.user_id)

    response = seller.put(detail(ticket_id), EDIT, format="json")

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))
    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body", [{"title": "", "price": -1}, {"title": 5, "price": True}, []], ids=str
)
def test_update_unknown_ticket_is_404_even_with_invalid_input(seller, body):
    response = seller.put(detail(uuid.uuid4()), body, format="json")

    assert response.status_code == 404
    assert response.json() == errors((NOT_FOUND,))


@pytest.mark.parametrize(
    ("reserved", "body"),
    [
        (False, EDIT),
        (True, EDIT),  # ownership is checked before the lock: nothing leaks about it
        (False, {"title": "", "price": "-1"}),  # 403 before 400
        (True, {"title": "", "price": "-1"}),
        (False, {"title": 5, "price": True}),  # wrong types too
    ],
)
def test_update_by_someone_else_is_403(seller, buyer, reserved, body):
    ticket = make_ticket(user_id=seller.user_id, order_id=uuid.uuid4() if reserved else None)

    response = buyer.put(detail(ticket.id), body, format="json")

    assert response.status_code == 403
    assert response.json() == errors((FORBIDDEN,))
    assert_unchanged(ticket)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"title": "  ", "price": "25"}, [(services.TITLE_REQUIRED, "title")]),
        ({"title": "t" * 201, "price": "25"}, [(services.TITLE_TOO_LONG, "title")]),
        ({"title": "Edited", "price": "0"}, [(services.PRICE_POSITIVE, "price")]),
        ({"title": "Edited"}, [(services.PRICE_POSITIVE, "price")]),
        ({"title": "Edited", "price": "20.555"}, [(services.PRICE_DECIMALS, "price")]),
        ({"title": "Edited", "price": 1000000}, [(services.PRICE_TOO_HIGH, "price")]),
        ({"title": "Edited", "price": "0.49"}, [(services.PRICE_TOO_LOW, "price")]),
        (
            {"price": True},
            [(services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")],
        ),
    ],
)
def test_update_by_the_owner_with_invalid_input(seller, body, expected):
    ticket = make_ticket(user_id=seller.user_id)

    response = seller.put(detail(ticket.id), body, format="json")

    assert response.status_code == 400
    assert response.json() == errors(*expected)
    assert_unchanged(ticket)


def test_update_of_a_reserved_ticket_is_refused(seller):
    ticket = make_ticket(user_id=seller.user_id, order_id=uuid.uuid4(), version=1)

    response = seller.put(detail(ticket.id), EDIT, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.TICKET_RESERVED,))
    assert_unchanged(ticket)


def test_update_of_a_reserved_ticket_with_invalid_input_reports_the_input(seller):
    ticket = make_ticket(user_id=seller.user_id, order_id=uuid.uuid4(), version=1)

    response = seller.put(detail(ticket.id), {"title": "Edited", "price": "0"}, format="json")

    assert response.status_code == 400
    assert response.json() == errors((services.PRICE_POSITIVE, "price"))
    assert_unchanged(ticket)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"title": "Edited", "price": 2', [(MALFORMED_JSON,)]),
        ("[]", [(services.TITLE_REQUIRED, "title"), (services.PRICE_POSITIVE, "price")]),
    ],
)
def test_update_by_the_owner_with_a_bad_body(seller, text, expected):
    ticket = make_ticket(user_id=seller.user_id)

    response = raw_json(seller, "put", detail(ticket.id), text)

    assert response.status_code == 400
    assert response.json() == errors(*expected)
    assert_unchanged(ticket)


def test_update_by_someone_else_with_a_non_object_body_is_still_403(seller, buyer):
    ticket = make_ticket(user_id=seller.user_id)

    response = raw_json(buyer, "put", detail(ticket.id), "[]")

    assert response.status_code == 403
    assert_unchanged(ticket)


@pytest.mark.parametrize("text", ['"Edited"', '{"title": "Edited", "price": 2'], ids=str)
def test_an_unknown_ticket_is_404_and_someone_elses_403_whatever_the_body(seller, buyer, text):
    ticket = make_ticket(user_id=seller.user_id)

    unknown = raw_json(buyer, "put", detail(uuid.uuid4()), text)
    not_theirs = raw_json(buyer, "put", detail(ticket.id), text)

    assert (unknown.status_code, unknown.json()) == (404, errors((NOT_FOUND,)))
    assert (not_theirs.status_code, not_theirs.json()) == (403, errors((FORBIDDEN,)))
    assert_unchanged(ticket)


def test_update_refuses_non_json_bodies(seller):
    ticket = make_ticket(user_id=seller.user_id)

    response = seller.put(
        detail(ticket.id), "title=x&price=1", content_type="application/x-www-form-urlencoded"
    )

    assert response.status_code == 415
    assert response.json() == errors((UNSUPPORTED_MEDIA_TYPE,))
    assert_unchanged(ticket)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", LIST, "GET, POST, HEAD, OPTIONS"),
        ("delete", "/api/tickets/0b7e6f5c-2f4e-4c8e-9d57-5a3f1d8e6a01", "GET, PUT, HEAD, OPTIONS"),
        ("patch", "/api/tickets/0b7e6f5c-2f4e-4c8e-9d57-5a3f1d8e6a01", "GET, PUT, HEAD, OPTIONS"),
    ],
)
def test_wrong_method_is_405(seller, method, path, allowed):
    assert_method_not_allowed(seller, method, path, allowed)

    assert OutboxEvent.objects.count() == 0


@pytest.mark.parametrize("path", ["/api/tickets/nope/extra", "/api/ticketsx", "/nothing"])
def test_unknown_routes_are_json_404(api_client, path):
    assert_unknown_route_is_json_404(api_client, path)


# --- admin, docs, health ---------------------------------------------------------------


def test_admin_lives_under_its_own_prefix(client):
    assert_admin_sends_anonymous_to_sign_in(client, "/admin/tickets/")
    assert client.get("/admin/tickets/login/").status_code == 200


def test_staff_sign_on_views_every_admin_page_read_only(staff_admin_client):
    checked = assert_staff_views_every_model_read_only(staff_admin_client, "/admin/tickets/")

    assert set(checked) >= {"tickets.Ticket", "shared_lib.OutboxEvent", "auth.User"}


def test_openapi_schema_documents_the_routes(api_client):
    response = api_client.get("/api/tickets/schema", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {"/api/tickets", "/api/tickets/mine", "/api/tickets/{ticket_id}"}
    assert set(paths["/api/tickets/mine"]) == {"get"}
    assert set(paths["/api/tickets"]) >= {"get", "post"}
    assert set(paths["/api/tickets/{ticket_id}"]) >= {"get", "put"}
    assert {p["name"] for p in paths["/api/tickets"]["get"]["parameters"]} == {
        "limit",
        "cursor",
        "q",
        "minPrice",
        "maxPrice",
    }


TITLES = [
    *("Concert", "  Concert \n", "a b", "", "   ", "t" * 200, f" {'t' * 200}\t", "t" * 201),
    # Whitespace runs count as one space; control characters are refused.
    *("a" + " \n\t" * 150 + "b", "t" * 100 + "   " + "t" * 99, "t" * 100 + "   " + "t" * 100),
    *("Opera \u202e99", "Opera\x07", "Opera\x7f", "Opera\x90", "\u2067x", "a\u200db"),
]
PRICE_TEXTS = [
    *("20", "20.5", "20.50", "20.500", " +007.10 ", "0.50", "0.5", "00.5", "0.99", "999999.99"),
    *("0", "0.00", "-1", "+-1", "0.001", "20.555", "1000000", "1e3", "5.", ".5", "1,000", ""),
    *("0.01", "0.10", "0.49", "0.490", "00.4"),
]


def test_the_schema_states_exactly_what_the_body_takes(api_client):
    schema = api_client.get("/api/tickets/schema", HTTP_ACCEPT="application/json").json()

    for path, method in (("/api/tickets", "post"), ("/api/tickets/{ticket_id}", "put")):
        content = schema["paths"][path][method]["requestBody"]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/TicketInputRequest"}
    body = schema["components"]["schemas"]["TicketInputRequest"]
    assert sorted(body["required"]) == ["price", "title"]
    number, text = body["properties"]["price"]["oneOf"]
    assert number == {
        "type": "number",
        "minimum": 0.5,
        "maximum": 1000000,
        "exclusiveMaximum": True,
        "multipleOf": 0.01,
    }
    # The patterns accept exactly the strings the serializer does (JSON Schema patterns
    # search, as re.search does), but for one rule a pattern cannot state portably, which
    # the title's description says: a title of only characters that show nothing (such
    # as "\u200b") matches the pattern and is refused.
    for title in TITLES:
        taken = TicketInputSerializer(data={"title": title, "price": 1}).is_valid()
        assert bool(re.search(body["properties"]["title"]["pattern"], title)) is taken, title
    for price in PRICE_TEXTS:
        taken = TicketInputSerializer(data={"title": "t", "price": price}).is_valid()
        assert bool(re.search(text["pattern"], price)) is taken, price


@pytest.mark.parametrize("title", [*TITLES, None, 5, True, ["t"]])
@pytest.mark.parametrize(
    "price",
    [*PRICE_TEXTS, None, True, 7, 0, Decimal("20.555"), Decimal("1E+400"), Decimal("2.05E+1")],
)
def test_the_body_is_judged_exactly_as_ticket_services_judge_it(title, price):
    # The fields judge by the services' rules, and what DRF refuses before asking them
    # (missing, null, blank) it refuses in the rules' words: they agree.
    serializer = TicketInputSerializer(data={"title": title, "price": price})
    valid = serializer.is_valid()
    verdict = (
        (serializer.validated_data["title"], serializer.validated_data["price"]) if valid else None,
        {
            field: [str(message) for message in messages]
            for field, messages in serializer.errors.items()
        },
    )

    assert verdict == service_verdict(title, price)


def service_verdict(title, price):
    try:
        return services.validate_ticket_input(title=title, price=price), {}
    except InvalidInput as exc:
        return None, {field: [message] for message, field in exc.errors}


def test_docs_page(api_client):
    response = api_client.get("/api/tickets/docs")

    assert response.status_code == 200
    assert b"/static/tickets/drf_spectacular_sidecar/" in response.content


def test_liveness(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_checks_the_database_not_the_broker(client):
    assert_ready_on_the_database_alone(client)

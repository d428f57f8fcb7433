"""The JSON every ticket endpoint answers (ticket_json) is what the OpenAPI schema says
(TicketOutputSerializer documents it): the same for a list row and a model instance."""

import json
import uuid

import pytest
from django.utils import timezone
from rest_framework.renderers import JSONRenderer

from tests.factories import make_ticket
from tickets.apis import TICKET_FIELDS, TicketOutputSerializer, ticket_json
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def _rendered(data):
    return json.loads(JSONRenderer().render(data))


NOW = timezone.now()


@pytest.mark.parametrize(
    ("order_id", "sold_at", "withdrawn_at", "status"),
    [
        (None, None, None, "available"),
        (uuid.uuid4(), None, None, "reserved"),
        (uuid.uuid4(), NOW, None, "sold"),
        (None, None, NOW, "withdrawn"),
        (uuid.uuid4(), None, NOW, "reserved"),  # an order that raced the withdrawal
        (uuid.uuid4(), NOW, NOW, "sold"),
    ],
    ids=["free", "reserved", "sold", "withdrawn", "withdrawn-reserved", "withdrawn-sold"],
)
def test_a_ticket_renders_as_its_serializer_documents_it(order_id, sold_at, withdrawn_at, status):
    ticket = make_ticket(
        title="Front row",
        price="1234.50",
        order_id=order_id,
        version=3,
        sold_at=sold_at,
        withdrawn_at=withdrawn_at,
    )
    [row] = Ticket.objects.filter(id=ticket.id).values(*TICKET_FIELDS)

    documented = _rendered(TicketOutputSerializer(ticket).data)

    assert _rendered(ticket_json(row)) == documented
    assert _rendered(ticket_json(vars(ticket))) == documented
    assert list(documented) == ["id", "title", "price", "userId", "version", "orderId", "status"]
    assert documented["status"] == status
    assert documented["price"] == 1234.5

"""The JSON every ticket endpoint answers (ticket_json) is what the OpenAPI schema says
(TicketOutputSerializer documents it): the same for a list row and a model instance."""

import json
import uuid

import pytest
from rest_framework.renderers import JSONRenderer

from tests.factories import make_ticket
from tickets.apis import TICKET_FIELDS, TicketOutputSerializer, ticket_json
from tickets.models import Ticket

pytestmark = pytest.mark.django_db


def _rendered(data):
    return json.loads(JSONRenderer().render(data))


@pytest.mark.parametrize("order_id", [None, uuid.uuid4()], ids=["free", "reserved"])
def test_a_ticket_renders_as_its_serializer_documents_it(order_id):
    ticket = make_ticket(title="Front row", price="1234.50", order_id=order_id, version=3)
    [row] = Ticket.objects.filter(id=ticket.id).values(*TICKET_FIELDS)

    documented = _rendered(TicketOutputSerializer(ticket).data)

    assert _rendered(ticket_json(row)) == documented
    assert _rendered(ticket_json(vars(ticket))) == documented
    assert list(documented) == ["id", "title", "price", "userId", "version", "orderId"]
    assert documented["price"] == 1234.5

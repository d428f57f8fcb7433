"""The JSON every order endpoint answers (order_json) is what the OpenAPI schema says
(OrderOutputSerializer documents it): the same for a list row and a model instance."""

import json

import pytest
from rest_framework.renderers import JSONRenderer

from orders.apis import ORDER_FIELDS, OrderOutputSerializer, _order_row, order_json
from orders.models import Order
from tests.factories import order_row, ticket_replica

pytestmark = pytest.mark.django_db


def _rendered(data):
    return json.loads(JSONRenderer().render(data))


@pytest.mark.parametrize("status", [s.value for s in Order.Status])
def test_an_order_renders_as_its_serializer_documents_it(status):
    order = order_row(ticket=ticket_replica(), status=status, version=2, price="17.35")
    order = Order.objects.select_related("ticket").get(id=order.id)
    [row] = Order.objects.filter(id=order.id).values(*ORDER_FIELDS)

    documented = _rendered(OrderOutputSerializer(order).data)

    assert _rendered(order_json(row)) == documented
    assert _rendered(order_json(_order_row(order))) == documented
    assert list(documented) == ["id", "userId", "status", "expiresAt", "ticket", "version"]
    assert documented["expiresAt"].endswith("Z")
    assert documented["ticket"]["price"] == 17.35

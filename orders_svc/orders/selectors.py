import uuid

from django.db.models import QuerySet

from orders.models import Order


def order_list_for(*, user_id: uuid.UUID) -> QuerySet[Order]:
    return Order.objects.filter(user_id=user_id).select_related("ticket")


def order_get_for(*, order_id: uuid.UUID, user_id: uuid.UUID) -> Order | None:
    """The caller's order, or None: someone else's order is as unknown as a missing one."""
    return Order.objects.select_related("ticket").filter(id=order_id, user_id=user_id).first()

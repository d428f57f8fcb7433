from django.contrib import admin

from orders import services
from orders.models import Order, TicketReplica
from shared_lib.admin import ReadOnlyAdmin, staff_action
from shared_lib.staff import Actor


def _cancel(order: Order, actor: Actor) -> str:
    if services.order_cancel_by_staff(order_id=order.id, actor=actor):
        return "cancelled"
    return "was cancelled already"


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "ticket", "user_id", "expires_at", "version", "created_at"]
    list_filter = ["status", "created_at", "expires_at"]
    search_fields = ["=id", "=user_id", "=ticket__id", "ticket__title"]
    list_select_related = ["ticket"]
    date_hierarchy = "created_at"
    actions = [
        staff_action(
            permission="orders.cancel_order",
            description="Cancel the selected unpaid orders",
            apply=_cancel,
        )
    ]


@admin.register(TicketReplica)
class TicketReplicaAdmin(ReadOnlyAdmin):
    list_display = ["title", "price", "on_sale", "version", "user_id", "id", "updated_at"]
    search_fields = ["title", "=id", "=user_id"]

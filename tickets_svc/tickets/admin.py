from django.contrib import admin

from shared_lib.admin import ReadOnlyAdmin, staff_action
from shared_lib.staff import Actor
from tickets import services
from tickets.models import Ticket


def _withdraw(ticket: Ticket, actor: Actor) -> str:
    if not services.ticket_withdraw_by_staff(ticket_id=ticket.id, actor=actor):
        return "was off sale already"
    # An order orders_svc takes before it hears of this may still hold it, and complete.
    if Ticket.objects.filter(id=ticket.id, order_id__isnull=False).exists():
        return "off sale; the order holding it may still complete"
    return "off sale"


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"
    STATUSES = {
        "available": {"order_id__isnull": True, "withdrawn_at__isnull": True},
        "reserved": {"order_id__isnull": False, "sold_at__isnull": True},
        "sold": {"sold_at__isnull": False},
        "withdrawn": {"order_id__isnull": True, "withdrawn_at__isnull": False},
    }

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201 (Django's signature)
        return [
            ("available", "For sale"),
            ("reserved", "Reserved"),
            ("sold", "Sold"),
            ("withdrawn", "Off sale"),
        ]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        lookup = self.STATUSES.get(self.value() or "")
        return queryset if lookup is None else queryset.filter(**lookup)


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = ["title", "price", "status", "version", "user_id", "order_id", "created_at"]
    list_filter = [StatusFilter, "created_at"]
    search_fields = ["title", "=id", "=user_id", "=order_id"]
    readonly_fields = [
        "id",
        "user_id",
        "order_id",
        "sold_at",
        "withdrawn_at",
        "version",
        "created_at",
        "updated_at",
    ]
    date_hierarchy = "created_at"
    actions = [
        staff_action(
            permission="tickets.withdraw_ticket",
            description="Take the selected tickets off sale",
            apply=_withdraw,
        )
    ]

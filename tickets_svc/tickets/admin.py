from django.contrib import admin

from shared_lib.admin import ReadOnlyAdmin
from tickets.models import Ticket


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"
    STATUSES = {
        "available": {"order_id__isnull": True},
        "reserved": {"order_id__isnull": False, "sold_at__isnull": True},
        "sold": {"sold_at__isnull": False},
    }

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201 (Django's signature)
        return [("available", "For sale"), ("reserved", "Reserved"), ("sold", "Sold")]

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
        "version",
        "created_at",
        "updated_at",
    ]
    date_hierarchy = "created_at"

from django.contrib import admin

from shared_lib.admin import ReadOnlyAdmin
from tickets.models import Ticket


class ReservedFilter(admin.SimpleListFilter):
    title = "reserved"
    parameter_name = "reserved"

    def lookups(self, request, model_admin):  # noqa: ANN001, ANN201 (Django's signature)
        return [("yes", "Reserved"), ("no", "For sale")]

    def queryset(self, request, queryset):  # noqa: ANN001, ANN201
        if self.value() == "yes":
            return queryset.filter(order_id__isnull=False)
        if self.value() == "no":
            return queryset.filter(order_id__isnull=True)
        return queryset


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdmin):
    list_display = ["title", "price", "is_reserved", "version", "user_id", "order_id", "created_at"]
    list_filter = [ReservedFilter, "created_at"]
    search_fields = ["title", "=id", "=user_id", "=order_id"]
    readonly_fields = ["id", "user_id", "order_id", "version", "created_at", "updated_at"]
    date_hierarchy = "created_at"

    @admin.display(boolean=True, description="reserved")
    def is_reserved(self, obj: Ticket) -> bool:
        return obj.is_reserved

from django.contrib import admin

from orders.models import Order, TicketReplica


class ReadOnlyAdmin(admin.ModelAdmin):
    """Changes go through services (which publish events); the admin only shows."""

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "status", "ticket", "user_id", "expires_at", "version", "created_at"]
    list_filter = ["status", "created_at", "expires_at"]
    search_fields = ["=id", "=user_id", "=ticket__id", "ticket__title"]
    list_select_related = ["ticket"]
    date_hierarchy = "created_at"


@admin.register(TicketReplica)
class TicketReplicaAdmin(ReadOnlyAdmin):
    list_display = ["title", "price", "version", "user_id", "id", "updated_at"]
    search_fields = ["title", "=id", "=user_id"]

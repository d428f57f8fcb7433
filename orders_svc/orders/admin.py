from django.contrib import admin

from orders.models import Order, TicketReplica
from shared_lib.admin import ReadOnlyAdmin


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

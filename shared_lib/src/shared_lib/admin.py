"""Admin views of the event bus tables, and the read-only base every service's admin uses.

@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):   # rows change only through services (and events)
    list_display = [...]
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from shared_lib.models import AggregateVersion, InboxMessage, OutboxEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """Changes go through services, which publish their events; an edit here would not,
    and other services' replicas would silently drift. The admin shows, it does not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "subject", "id", "sent_at", "attempts", "correlation_id"]
    list_filter = ["subject", ("sent_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["=id", "=correlation_id"]
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]
    date_hierarchy = "created_at"


@admin.register(InboxMessage)
class InboxMessageAdmin(ReadOnlyAdmin):
    list_display = ["processed_at", "consumer", "subject", "message_id", "correlation_id"]
    list_filter = ["consumer", "subject", "processed_at"]
    search_fields = ["=message_id", "=correlation_id"]
    readonly_fields = [field.name for field in InboxMessage._meta.fields]


@admin.register(AggregateVersion)
class AggregateVersionAdmin(ReadOnlyAdmin):
    list_display = ["aggregate", "aggregate_id", "version", "updated_at"]
    list_filter = ["aggregate"]
    search_fields = ["=aggregate_id"]
    readonly_fields = [field.name for field in AggregateVersion._meta.fields]

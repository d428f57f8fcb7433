from django.contrib import admin

from shared_lib.models import AggregateVersion, InboxMessage, OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "subject", "id", "sent_at", "attempts", "correlation_id"]
    list_filter = ["subject", ("sent_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["=id", "=correlation_id"]
    readonly_fields = [field.name for field in OutboxEvent._meta.fields]
    date_hierarchy = "created_at"


@admin.register(InboxMessage)
class InboxMessageAdmin(admin.ModelAdmin):
    list_display = ["processed_at", "consumer", "subject", "message_id", "correlation_id"]
    list_filter = ["consumer", "subject", "processed_at"]
    search_fields = ["=message_id", "=correlation_id"]
    readonly_fields = [field.name for field in InboxMessage._meta.fields]


@admin.register(AggregateVersion)
class AggregateVersionAdmin(admin.ModelAdmin):
    list_display = ["aggregate", "aggregate_id", "version", "updated_at"]
    list_filter = ["aggregate"]
    search_fields = ["=aggregate_id"]
    readonly_fields = [field.name for field in AggregateVersion._meta.fields]

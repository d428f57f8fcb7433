"""Admin views of the event bus tables, and the read-only base every service's admin uses.

@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):   # rows change only through services (and events)
    list_display = [...]
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from shared_lib.errors import ApplicationError
from shared_lib.models import (
    AggregateVersion,
    InboxMessage,
    OutboxEvent,
    OutgoingEmail,
    StaffAction,
)
from shared_lib.staff import Actor


class ReadOnlyAdmin(admin.ModelAdmin):
    """Changes go through services, which publish their events; an edit here would not,
    and other services' replicas would silently drift. The admin shows, it does not edit."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Staff actions (staff_action) are offered only to who holds their permission.
        return {
            name: entry
            for name, entry in super().get_actions(request).items()
            if request.user.has_perm(getattr(entry[0], "required_permission", ""))
            or not hasattr(entry[0], "required_permission")
        }


# Rows one staff action may touch in one request: each is a transaction of its own, and a
# whole filtered list ("select all") must not outlast the gateway's timeout.
STAFF_ACTION_MAX_ROWS = 50


def staff_action(
    *, permission: str, description: str, apply: Callable[[Any, Actor], str]
) -> Callable[[admin.ModelAdmin, HttpRequest, QuerySet], None]:
    """An admin action that has the owning service do something to each selected row as
    the signed-in staff member: `apply(row, actor)` calls a services.py function and says
    what it did (an ApplicationError: what it refused). Offered to, and run for, holders of
    `permission` ("orders.cancel_order") only; a refused row gets its message, and the
    other rows go on. At most STAFF_ACTION_MAX_ROWS rows at a time."""

    def action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.has_perm(permission):
            raise PermissionDenied
        rows = list(queryset[: STAFF_ACTION_MAX_ROWS + 1])
        if len(rows) > STAFF_ACTION_MAX_ROWS:
            modeladmin.message_user(
                request,
                f"Select at most {STAFF_ACTION_MAX_ROWS} rows at a time; nothing was done.",
                messages.ERROR,
            )
            return
        actor = Actor.of(request.user)
        for row in rows:
            try:
                done = apply(row, actor)
            except ApplicationError as refused:
                modeladmin.message_user(request, f"{row}: {refused.message}", messages.WARNING)
            else:
                row.refresh_from_db()  # named as it is now
                modeladmin.message_user(request, f"{row}: {done}", messages.SUCCESS)

    action.__name__ = permission.rpartition(".")[2]  # the admin's key for the action
    action.required_permission = permission  # type: ignore[attr-defined]
    action.short_description = description  # type: ignore[attr-defined]
    return action


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


@admin.register(StaffAction)
class StaffActionAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "target", "actor_name", "actor_id"]
    list_filter = ["action", "at"]
    search_fields = ["=target", "=actor_id", "actor_name"]
    readonly_fields = [field.name for field in StaffAction._meta.fields]
    date_hierarchy = "at"


@admin.register(OutgoingEmail)
class OutgoingEmailAdmin(ReadOnlyAdmin):
    """Unsent rows with attempts are what to look at: last_error says what SMTP answered
    (given up: the address was refused for good). The body is never shown: it may hold a
    password reset link."""

    list_display = [
        "created_at",
        "key",
        "to",
        "subject",
        "sent_at",
        "given_up_at",
        "attempts",
        "last_error",
    ]
    list_filter = [
        ("sent_at", admin.EmptyFieldListFilter),
        ("given_up_at", admin.EmptyFieldListFilter),
        "created_at",
    ]
    search_fields = ["=key", "to"]
    fields = readonly_fields = [f.name for f in OutgoingEmail._meta.fields if f.name != "body"]

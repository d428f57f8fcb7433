"""Staff actions: what a person does from an admin, done by the owning service.

An admin never edits rows (shared_lib.admin.ReadOnlyAdmin): a staff action calls a function
of the service's services.py, which changes what it owns, publishes the events that change
implies and, in the same transaction, records who did it (record_staff_action). The admin
side is one helper, shared_lib.admin.staff_action, gated by a Django permission that a
local superuser grants (to a user's row or a group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared_lib.models import StaffAction


@dataclass(frozen=True)
class Actor:
    """The staff member acting: their admin username (for single sign-on staff, their
    auth_svc user id) and what to show of them."""

    id: str
    name: str

    @classmethod
    def of(cls, user: Any) -> Actor:
        """The actor for a Django user row (an admin request's request.user)."""
        return cls(id=user.get_username(), name=getattr(user, "email", "") or user.get_username())


def record_staff_action(
    actor: Actor, *, action: str, target: object, detail: dict[str, Any] | None = None
) -> StaffAction:
    """Record `actor` doing `action` to `target` (inside the caller's transaction)."""
    return StaffAction.objects.create(
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        target=str(target),
        detail=detail or {},
    )

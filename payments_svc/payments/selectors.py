"""Reads of payments' own tables."""

from __future__ import annotations

import uuid

from payments.models import OrderReplica


def order_exists_for(*, order_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Whether `user_id` has this order: someone else's is as unknown as a missing one."""
    return OrderReplica.objects.filter(id=order_id, user_id=user_id).exists()

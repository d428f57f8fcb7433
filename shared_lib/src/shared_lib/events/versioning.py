"""Applying another service's events in each aggregate's version order (DESIGN.md §4).

    # a replica: a local copy of another service's aggregate, with its `version`
    outcome = apply_to_replica(TicketReplica, id=data.id, version=data.version,
                               fields={"title": data.title, "price": data.price})
    # any other reaction to an aggregate's events (no replica row of its own)
    if claim_version("order", id=data.id, version=data.version): lock_ticket(...)

Versions start at 0 and go up by one per change. An event for version v applies only on
top of v - 1; one at or below what is applied is a redelivery (skipped); one further
ahead raises NotYet, so the message comes back after a delay until its predecessor has
arrived (events of one aggregate travel on several queues and can overtake each other).
Both helpers lock the row they read; call them inside the handler's transaction.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any

from django.db import IntegrityError, models, transaction

from shared_lib.events.registry import NotYet
from shared_lib.models import AggregateVersion

FIRST_VERSION = 0


class Applied(Enum):
    CREATED = "created"
    UPDATED = "updated"
    STALE = "stale"  # already applied (a redelivery or an older event): nothing done


def apply_to_replica(
    model: type[models.Model], *, id: uuid.UUID, version: int, fields: dict[str, Any]
) -> Applied:
    """Create or update the replica row `id` with `fields` at `version`, in order."""
    row = model.objects.select_for_update().filter(pk=id).first()
    if row is None:
        if version != FIRST_VERSION:
            raise NotYet(f"{model.__name__} {id}: v{version} before v{FIRST_VERSION}")
        try:
            with transaction.atomic():
                model.objects.create(pk=id, version=version, **fields)
        except IntegrityError:
            # Another delivery created it a moment ago; come back and compare versions.
            raise NotYet(f"{model.__name__} {id}: created concurrently") from None
        return Applied.CREATED
    current = row.version
    if version <= current:
        return Applied.STALE
    if version != current + 1:
        raise NotYet(f"{model.__name__} {id}: v{version} on top of v{current}")
    for name, value in fields.items():
        setattr(row, name, value)
    row.version = version
    touched = [f.name for f in model._meta.concrete_fields if getattr(f, "auto_now", False)]
    row.save(update_fields=[*fields, "version", *touched])
    return Applied.UPDATED


def claim_version(aggregate: str, *, id: uuid.UUID, version: int) -> bool:
    """Record that `version` of the aggregate applies now: True to go ahead, False if done.

    Raises NotYet when an earlier version has not been applied yet. The record commits or
    rolls back with the caller's transaction, so a failed handler claims nothing.
    """
    AggregateVersion.objects.bulk_create(
        [AggregateVersion(aggregate=aggregate, aggregate_id=id, version=FIRST_VERSION - 1)],
        ignore_conflicts=True,
    )
    row = AggregateVersion.objects.select_for_update().get(aggregate=aggregate, aggregate_id=id)
    if version <= row.version:
        return False
    if version != row.version + 1:
        raise NotYet(f"{aggregate} {id}: v{version} on top of v{row.version}")
    row.version = version
    row.save(update_fields=["version", "updated_at"])
    return True

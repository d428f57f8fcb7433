"""Applying another service's events in each aggregate's version order (docs/events.md).

    # a replica: a local copy of another service's aggregate, with its `version`
    outcome = apply_to_replica(TicketReplica, id=data.id, version=data.version,
                               fields={"title": data.title, "price": data.price})
    # any other reaction to an aggregate's events (no replica row of its own)
    if claim_version("order", id=data.id, version=data.version): lock_ticket(...)

Versions start at 0 and go up by one per change. An event for version v applies only on
top of v - 1; one at or below what is applied is a redelivery (skipped); one further
ahead raises NotYet, so the message comes back after a delay until its predecessor has
arrived (events of one aggregate travel on several queues and can overtake each other).
Both change the row in one statement on the common path, which locks it until the
handler's transaction ends; call them inside that transaction.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any

from django.db import connection, models
from django.utils import timezone

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
    if version == FIRST_VERSION:
        created = _insert_if_absent(model(pk=id, version=version, **fields))
        # A row already there holds this version or a later one: a redelivery.
        return Applied.CREATED if created else Applied.STALE
    touched = {
        f.name: timezone.now() for f in model._meta.concrete_fields if getattr(f, "auto_now", False)
    }
    # One statement on the common path: it moves the row from v - 1 to v, or nothing.
    # A concurrent delivery of the same version waits on the row lock, then finds v.
    if model._base_manager.filter(pk=id, version=version - 1).update(
        **fields, **touched, version=version
    ):
        return Applied.UPDATED
    current = model._base_manager.filter(pk=id).values_list("version", flat=True).first()
    if current is None:
        raise NotYet(f"{model.__name__} {id}: v{version} before v{FIRST_VERSION}")
    if version <= current:
        return Applied.STALE
    raise NotYet(f"{model.__name__} {id}: v{version} on top of v{current}")


def _insert_if_absent(row: models.Model) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING: whether the row went in (a row with its key is
    there otherwise). A concurrent insert of the key makes this wait for it to commit."""
    meta = row._meta
    fields = [
        f
        for f in meta.concrete_fields
        if not f.generated and not (f.db_returning and getattr(row, f.attname) is None)
    ]
    quote = connection.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(row, True), connection) for f in fields]
    # Names from the model's own metadata, values as parameters.
    table, columns = quote(meta.db_table), ", ".join(quote(f.column) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"  # noqa: S608
    sql += " ON CONFLICT DO NOTHING RETURNING 1"
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.fetchone() is not None


def claim_version(aggregate: str, *, id: uuid.UUID, version: int) -> bool:
    """Record that `version` of the aggregate applies now: True to go ahead, False if done.

    Raises NotYet when an earlier version has not been applied yet. The record commits or
    rolls back with the caller's transaction, so a failed handler claims nothing; the row
    stays locked until then, so claims of one aggregate take turns.
    """
    claims = AggregateVersion.objects.filter(aggregate=aggregate, aggregate_id=id)
    if claims.filter(version=version - 1).update(version=version, updated_at=timezone.now()):
        return True
    if version == FIRST_VERSION and _insert_if_absent(
        AggregateVersion(aggregate=aggregate, aggregate_id=id, version=version)
    ):
        return True
    current = claims.values_list("version", flat=True).first()
    if current is None:
        current = FIRST_VERSION - 1
    if version <= current:
        return False
    raise NotYet(f"{aggregate} {id}: v{version} on top of v{current}")

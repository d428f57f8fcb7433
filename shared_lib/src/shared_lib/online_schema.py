"""Migration operations that change a busy table without stopping its traffic."""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently


def _built(schema_editor: Any, model: Any, name: str) -> bool:
    """Whether a valid index `name` on `model`'s table exists. An invalid one (what a
    concurrent build that failed leaves) is dropped, so that it can be built again."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid"
            " WHERE c.relname = %s AND i.indrelid = %s::regclass",
            [name, schema_editor.quote_name(model._meta.db_table)],
        )
        found = cursor.fetchone()
    if found is not None and not found[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
    return found is not None and found[0]


def _to_build(operation: Any, app_label: str, schema_editor: Any, to_state: Any, name: str) -> bool:
    """Whether `operation` is to build the index `name`: Django's own guards pass (no
    transaction, the router's say) and no valid index of that name is there already."""
    operation._ensure_not_in_transaction(schema_editor)
    model = to_state.apps.get_model(app_label, operation.model_name)
    return operation.allow_migrate_model(schema_editor.connection.alias, model) and not _built(
        schema_editor, model, name
    )


class AddIndexConcurrentlyOnce(AddIndexConcurrently):
    """AddIndexConcurrently (in a migration with `atomic = False`) that a retried
    migration can run again.

    A concurrent build that fails (the pod killed, the query cancelled) leaves an invalid
    index of its name and no record of the migration, and one that succeeded before a later
    operation failed leaves a valid one: on the next attempt the first is dropped and built
    again, the second kept as it is.
    """

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if _to_build(self, app_label, schema_editor, to_state, self.index.name):
            super().database_forwards(app_label, schema_editor, from_state, to_state)


class RemoveIndexConcurrentlyOnce(RemoveIndexConcurrently):
    """RemoveIndexConcurrently (dropping is already repeatable: IF EXISTS) whose reversal,
    a concurrent build, a retried rollback can run again as AddIndexConcurrentlyOnce's."""

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if _to_build(self, app_label, schema_editor, to_state, self.name):
            super().database_backwards(app_label, schema_editor, from_state, to_state)

"""Alembic environment for facestore's own tables in the app's shared database."""

from __future__ import annotations

from typing import Any

from alembic import context

from facestore.schema import ALEMBIC_VERSION_TABLE, OWN_TABLES, metadata


def _include_object(obj: Any, name: str | None, type_: str, *_: Any) -> bool:
    # Autogenerate only ever looks at facestore's own tables, never the app's.
    if type_ == "table":
        return name in OWN_TABLES
    return True


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("facestore migrations run through facestore.db, with a connection")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=ALEMBIC_VERSION_TABLE,
        include_object=_include_object,
        transaction_per_migration=True,
        render_as_batch=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("facestore does not support offline (SQL script) migrations")
run_migrations_online()

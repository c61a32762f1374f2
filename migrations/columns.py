"""Column changes the migrations share."""

from __future__ import annotations

from alembic import op


def drop_column(table: str, column: str) -> None:
    """Drop a column. SQLite 3.35+ drops it in place: no batch copy of the table, which the
    triggers on the app's face table would refuse while the table is renamed."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)

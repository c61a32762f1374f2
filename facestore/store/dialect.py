"""What differs between SQLite and PostgreSQL: upserts, the clock, locks, transient errors."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def database_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock: one clock for every worker's leases."""
    if conn.dialect.name == "postgresql":
        query = sa.text("SELECT extract(epoch FROM clock_timestamp())")
        return float(conn.execute(query).scalar_one())
    return time.time()  # SQLite: every worker is on this machine


LOCK_NOT_AVAILABLE = "55P03"


def wait_briefly_for_locks(conn: Connection) -> None:
    """PostgreSQL: give up after 0.5 s rather than queue behind (or deadlock with) the app.

    Used where facestore writes rows the app's triggers also write (queue,
    suggestions); the claim and the batch write skip locked rows instead.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL lock_timeout = '500ms'"))


def is_transient(exc: sa.exc.DBAPIError) -> bool:
    """A failure of the database, not of a row: locks, a busy or lost connection, a full disk.

    Retrying the batch later can help; splitting it cannot. (SQLite reports a TEXT value
    that is not UTF-8 as an OperationalError too: that one is a row's fault.)
    """
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError):
        return False
    return "could not decode" not in str(exc.orig).lower()


def insert_for(conn: Connection) -> Any:
    """The dialect's INSERT with ON CONFLICT support."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(f"facestore supports SQLite and PostgreSQL, not {dialect}")
    return insert


def upsert(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    statement = insert_for(conn)(table)
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates), rows)

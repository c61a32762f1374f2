"""One retrain or migration at a time.

On PostgreSQL the lock is `pg_try_advisory_lock` on a connection held for the
whole job, so it spans every machine using the database and dies with the
process. On SQLite, migrations are serialised by SQLite's own write lock and a
retrain takes a `flock` on a file in the model directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from facestore.errors import BusyError

if TYPE_CHECKING:  # `facestore model list` takes the publish lock without a database
    from sqlalchemy.engine import Engine

# Retrains and migrations share one key: neither may run while the other does.
MAINTENANCE_LOCK = "facestore maintenance"
RETRAIN_LOCK_FILE = ".retrain.lock"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_try_advisory_lock."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _busy(what: str) -> BusyError:
    return BusyError(
        f"Another facestore retrain or migration is running against this database, so this "
        f"{what} did not start. Run it again when the other one has finished."
    )


@contextlib.contextmanager
def advisory_lock(engine: Engine, what: str, name: str = MAINTENANCE_LOCK) -> Iterator[None]:
    """Hold a PostgreSQL session advisory lock, or raise BusyError at once. No-op elsewhere."""
    if engine.dialect.name != "postgresql":
        yield
        return
    import sqlalchemy as sa

    key = advisory_key(name)
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        conn.commit()
        if not got:
            raise _busy(what)
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive flock on path, or raise BusyError at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(what) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def retrain_lock(engine: Engine, model_dir: Path) -> Iterator[None]:
    """The database-wide lock on PostgreSQL; the model directory's lock file everywhere."""
    with advisory_lock(engine, "retrain"), file_lock(model_dir / RETRAIN_LOCK_FILE, "retrain"):
        yield


@contextlib.contextmanager
def publish_lock(model_dir: Path) -> Iterator[None]:
    """Serialise publishers of one model directory on this machine (blocking, brief)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

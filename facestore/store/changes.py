"""The change log (`face_change`): faces whose training pair may have changed, in order.

The triggers append the faces the app inserts, deletes, relabels, (un)verifies or
re-crops; the cache appends the faces it stores vectors for. A reader keeps the
highest seq it has seen and asks for what came after, so its cost follows the
changes, not the library.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from facestore.schema import face_change
from facestore.store.base import Part

KEEP_CHANGES = 100_000  # rows the log keeps; a reader further behind reads everything


@dataclass(frozen=True)
class ChangedFaces:
    face_ids: frozenset[int]
    last_seq: int


def log_changes(conn: Connection, face_ids: Iterable[int]) -> None:
    """Append faces to the log inside the caller's transaction."""
    rows = [{"face_id": int(face_id)} for face_id in face_ids]
    if rows:
        conn.execute(face_change.insert(), rows)


def _span(conn: Connection) -> tuple[int | None, int | None]:
    """(oldest, newest) seq in the log; (None, None) when it is empty."""
    span = sa.select(sa.func.min(face_change.c.seq), sa.func.max(face_change.c.seq))
    oldest, newest = conn.execute(span).one()
    return oldest, newest


class Changes(Part):
    """seq is an INTEGER PRIMARY KEY on SQLite (max + 1: pruning keeps the newest row)
    and a BIGSERIAL on PostgreSQL."""

    def last_seq(self) -> int:
        """The highest seq so far (0: none): a reader that reads everything starts here."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(face_change.c.seq))).scalar() or 0)

    def since(self, seq: int, limit: int) -> ChangedFaces | None:
        """The faces logged after `seq`; None when the reader must read everything instead:
        more than `limit` changes, a truncated face table, or rows after `seq` pruned."""
        log = face_change.c
        with self.engine.connect() as conn:
            # The log is pruned from the front: a gap after `seq` means rows it needed are
            # gone. (seq 0, an empty log when read: pruning starts only past KEEP_CHANGES
            # rows, more than a reader takes at once, so `limit` sends it to a full read.)
            oldest, newest = _span(conn)
            if seq and oldest is not None and oldest > seq + 1:
                return None
            if newest is not None and newest < seq:  # emptied and started again (SQLite)
                return None
            rows = conn.execute(
                sa.select(log.seq, log.face_id)
                .where(log.seq > seq)
                .order_by(log.seq)
                .limit(limit + 1)
            ).all()
        if len(rows) > limit or any(face_id is None for _, face_id in rows):
            return None
        last = int(rows[-1].seq) if rows else seq
        return ChangedFaces(frozenset(int(face_id) for _, face_id in rows), last)

    def prune(self, keep: int | None = None) -> int:
        """Drop all but the last `keep` (KEEP_CHANGES) rows, once there are a tenth more;
        the rows dropped."""
        keep = KEEP_CHANGES if keep is None else keep
        log = face_change.c
        with self.engine.connect() as conn:
            oldest, newest = _span(conn)
        if oldest is None or newest is None or newest - oldest < keep + keep // 10:
            return 0
        with self.db.transaction() as conn:
            return conn.execute(face_change.delete().where(log.seq <= newest - keep)).rowcount or 0

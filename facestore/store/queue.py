"""The work queue: pending faces are queued, claimed in batches under a lease, released.

A worker claims a batch with a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL;
SQLite's write lock serialises claims), embeds with no transaction open, and
writes only the results whose lease it still holds. An expired lease is claimed again."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from facestore.config import configured_worker_host
from facestore.schema import embedding_job, embedding_space
from facestore.store.base import Part
from facestore.store.dialect import (
    LOCK_NOT_AVAILABLE,
    database_now,
    insert_for,
    wait_briefly_for_locks,
)
from facestore.store.records import Crop, IdRanges, QueueCounts

log = logging.getLogger(__name__)

VERIFIED_FIRST, UNVERIFIED = 0, 1  # embedding_job.priority


def worker_host() -> str:
    """Which machine this worker is, for leases: the worker host setting, else hostname/pid-ns.

    The pid namespace tells apart containers that share a hostname, whose pids
    mean nothing to each other.
    """
    configured = configured_worker_host()
    if configured:
        return configured.replace(":", "_")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


@dataclass(frozen=True)
class LeaseOwner:
    """Who holds a lease, as stored in `embedding_job.lease_owner`: host:pid:random."""

    host: str
    pid: int
    token: str

    @classmethod
    def new(cls, host: str | None = None) -> LeaseOwner:
        """A new owner for this process, unique per run."""
        return cls(host or worker_host(), os.getpid(), uuid.uuid4().hex[:8])

    @classmethod
    def parse(cls, text: str) -> LeaseOwner | None:
        host, _, rest = text.rpartition(":")
        host, _, pid = host.rpartition(":")
        if not host or not pid.isdigit():
            return None
        return cls(host, int(pid), rest)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.token}"


def lease_is_dead(
    owner: str,
    expires_at: float | None,
    now: float,
    host: str,
    is_alive: Callable[[int], bool],
) -> bool:
    """A lease whose worker is gone: expired, or held by a dead process of this host
    (other hosts' processes cannot be asked; their leases expire)."""
    parsed = LeaseOwner.parse(owner)
    if parsed is not None and parsed.host == host and not is_alive(parsed.pid):
        return True
    return expires_at is not None and float(expires_at) < now


def drop_jobs(conn: Connection, space_hash: str, face_ids: Sequence[int]) -> None:
    job = embedding_job.c
    conn.execute(
        embedding_job.delete().where(job.space_hash == space_hash, job.face_id.in_(face_ids))
    )


class WorkQueue(Part):
    """embedding_job: what is pending, who holds which face."""

    def count_pending(self, space_hash: str | None, verified: bool = True) -> int:
        if space_hash:
            where = self.db.pending_filter(space_hash, verified)
        else:
            where = [self.face.verified_clause if verified else ~self.face.verified_clause]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one())

    def _not_queued(self, space_hash: str) -> sa.ColumnElement[bool]:
        face = self.face.table
        return ~sa.exists().where(
            embedding_job.c.face_id == face.c.id, embedding_job.c.space_hash == space_hash
        )

    def enqueue_pending(
        self, space_hash: str, verified: bool = True, ids: IdRanges | None = None
    ) -> int:
        """Queue the pending faces not queued yet (a scan of the face table).

        The triggers queue new and changed faces of the active space as the app
        writes them; this scan catches the rest (faces from before facestore, a
        new space, writes made without the triggers). With verified=True it also
        moves verified faces queued as unverified to the front. Reads first: an
        idle call writes nothing. With ids, only those faces are looked at.
        """
        face = self.face.table
        job = embedding_job.c
        where = [*self.db.pending_filter(space_hash, verified, ids), self._not_queued(space_hash)]
        demoted = [
            job.space_hash == space_hash,
            job.priority == UNVERIFIED,
            job.face_id.in_(sa.select(face.c.id).where(self.face.verified_clause)),
            *([ids.clause(job.face_id)] if ids is not None else []),
        ]
        with self.engine.connect() as conn:
            missing = conn.execute(sa.select(sa.exists().where(*where))).scalar()
            promote = verified and conn.execute(sa.select(sa.exists().where(*demoted))).scalar()
        if not missing and not promote:
            return 0
        pending = (
            sa.select(
                face.c.id,
                sa.literal(space_hash, sa.String),
                sa.literal(VERIFIED_FIRST if verified else UNVERIFIED, sa.SmallInteger),
                sa.literal(time.time(), sa.Float),
            )
            .where(*where)
            .order_by(face.c.id)  # one order for every worker: no deadlocks between them
        )
        try:
            with self.db.transaction() as conn:
                wait_briefly_for_locks(conn)
                return self._enqueue(conn, pending, demoted, bool(missing), bool(promote))
        except sa.exc.OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.info("Queue scan skipped: the app holds locks on those rows; the next pass retries")
            return 0

    @staticmethod
    def _enqueue(
        conn: Connection,
        pending: sa.Select[Any],
        demoted: list[sa.ColumnElement[bool]],
        missing: bool,
        promote: bool,
    ) -> int:
        changed = 0
        if promote:
            update = embedding_job.update().where(*demoted).values(priority=VERIFIED_FIRST)
            changed += conn.execute(update).rowcount or 0
        if missing:
            statement = insert_for(conn)(embedding_job).from_select(
                ["face_id", "space_hash", "priority", "enqueued_at"], pending
            )
            changed += conn.execute(statement.on_conflict_do_nothing()).rowcount or 0
        return changed

    def claim(
        self,
        space_hash: str,
        limit: int,
        owner: str,
        lease_seconds: float,
        verified: bool = True,
    ) -> list[Crop]:
        """Lease up to `limit` queued faces (free or with an expired lease); return their crops.

        One short transaction: `WITH picked AS MATERIALIZED (SELECT ... LIMIT n FOR
        UPDATE SKIP LOCKED) UPDATE ... WHERE face_id IN picked RETURNING face_id`, so
        two workers never lease the same face at once. Jobs of faces deleted
        meanwhile are dropped.
        """
        job = embedding_job.c
        priority = VERIFIED_FIRST if verified else UNVERIFIED

        def claimable(now: float) -> list[sa.ColumnElement[bool]]:
            return [
                job.space_hash == space_hash,
                job.priority == priority,
                sa.or_(job.lease_expires_at.is_(None), job.lease_expires_at < now),
            ]

        with self.engine.connect() as conn:
            where = claimable(database_now(conn))
            if not conn.execute(sa.select(sa.exists().where(*where))).scalar():
                return []  # nothing to do: take no write lock
        while True:
            with self.db.transaction() as conn:
                now = database_now(conn)
                # Materialised, so the locking subquery runs exactly once (rescanned inside
                # the UPDATE it would skip its own updated rows and take the next ones).
                picked = (
                    sa.select(job.face_id)
                    .where(*claimable(now))
                    .order_by(job.face_id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                    .cte("picked")
                    .prefix_with("MATERIALIZED")
                )
                ids = list(
                    conn.execute(
                        embedding_job.update()
                        .where(
                            job.space_hash == space_hash,
                            job.face_id.in_(sa.select(picked.c.face_id)),
                        )
                        .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
                        .returning(job.face_id)
                    ).scalars()
                )
                if not ids:
                    return []
            # Read after the claim commits: the lease keeps the faces ours, and a row that
            # cannot be read then fails alone, not the claim.
            crops = self.db.read_crops(ids)
            gone = [i for i in ids if i not in crops]
            if gone:
                with self.db.transaction() as conn:
                    drop_jobs(conn, space_hash, gone)
            if crops:  # else every face of this batch was deleted: take the next batch
                return [crops[face_id] for face_id in sorted(crops)]

    def release(self, owner: str) -> int:
        """Give back every lease the owner still holds (a worker stopping early)."""
        with self.db.transaction() as conn:
            return (
                conn.execute(
                    embedding_job.update()
                    .where(embedding_job.c.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None)
                ).rowcount
                or 0
            )

    def release_dead(self, host: str, is_alive: Callable[[int], bool]) -> int:
        """Free the leases of this host's workers whose process is gone (killed, crashed).

        Other hosts' leases are left to expire.
        """
        with self.engine.connect() as conn:
            owners = conn.execute(
                sa.select(embedding_job.c.lease_owner)
                .where(embedding_job.c.lease_owner.like(f"{host}:%"))
                .distinct()
            ).scalars()
            parsed = [(text, LeaseOwner.parse(text)) for text in owners]
        dead = [
            text
            for text, owner in parsed
            if owner is not None and lease_is_dead(text, None, 0.0, host, is_alive)
        ]
        return sum(self.release(text) for text in dead)

    def depth_by_space(self) -> Iterator[tuple[str, int, int]]:
        """(space label, queued, under a live lease) for every space with queued jobs, and
        for the active space even when nothing is queued (0 and 0: a dashboard sees 0,
        not "no data")."""
        job, space = embedding_job.c, embedding_space.c
        with self.engine.connect() as conn:
            now = database_now(conn)
            rows: list[tuple[Any, ...]] = [
                tuple(row)
                for row in conn.execute(
                    sa.select(
                        job.space_hash,
                        space.backbone,
                        sa.func.count(),
                        sa.func.count().filter(job.lease_expires_at >= now),
                    )
                    .join(embedding_space, space.config_hash == job.space_hash, isouter=True)
                    .group_by(job.space_hash, space.backbone)
                )
            ]
            active = conn.execute(
                sa.select(space.config_hash, space.backbone).where(space.is_active.is_(sa.true()))
            ).first()
        if active is not None and active.config_hash not in {r[0] for r in rows}:
            rows.append((active.config_hash, active.backbone, 0, 0))
        for space_hash, backbone, queued, leased in rows:
            yield f"{backbone or 'unknown'}/{space_hash[:12]}", int(queued), int(leased)

    def count_queued(self, space_hash: str) -> QueueCounts:
        """Queued jobs of the space: all of them, and those under a live lease."""
        job = embedding_job.c
        with self.engine.connect() as conn:
            now = database_now(conn)
            row = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(job.lease_expires_at >= now),
                ).where(job.space_hash == space_hash)
            ).one()
        return QueueCounts(queued=int(row[0]), leased=int(row[1]))

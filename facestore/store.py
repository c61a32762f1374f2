"""The embedding cache: spaces, the work queue, guarded batch writes, counts.

Every write runs in a short `write_transaction`; nothing here decodes images or
runs a model, so no transaction is ever held across that work.

Several workers share the work through `embedding_job`: pending faces are
queued, a worker claims a batch with a lease (`FOR UPDATE SKIP LOCKED` on
PostgreSQL; SQLite's write lock serialises claims), embeds with no transaction
open, and writes only the results whose lease it still holds and whose crop is
still the face's current crop. An expired lease is claimed again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from facestore.backbones import Space
from facestore.db import write_transaction
from facestore.schema import (
    FaceTable,
    embedding,
    embedding_failure,
    embedding_job,
    embedding_space,
    face_suggestion,
)
from facestore.schema import reflect_face_table as _reflect
from facestore.timestamps import iso_utc

log = logging.getLogger(__name__)

VECTOR_DTYPE = np.dtype("<f4")
VERIFIED_FIRST, UNVERIFIED = 0, 1  # embedding_job.priority


def crop_sha256(blob: bytes | None) -> str:
    return hashlib.sha256(blob or b"").hexdigest()


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vectors(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=VECTOR_DTYPE) for b in blobs]).astype(np.float32)


@dataclass(frozen=True)
class Crop:
    face_id: int
    blob: bytes
    error: str | None = None  # why the stored value cannot be a crop (it is not image bytes)


def crop_from(face_id: int, value: Any, sql_type: str | None = None) -> Crop:
    """The crop of a face_crop_blob value of any type; anything but bytes carries an error.

    sql_type is SQLite's typeof() of the value (the value itself is read CAST AS BLOB,
    so TEXT that is not valid UTF-8 cannot fail the read).
    """
    if value is None:
        return Crop(face_id, b"", "face_crop_blob is NULL: the app stored no crop for this face")
    if isinstance(value, str):
        data, kind = value.encode("utf-8", "surrogateescape"), "text"
    elif isinstance(value, bytes | bytearray | memoryview):
        data, kind = bytes(value), sql_type or "blob"
    else:
        data, kind = str(value).encode(), type(value).__name__
    if kind == "blob":
        return Crop(face_id, data)
    hint = (
        " (it looks like base64 of an image: store the decoded bytes)"
        if _base64_image(data)
        else ""
    )
    return Crop(
        face_id,
        data,
        f"face_crop_blob holds {kind}, not image bytes{hint}: the app must store the crop "
        "as a BLOB of JPEG, PNG or WebP data",
    )


def _base64_image(data: bytes) -> bool:
    try:
        head = base64.b64decode(data[:64], validate=True)
    except (binascii.Error, ValueError):
        return False
    return head.startswith((b"\xff\xd8", b"\x89PNG", b"RIFF"))


@dataclass(frozen=True)
class VectorResult:
    face_id: int
    crop_sha256: str
    vector: np.ndarray


@dataclass(frozen=True)
class FailureResult:
    face_id: int
    crop_sha256: str
    error: str


@dataclass(frozen=True)
class WriteOutcome:
    embedded: int
    failed: int
    changed: int  # results dropped because the crop changed while they were computed


@dataclass(frozen=True)
class TrainingRows:
    face_ids: list[int]
    person_ids: list[Any]
    vectors: np.ndarray


class Store:
    def __init__(self, engine: Engine, face: FaceTable | None = None) -> None:
        self.engine = engine
        self._face = face
        self._suggestion: sa.Table | None = None

    @property
    def face(self) -> FaceTable:
        if self._face is None:
            self._face = _reflect(self.engine)
        return self._face

    # --- spaces -------------------------------------------------------------

    def _space_where(self, where: sa.ColumnElement[bool]) -> Space | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(embedding_space).where(where)).first()
        return Space(row.backbone, row.config_hash, json.loads(row.config_json)) if row else None

    def active_space(self) -> Space | None:
        return self._space_where(embedding_space.c.is_active.is_(sa.true()))

    def space(self, config_hash: str) -> Space | None:
        return self._space_where(embedding_space.c.config_hash == config_hash)

    def record_space(self, space: Space, conn: Connection) -> None:
        # ON CONFLICT: several workers starting at once may record the same space
        # (a check-then-insert lost that race on PostgreSQL with a unique violation)
        conn.execute(
            _insert(conn)(embedding_space)
            .values(
                config_hash=space.config_hash,
                backbone=space.backbone,
                config_json=json.dumps(dict(space.config), sort_keys=True),
                created_at=time.time(),
                is_active=False,
            )
            .on_conflict_do_nothing(index_elements=[embedding_space.c.config_hash])
        )

    def activate_space(self, space: Space, conn: Connection) -> None:
        self.record_space(space, conn)
        conn.execute(embedding_space.update().values(is_active=False))
        conn.execute(
            embedding_space.update()
            .where(embedding_space.c.config_hash == space.config_hash)
            .values(is_active=True, activated_at=time.time())
        )

    def spaces(self) -> list[dict[str, Any]]:
        """Every space the database holds, with its vectors and the verified faces it lacks."""
        face = self.face.table
        verified = self.face.verified_clause
        with self.engine.connect() as conn:
            spaces = conn.execute(
                sa.select(embedding_space).order_by(embedding_space.c.created_at)
            ).all()
            n_verified = conn.execute(sa.select(sa.func.count()).where(verified)).scalar_one()
            result = []
            for row in spaces:
                has_vector = sa.exists().where(
                    embedding.c.face_id == face.c.id, embedding.c.space_hash == row.config_hash
                )
                covered = conn.execute(
                    sa.select(sa.func.count()).where(verified, has_vector)
                ).scalar_one()
                result.append(
                    {
                        "backbone": row.backbone,
                        "config_hash": row.config_hash,
                        "active": bool(row.is_active),
                        "vectors": conn.execute(
                            sa.select(sa.func.count())
                            .select_from(embedding)
                            .where(embedding.c.space_hash == row.config_hash)
                        ).scalar_one(),
                        "missing": int(n_verified - covered),
                        "failed": conn.execute(
                            sa.select(sa.func.count())
                            .select_from(embedding_failure)
                            .where(embedding_failure.c.space_hash == row.config_hash)
                        ).scalar_one(),
                        "created_at": iso_utc(row.created_at),
                        "activated_at": iso_utc(row.activated_at),
                    }
                )
        return result

    def activate_with(self, space: Space, make_current: Callable[[], None]) -> None:
        """Activate the space and, inside the same write transaction, switch the model.

        The symlink swap happens just before the commit, so a reader never sees the
        new space with the old model for longer than the commit itself.
        """
        with write_transaction(self.engine) as conn:
            self.activate_space(space, conn)
            make_current()

    def prune_inactive(self) -> dict[str, int]:
        """Delete the vectors, failures and records of every non-active space."""
        with write_transaction(self.engine) as conn:
            active = conn.execute(
                sa.select(embedding_space.c.config_hash).where(
                    embedding_space.c.is_active.is_(sa.true())
                )
            ).scalar()
            counts = {}
            for name, table in (
                ("vectors", embedding),
                ("failures", embedding_failure),
            ):
                where = table.c.space_hash != active if active else sa.true()
                counts[name] = conn.execute(table.delete().where(where)).rowcount or 0
            counts["spaces"] = (
                conn.execute(
                    embedding_space.delete().where(embedding_space.c.is_active.is_(sa.false()))
                ).rowcount
                or 0
            )
        return counts

    def device_info(self, space_hash: str) -> dict[str, Any] | None:
        """Where the space's vectors were last computed (not part of the space)."""
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(embedding_space.c.device_info).where(
                    embedding_space.c.config_hash == space_hash
                )
            ).scalar()
        return json.loads(value) if value else None

    def record_device_info(self, space_hash: str, info: dict[str, Any]) -> None:
        if self.device_info(space_hash) == info:
            return
        with write_transaction(self.engine) as conn:
            conn.execute(
                embedding_space.update()
                .where(embedding_space.c.config_hash == space_hash)
                .values(device_info=json.dumps(info, sort_keys=True))
            )

    # --- pending work -------------------------------------------------------

    def _pending_filter(
        self, space_hash: str, verified: bool = True
    ) -> list[sa.ColumnElement[bool]]:
        """Faces (verified, or else unverified) with no vector and no failure in the space."""
        face = self.face.table
        return [
            self.face.verified_clause if verified else ~self.face.verified_clause,
            ~sa.exists().where(
                embedding.c.face_id == face.c.id, embedding.c.space_hash == space_hash
            ),
            ~sa.exists().where(
                embedding_failure.c.face_id == face.c.id,
                embedding_failure.c.space_hash == space_hash,
            ),
        ]

    def count_pending(self, space_hash: str | None, verified: bool = True) -> int:
        if space_hash:
            where = self._pending_filter(space_hash, verified)
        else:
            where = [self.face.verified_clause if verified else ~self.face.verified_clause]
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(*where)).scalar_one())

    # --- the work queue -----------------------------------------------------

    def _not_queued(self, space_hash: str) -> sa.ColumnElement[bool]:
        face = self.face.table
        return ~sa.exists().where(
            embedding_job.c.face_id == face.c.id, embedding_job.c.space_hash == space_hash
        )

    def enqueue_pending(self, space_hash: str, verified: bool = True) -> int:
        """Queue the pending faces not queued yet (a scan of the face table).

        The triggers queue new and changed faces of the active space as the app
        writes them; this scan catches the rest (faces from before facestore, a
        new space, writes made without the triggers). With verified=True it also
        moves verified faces queued as unverified to the front. Reads first: an
        idle call writes nothing.
        """
        face = self.face.table
        job = embedding_job.c
        where = [*self._pending_filter(space_hash, verified), self._not_queued(space_hash)]
        demoted = [
            job.space_hash == space_hash,
            job.priority == UNVERIFIED,
            job.face_id.in_(sa.select(face.c.id).where(self.face.verified_clause)),
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
            with write_transaction(self.engine) as conn:
                _wait_briefly_for_locks(conn)
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
            statement = _insert(conn)(embedding_job).from_select(
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
            with write_transaction(self.engine) as conn:
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
            crops = self.read_crops(ids)
            gone = [i for i in ids if i not in crops]
            if gone:
                with write_transaction(self.engine) as conn:
                    _drop_jobs(conn, space_hash, gone)
            if crops:  # else every face of this batch was deleted: take the next batch
                return [crops[face_id] for face_id in sorted(crops)]

    # --- crops --------------------------------------------------------------

    def _crop_query(self, face_ids: Sequence[int]) -> sa.Select[Any]:
        column = self.face.table.c.face_crop_blob
        if self.engine.dialect.name == "sqlite":
            # As BLOB, TEXT comes back as its bytes: invalid UTF-8 cannot fail the read.
            value = sa.cast(column, sa.LargeBinary).label("crop")
            kind = sa.func.typeof(column).label("crop_type")
        else:
            value, kind = column.label("crop"), sa.null().label("crop_type")
        return sa.select(self.face.table.c.id, value, kind).where(
            self.face.table.c.id.in_(list(face_ids))
        )

    def read_crops(self, face_ids: Sequence[int]) -> dict[int, Crop]:
        """The crops of the faces still there. A row that cannot be read becomes a Crop
        with an error; it never fails the others."""
        try:
            return self._read_crops(face_ids)
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            if len(face_ids) == 1:
                reason = f"face_crop_blob cannot be read: {exc.orig}"
                return {face_ids[0]: Crop(face_ids[0], b"", reason)}
            log.warning("Reading %d crops failed (%s); reading them one by one", len(face_ids), exc)
        crops: dict[int, Crop] = {}
        for face_id in face_ids:
            crops.update(self.read_crops([face_id]))
        return crops

    def _read_crops(self, face_ids: Sequence[int]) -> dict[int, Crop]:
        with self.engine.connect() as conn:
            return self._crop_rows(conn, face_ids)

    def _crop_rows(
        self, conn: Connection, face_ids: Sequence[int], lock: bool = False
    ) -> dict[int, Crop]:
        """face_id -> Crop; with lock, share-locks the rows, skipping those locked by others."""
        query = self._crop_query(face_ids)
        if lock:
            query = query.with_for_update(read=True, skip_locked=True)
        return {int(r.id): crop_from(int(r.id), r.crop, r.crop_type) for r in conn.execute(query)}

    def release(self, owner: str) -> int:
        """Give back every lease the owner still holds (a worker stopping early)."""
        with write_transaction(self.engine) as conn:
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

        Owners are host:pid:random. Other hosts' leases are left to expire.
        """
        with self.engine.connect() as conn:
            owners = conn.execute(
                sa.select(embedding_job.c.lease_owner)
                .where(embedding_job.c.lease_owner.like(f"{host}:%"))
                .distinct()
            ).scalars()
            mine = [o for o in owners if o.startswith(f"{host}:")]  # LIKE's _ is a wildcard
            dead = [o for o in mine if not is_alive(int(o.split(":")[1]))]
        return sum(self.release(owner) for owner in dead)

    def count_queued(self, space_hash: str) -> dict[str, int]:
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
        return {"queued": int(row[0]), "leased": int(row[1])}

    # --- writes -------------------------------------------------------------

    def write_results(
        self,
        space_hash: str,
        vectors: Sequence[VectorResult],
        failures: Sequence[FailureResult],
        owner: str | None = None,
    ) -> WriteOutcome:
        """Store a batch (see _write_batch). If the database refuses it for a reason other
        than locks or the connection, each result is written alone, and one that is still
        refused becomes that face's failure: no single row can fail a batch."""
        try:
            return self._write_batch(space_hash, vectors, failures, owner)
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            log.warning(
                "Writing %d results failed (%s); writing them one by one",
                len(vectors) + len(failures),
                exc.orig,
            )
        results: list[VectorResult | FailureResult] = [*vectors, *failures]
        outcomes = [self._write_one(space_hash, r, owner) for r in results]
        return WriteOutcome(
            sum(o.embedded for o in outcomes),
            sum(o.failed for o in outcomes),
            sum(o.changed for o in outcomes),
        )

    def _write_one(
        self, space_hash: str, result: VectorResult | FailureResult, owner: str | None
    ) -> WriteOutcome:
        vectors = [result] if isinstance(result, VectorResult) else []
        failures = [result] if isinstance(result, FailureResult) else []
        try:
            return self._write_batch(space_hash, vectors, failures, owner)
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            failure = FailureResult(
                result.face_id, result.crop_sha256, f"the result could not be stored: {exc.orig}"
            )
        log.warning("Face %d: %s", failure.face_id, failure.error)
        try:
            with write_transaction(self.engine) as conn:
                _drop_jobs(conn, space_hash, [failure.face_id])
                self._record_failure(conn, space_hash, failure, time.time())
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise
            log.error(
                "Face %d: its failure cannot be recorded either (%s); it is tried again later",
                failure.face_id,
                exc.orig,
            )
            return WriteOutcome(0, 0, 1)
        return WriteOutcome(0, 1, 0)

    def _write_batch(
        self,
        space_hash: str,
        vectors: Sequence[VectorResult],
        failures: Sequence[FailureResult],
        owner: str | None = None,
    ) -> WriteOutcome:
        """Store a batch, keeping only results whose crop is still the face's current crop.

        With an owner, also only the faces whose lease the owner still holds; their
        jobs leave the queue (a face that changed meanwhile is queued again later).
        On PostgreSQL the faces' rows are share-locked for the (short) transaction,
        so an app change made meanwhile waits and then clears what we wrote, never
        the other way round. Rows locked by someone else (the app mid-change, a
        worker reclaiming the job) are skipped, not waited on, and their results
        dropped: facestore never waits on the app, so it cannot deadlock with it.
        """
        ids = [r.face_id for r in vectors] + [r.face_id for r in failures]
        if not ids:
            return WriteOutcome(0, 0, 0)
        job = embedding_job.c
        now = time.time()
        with write_transaction(self.engine) as conn:
            if owner is not None:
                held = set(
                    conn.execute(
                        sa.select(job.face_id)
                        .where(
                            job.space_hash == space_hash,
                            job.face_id.in_(ids),
                            job.lease_owner == owner,
                        )
                        .with_for_update(skip_locked=True)
                    ).scalars()
                )
                ids = [i for i in ids if i in held]
            current = {
                face_id: crop_sha256(crop.blob)
                for face_id, crop in self._crop_rows(conn, ids, lock=True).items()
            }
            good = [r for r in vectors if current.get(r.face_id) == r.crop_sha256]
            bad = [r for r in failures if current.get(r.face_id) == r.crop_sha256]
            done = [r.face_id for r in good] + [r.face_id for r in bad]
            if done:
                _drop_jobs(conn, space_hash, done)
            if owner is not None and len(done) < len(ids):
                conn.execute(  # changed meanwhile: free the job for the next claim
                    embedding_job.update()
                    .where(
                        job.space_hash == space_hash,
                        job.face_id.in_(set(ids) - set(done)),
                        job.lease_owner == owner,
                    )
                    .values(lease_owner=None, lease_expires_at=None)
                )
            if good:
                _upsert(
                    conn,
                    embedding,
                    [
                        {
                            "face_id": r.face_id,
                            "space_hash": space_hash,
                            "crop_sha256": r.crop_sha256,
                            "vector": encode_vector(r.vector),
                            "created_at": now,
                        }
                        for r in good
                    ],
                    keys=("face_id", "space_hash"),
                )
                conn.execute(
                    embedding_failure.delete().where(
                        embedding_failure.c.space_hash == space_hash,
                        embedding_failure.c.face_id.in_([r.face_id for r in good]),
                    )
                )
            for r in bad:
                self._record_failure(conn, space_hash, r, now)
        total = len(vectors) + len(failures)
        return WriteOutcome(len(good), len(bad), total - len(good) - len(bad))

    def _record_failure(
        self, conn: Connection, space_hash: str, failure: FailureResult, now: float
    ) -> None:
        failure = FailureResult(failure.face_id, failure.crop_sha256, printable(failure.error))
        key = (embedding_failure.c.face_id == failure.face_id) & (
            embedding_failure.c.space_hash == space_hash
        )
        previous = conn.execute(
            sa.select(embedding_failure.c.attempts, embedding_failure.c.crop_sha256).where(key)
        ).first()
        if previous is None:
            conn.execute(
                embedding_failure.insert().values(
                    face_id=failure.face_id,
                    space_hash=space_hash,
                    crop_sha256=failure.crop_sha256,
                    attempts=1,
                    error=failure.error,
                    failed_at=now,
                )
            )
        else:
            attempts = previous.attempts + 1 if previous.crop_sha256 == failure.crop_sha256 else 1
            conn.execute(
                embedding_failure.update()
                .where(key)
                .values(
                    crop_sha256=failure.crop_sha256,
                    attempts=attempts,
                    error=failure.error,
                    failed_at=now,
                )
            )

    def sweep_orphans(self) -> int:
        """Delete cache rows of deleted faces, and suggestions of verified ones.

        The app may bypass the triggers (deletes made before facestore was installed).
        Checks with a read first, so an idle sweep takes no write lock and writes nothing.
        """
        face = self.face.table
        suggestion = self.suggestion_table
        stale: dict[sa.Table, sa.ColumnElement[bool]] = {
            table: ~table.c.face_id.in_(sa.select(face.c.id))
            for table in (embedding, embedding_failure, embedding_job, suggestion)
        }
        verified_ids = sa.select(face.c.id).where(self.face.verified_clause)
        stale[suggestion] = stale[suggestion] | suggestion.c.face_id.in_(verified_ids)
        with self.engine.connect() as conn:
            found = [
                table
                for table, where in stale.items()
                if conn.execute(sa.select(sa.exists().where(where))).scalar()
            ]
        removed = 0
        if found:
            with write_transaction(self.engine) as conn:
                for table in found:
                    removed += conn.execute(table.delete().where(stale[table])).rowcount or 0
            log.info("Swept %d stale cache or suggestion rows", removed)
        return removed

    # --- reads --------------------------------------------------------------

    def counts(self, space_hash: str | None) -> dict[str, int]:
        face = self.face.table
        verified = self.face.verified_clause
        with self.engine.connect() as conn:

            def count(*where: Any, table: Any = face) -> int:
                query = sa.select(sa.func.count()).select_from(table).where(*where)
                return int(conn.execute(query).scalar_one())

            faces = count()
            n_verified = count(verified)
            if space_hash is None:
                return {
                    "faces": faces,
                    "verified": n_verified,
                    "embedded": 0,
                    "pending": n_verified,
                    "failed": 0,
                    "stale": count(table=embedding),
                }
            in_space_vec = sa.exists().where(
                embedding.c.face_id == face.c.id, embedding.c.space_hash == space_hash
            )
            in_space_fail = sa.exists().where(
                embedding_failure.c.face_id == face.c.id,
                embedding_failure.c.space_hash == space_hash,
            )
            return {
                "faces": faces,
                "verified": n_verified,
                "embedded": count(verified, in_space_vec),
                "pending": count(*self._pending_filter(space_hash)),
                "failed": count(verified, in_space_fail, ~in_space_vec),
                "stale": count(embedding.c.space_hash != space_hash, table=embedding),
            }

    def failures(self, space_hash: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Faces whose current crop failed in the space, newest first, with the reason."""
        face = self.face.table
        failure = embedding_failure.c
        query = (
            sa.select(
                failure.face_id,
                face.c.person_id,
                failure.error,
                failure.attempts,
                failure.failed_at,
            )
            .join(face, face.c.id == failure.face_id)
            .where(failure.space_hash == space_hash)
            .order_by(failure.failed_at.desc(), failure.face_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {
                    "face_id": int(r.face_id),
                    "person_id": r.person_id,
                    "error": r.error,
                    "attempts": int(r.attempts),
                    "failed_at": iso_utc(r.failed_at),
                }
                for r in conn.execute(query)
            ]

    def vectors_of(self, space_hash: str, face_ids: Sequence[int]) -> dict[int, bytes]:
        query = sa.select(embedding.c.face_id, embedding.c.vector).where(
            embedding.c.space_hash == space_hash, embedding.c.face_id.in_(list(face_ids))
        )
        with self.engine.connect() as conn:
            return {int(r.face_id): bytes(r.vector) for r in conn.execute(query)}

    def crops_of(self, face_ids: Sequence[int]) -> dict[int, bytes]:
        """face_id -> crop bytes of the faces still there (an unusable value: its bytes)."""
        return {i: crop.blob for i, crop in self.read_crops(face_ids).items()}

    def training_pairs(self, space_hash: str) -> dict[int, Any]:
        """face_id -> person_id of verified faces with a vector in the space (no vectors read)."""
        face = self.face.table
        query = (
            sa.select(embedding.c.face_id, face.c.person_id)
            .join(face, face.c.id == embedding.c.face_id)
            .where(embedding.c.space_hash == space_hash, self.face.verified_clause)
        )
        with self.engine.connect() as conn:
            return {int(r.face_id): r.person_id for r in conn.execute(query)}

    # --- suggestions --------------------------------------------------------

    @property
    def suggestion_table(self) -> sa.Table:
        """face_suggestion, with person_id typed like the app's face.person_id."""
        if self._suggestion is None:
            person_type = self.face.table.c.person_id.type
            self._suggestion = sa.Table(
                face_suggestion.name,
                sa.MetaData(),
                *(
                    sa.Column(
                        c.name,
                        person_type if c.name == "person_id" else c.type,
                        primary_key=c.primary_key,
                    )
                    for c in face_suggestion.columns
                ),
            )
        return self._suggestion

    def unverified_vectors(self, space_hash: str) -> list[tuple[int, str, np.ndarray]]:
        """(face_id, crop sha256, vector) of unverified faces with a vector in the space."""
        face = self.face.table
        query = (
            sa.select(embedding.c.face_id, embedding.c.crop_sha256, embedding.c.vector)
            .join(face, face.c.id == embedding.c.face_id)
            .where(embedding.c.space_hash == space_hash, ~self.face.verified_clause)
            .order_by(embedding.c.face_id)
        )
        with self.engine.connect() as conn:
            return [
                (int(r.face_id), r.crop_sha256, np.frombuffer(r.vector, dtype=VECTOR_DTYPE))
                for r in conn.execute(query)
            ]

    def write_suggestions(
        self,
        model_version: str,
        considered: Sequence[int],
        suggestions: Sequence[tuple[int, Any, float]],
        replace_all: bool = False,
    ) -> int:
        """Replace the suggestions of the considered faces (or all) with new rows.

        Rows are written only for faces that are still there and still unverified.
        """
        table = self.suggestion_table
        face = self.face.table
        now = time.time()
        with write_transaction(self.engine) as conn:
            _wait_briefly_for_locks(conn)
            if replace_all:
                conn.execute(table.delete())
            elif considered:
                conn.execute(table.delete().where(table.c.face_id.in_(list(considered))))
            if not suggestions:
                return 0
            open_ids = {
                int(i)
                for (i,) in conn.execute(
                    sa.select(face.c.id).where(
                        face.c.id.in_([s[0] for s in suggestions]), ~self.face.verified_clause
                    )
                )
            }
            rows = [
                {
                    "face_id": face_id,
                    "person_id": person_id,
                    "confidence": float(confidence),
                    "model_version": model_version,
                    "created_at": now,
                }
                for face_id, person_id, confidence in suggestions
                if face_id in open_ids
            ]
            if rows:
                conn.execute(table.insert(), rows)
        return len(rows)

    def training_rows(self, space_hash: str) -> TrainingRows:
        """Vectors of the space for verified faces, labelled with their current person_id."""
        face = self.face.table
        query = (
            sa.select(embedding.c.face_id, face.c.person_id, embedding.c.vector)
            .join(face, face.c.id == embedding.c.face_id)
            .where(embedding.c.space_hash == space_hash, self.face.verified_clause)
            .order_by(embedding.c.face_id)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return TrainingRows(
            face_ids=[int(r.face_id) for r in rows],
            person_ids=[r.person_id for r in rows],
            vectors=decode_vectors([r.vector for r in rows]),
        )


def database_now(conn: Connection) -> float:
    """Seconds since the epoch by the database's clock: one clock for every worker's leases."""
    if conn.dialect.name == "postgresql":
        query = sa.text("SELECT extract(epoch FROM clock_timestamp())")
        return float(conn.execute(query).scalar_one())
    return time.time()  # SQLite: every worker is on this machine


LOCK_NOT_AVAILABLE = "55P03"


def _wait_briefly_for_locks(conn: Connection) -> None:
    """PostgreSQL: give up after 0.5 s rather than queue behind (or deadlock with) the app.

    Used where facestore writes rows the app's triggers also write (queue,
    suggestions); the claim and the batch write skip locked rows instead.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SET LOCAL lock_timeout = '500ms'"))


MAX_ERROR_CHARS = 500


def printable(error: str) -> str:
    """An error message any database stores (PostgreSQL text cannot hold NUL), kept short."""
    text = error.replace("\x00", "\\x00")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


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


def _drop_jobs(conn: Connection, space_hash: str, face_ids: Sequence[int]) -> None:
    job = embedding_job.c
    conn.execute(
        embedding_job.delete().where(job.space_hash == space_hash, job.face_id.in_(face_ids))
    )


def _insert(conn: Connection) -> Any:
    """The dialect's INSERT with ON CONFLICT support."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(f"facestore supports SQLite and PostgreSQL, not {dialect}")
    return insert


def _upsert(
    conn: Connection, table: sa.Table, rows: list[dict[str, Any]], keys: tuple[str, ...]
) -> None:
    statement = _insert(conn)(table)
    updates = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    conn.execute(statement.on_conflict_do_update(index_elements=list(keys), set_=updates), rows)

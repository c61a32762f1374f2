"""Guarded writes to the embedding cache, and the sweep of stale rows.

Every write runs in a short transaction; nothing here decodes images or runs a
model, so no transaction is ever held across that work. A result is written only
if its crop is still the face's current crop (and, with an owner, only under a
lease the owner still holds)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from facestore.schema import embedding, embedding_failure, embedding_job
from facestore.store.base import Part
from facestore.store.changes import log_changes
from facestore.store.dialect import is_transient, upsert
from facestore.store.queue import drop_jobs
from facestore.store.records import (
    FailureResult,
    IdRanges,
    VectorResult,
    WriteOutcome,
    crop_sha256,
    encode_vector,
    printable,
)

log = logging.getLogger(__name__)


class Cache(Part):
    """Writes vectors and failures; sweeps rows of deleted or verified faces."""

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
            tuple(face_id for o in outcomes for face_id in o.written),
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
            with self.db.transaction() as conn:
                drop_jobs(conn, space_hash, [failure.face_id])
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
        with self.db.transaction() as conn:
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
                for face_id, crop in self.db.crop_rows(conn, ids, lock=True).items()
            }
            good = [r for r in vectors if current.get(r.face_id) == r.crop_sha256]
            bad = [r for r in failures if current.get(r.face_id) == r.crop_sha256]
            done = [r.face_id for r in good] + [r.face_id for r in bad]
            if done:
                drop_jobs(conn, space_hash, done)
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
                upsert(
                    conn,
                    embedding,
                    [
                        {
                            "face_id": r.face_id,
                            "space_hash": space_hash,
                            "crop_sha256": r.crop_sha256,
                            "vector": encode_vector(r.vector),
                            "created_at": now,
                            **r.signal_columns(),
                            "quality": None,  # a new vector: not judged yet
                            "quality_reason": None,
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
                log_changes(conn, [r.face_id for r in good])  # new training pairs, maybe
            for r in bad:
                self._record_failure(conn, space_hash, r, now)
        total = len(vectors) + len(failures)
        return WriteOutcome(
            len(good), len(bad), total - len(good) - len(bad), tuple(r.face_id for r in good)
        )

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

    def sweep_orphans(self, ids: IdRanges | None = None) -> int:
        """Delete cache rows of deleted faces, and suggestions of verified ones (among
        ids, when given).

        The app may bypass the triggers (deletes made before facestore was installed).
        Checks with a read first, so an idle sweep takes no write lock and writes nothing.
        """
        face = self.face.table
        suggestion = self.db.suggestion_table
        # NOT EXISTS, never NOT IN (SELECT ...): PostgreSQL cannot make NOT IN an anti-join,
        # and past work_mem it compares each row with every face id (1M faces: minutes)
        stale: dict[sa.Table, sa.ColumnElement[bool]] = {
            table: ~sa.exists().where(face.c.id == table.c.face_id).correlate(table)
            for table in (embedding, embedding_failure, embedding_job, suggestion)
        }
        verified = sa.exists().where(face.c.id == suggestion.c.face_id, self.face.verified_clause)
        stale[suggestion] = stale[suggestion] | verified.correlate(suggestion)
        if ids is not None:
            stale = {table: sa.and_(ids.clause(table.c.face_id), w) for table, w in stale.items()}
        with self.engine.connect() as conn:
            found = [
                table
                for table, where in stale.items()
                if conn.execute(
                    sa.select(sa.exists(sa.select(table.c.face_id).where(where)))
                ).scalar()
            ]
        removed = 0
        if found:
            with self.db.transaction() as conn:
                for table in found:
                    removed += conn.execute(table.delete().where(stale[table])).rowcount or 0
            log.info("Swept %d stale cache or suggestion rows", removed)
        return removed

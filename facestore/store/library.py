"""Reads of what is stored for the app's faces: counts, failures, vectors, training rows."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import DTypeLike

from facestore.quality import ImageSignals, SignalArrays
from facestore.schema import embedding, embedding_failure
from facestore.store.base import Part
from facestore.store.records import (
    SIGNAL_COLUMNS,
    CacheCounts,
    FailureRow,
    IdRanges,
    TrainingRows,
    VectorMatrix,
    id_chunks,
    signals_of_row,
)
from facestore.timestamps import iso_utc

TRAINING_READ_CHUNK = 4096  # rows per fetch when reading training vectors


class Library(Part):
    """Read-only views of the cache joined with the app's face table."""

    def counts(self, space_hash: str | None) -> CacheCounts:
        face = self.face.table
        verified = self.face.verified_clause
        with self.engine.connect() as conn:

            def count(*where: Any, table: Any = face) -> int:
                query = sa.select(sa.func.count()).select_from(table).where(*where)
                return int(conn.execute(query).scalar_one())

            faces = count()
            n_verified = count(verified)
            if space_hash is None:
                return CacheCounts(
                    faces=faces,
                    verified=n_verified,
                    embedded=0,
                    pending=n_verified,
                    failed=0,
                    stale=count(table=embedding),
                )
            in_space_vec = sa.exists().where(
                embedding.c.face_id == face.c.id, embedding.c.space_hash == space_hash
            )
            in_space_fail = sa.exists().where(
                embedding_failure.c.face_id == face.c.id,
                embedding_failure.c.space_hash == space_hash,
            )
            return CacheCounts(
                faces=faces,
                verified=n_verified,
                embedded=count(verified, in_space_vec),
                pending=count(*self.db.pending_filter(space_hash)),
                failed=count(verified, in_space_fail, ~in_space_vec),
                stale=count(embedding.c.space_hash != space_hash, table=embedding),
            )

    def failures(self, space_hash: str, limit: int | None = None) -> list[FailureRow]:
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
                FailureRow(
                    face_id=int(r.face_id),
                    person_id=r.person_id,
                    error=r.error,
                    attempts=int(r.attempts),
                    failed_at=iso_utc(r.failed_at),
                )
                for r in conn.execute(query)
            ]

    def highest_face_id(self) -> int | None:
        """max(face.id): the primary key's last entry, not a scan."""
        with self.engine.connect() as conn:
            highest = conn.execute(sa.select(sa.func.max(self.face.table.c.id))).scalar()
        return None if highest is None else int(highest)

    def vectors_of(self, space_hash: str, face_ids: Sequence[int]) -> dict[int, bytes]:
        query = sa.select(embedding.c.face_id, embedding.c.vector).where(
            embedding.c.space_hash == space_hash
        )
        with self.engine.connect() as conn:
            return {
                int(r.face_id): bytes(r.vector)
                for chunk in id_chunks(face_ids)
                for r in conn.execute(query.where(embedding.c.face_id.in_(chunk)))
            }

    def signals_of(self, space_hash: str, face_ids: Sequence[int]) -> dict[int, ImageSignals]:
        """face_id -> the quality signals measured when its vector was made (if they were)."""
        query = sa.select(
            embedding.c.face_id, *(embedding.c[name] for name in SIGNAL_COLUMNS)
        ).where(embedding.c.space_hash == space_hash)
        found: dict[int, ImageSignals] = {}
        with self.engine.connect() as conn:
            for chunk in id_chunks(face_ids):
                for r in conn.execute(query.where(embedding.c.face_id.in_(chunk))):
                    signals = signals_of_row(r)
                    if signals is not None:
                        found[int(r.face_id)] = signals
        return found

    def crops_of(self, face_ids: Sequence[int]) -> dict[int, bytes]:
        """face_id -> crop bytes of the faces still there (an unusable value: its bytes)."""
        return {i: crop.blob for i, crop in self.db.read_crops(face_ids).items()}

    def training_pairs(
        self, space_hash: str, faces: Collection[int] | IdRanges | None = None
    ) -> dict[int, Any]:
        """face_id -> person_id of verified faces with a vector in the space (no vectors
        read), of every face or only of these faces (ids, or id ranges)."""
        face = self.face.table
        query = (
            sa.select(embedding.c.face_id, face.c.person_id)
            .join(face, face.c.id == embedding.c.face_id)
            .where(embedding.c.space_hash == space_hash, self.face.verified_clause)
        )
        if isinstance(faces, IdRanges):
            query = query.where(faces.clause(embedding.c.face_id))
        with self.engine.connect() as conn:
            if faces is None or isinstance(faces, IdRanges):
                return {int(r.face_id): r.person_id for r in conn.execute(query)}
            return {
                int(r.face_id): r.person_id
                for chunk in id_chunks(faces)
                for r in conn.execute(query.where(embedding.c.face_id.in_(chunk)))
            }

    def training_rows(self, space_hash: str, dtype: DTypeLike = np.float32) -> TrainingRows:
        """Vectors of the space for verified faces, labelled with their current person_id,
        in one matrix of `dtype` (see VectorMatrix)."""
        face = self.face.table
        query = (
            sa.select(
                embedding.c.face_id,
                face.c.person_id,
                embedding.c.vector,
                *(embedding.c[name] for name in SIGNAL_COLUMNS),
            )
            .join(face, face.c.id == embedding.c.face_id)
            .where(embedding.c.space_hash == space_hash, self.face.verified_clause)
            .order_by(embedding.c.face_id)
        )
        face_ids: list[int] = []
        person_ids: list[Any] = []
        signals: list[np.ndarray] = []  # (len(SIGNAL_COLUMNS), rows) per part
        with self.engine.connect() as conn:
            in_space = sa.select(sa.func.count()).where(embedding.c.space_hash == space_hash)
            matrix = VectorMatrix(int(conn.execute(in_space).scalar_one()), dtype)
            result = conn.execution_options(yield_per=TRAINING_READ_CHUNK).execute(query)
            for part in result.partitions():
                face_ids.extend(int(r.face_id) for r in part)
                person_ids.extend(r.person_id for r in part)
                matrix.extend([r.vector for r in part])
                signals.append(
                    np.array(
                        [[getattr(r, name) for name in SIGNAL_COLUMNS] for r in part],
                        dtype=np.float64,
                    ).T.reshape(len(SIGNAL_COLUMNS), -1)  # NULL becomes NaN: not measured
                )
        columns = np.concatenate([np.zeros((len(SIGNAL_COLUMNS), 0)), *signals], axis=1)
        return TrainingRows(
            face_ids=face_ids,
            person_ids=person_ids,
            vectors=matrix.finish(),
            signals=SignalArrays(*columns),
        )

"""The current model's verdicts on low-quality unverified faces, kept on their vectors
(embedding.quality), so that status, failures, clusters and the metrics read them."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from facestore.schema import embedding
from facestore.store.base import Part
from facestore.store.dialect import wait_briefly_for_locks
from facestore.store.records import SIGNAL_COLUMNS, id_chunks


@dataclass(frozen=True)
class LowQualityFace:
    face_id: int
    quality: float
    reason: str  # the signal below its floor: size, sharpness, compression or face score
    side: int | None  # the crop's shorter side in px (None: not measured)
    sharpness: float | None
    jpeg_quality: float | None  # of the crop's bytes (None: not told or not measured)
    face_score: float | None  # how much it looks like a face, 0..1 (None: not measured)


class QualityVerdicts(Part):
    def mark(
        self,
        space_hash: str,
        low: Mapping[int, tuple[float, str]],
        cleared: Collection[int] = (),
    ) -> None:
        """Record faces found low quality (face_id -> (quality, reason)) and clear the
        verdict of faces found good again; one transaction."""
        if not low and not cleared:
            return
        in_space = embedding.c.space_hash == space_hash
        with self.db.transaction() as conn:
            wait_briefly_for_locks(conn)
            for chunk in id_chunks(cleared):
                conn.execute(
                    embedding.update()
                    .where(in_space, embedding.c.face_id.in_(chunk))
                    .values(quality=None, quality_reason=None)
                )
            for face_id, (quality, reason) in low.items():
                conn.execute(
                    embedding.update()
                    .where(in_space, embedding.c.face_id == face_id)
                    .values(quality=float(quality), quality_reason=reason[:20])
                )

    def count(self, space_hash: str) -> int:
        """Unverified faces of the space found low quality (an index on the verdicts)."""
        query = sa.select(sa.func.count()).where(
            embedding.c.space_hash == space_hash, embedding.c.quality.is_not(None)
        )
        face = self.face.table
        query = query.where(
            sa.exists().where(face.c.id == embedding.c.face_id, ~self.face.verified_clause)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def listing(self, space_hash: str, limit: int | None = None) -> list[LowQualityFace]:
        """The low-quality unverified faces, worst first."""
        face = self.face.table
        query = (
            sa.select(
                embedding.c.face_id,
                embedding.c.quality,
                embedding.c.quality_reason,
                *(embedding.c[name] for name in SIGNAL_COLUMNS),
            )
            .join(face, face.c.id == embedding.c.face_id)
            .where(
                embedding.c.space_hash == space_hash,
                embedding.c.quality.is_not(None),
                ~self.face.verified_clause,
            )
            .order_by(embedding.c.quality, embedding.c.face_id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                LowQualityFace(
                    int(r.face_id),
                    float(r.quality),
                    r.quality_reason or "",
                    None if r.crop_side is None else int(r.crop_side),
                    None if r.sharpness is None else float(r.sharpness),
                    None if r.jpeg_quality is None else float(r.jpeg_quality),
                    None if r.face_score is None else float(r.face_score),
                )
                for r in conn.execute(query)
            ]

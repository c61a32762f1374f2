"""face_suggestion: the model's guesses for unverified faces, which the app reads."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from facestore.schema import embedding
from facestore.store.base import Part
from facestore.store.dialect import wait_briefly_for_locks
from facestore.store.records import (
    SIGNAL_COLUMNS,
    VECTOR_DTYPE,
    IdRanges,
    UnverifiedFace,
    id_chunks,
    signals_of_row,
)


class Suggestions(Part):
    """The unverified faces' vectors in, their suggestion rows out."""

    def unverified_vectors(
        self,
        space_hash: str,
        face_ids: Collection[int] | None = None,
        ids: IdRanges | None = None,
    ) -> list[UnverifiedFace]:
        """Unverified faces with a vector in the space: all of them, those among face_ids
        (a cost that follows face_ids, not the library), or those in the id ranges."""
        face = self.face.table
        in_space = embedding.c.space_hash == space_hash
        if ids is not None and self.engine.dialect.name == "sqlite":
            # Without statistics SQLite would walk the space's whole index (1M rows for a
            # slice of 50k); an expression is not indexed, so it takes the key's range.
            in_space = embedding.c.space_hash.concat("") == space_hash
        query = (
            sa.select(
                embedding.c.face_id,
                embedding.c.crop_sha256,
                embedding.c.vector,
                *(embedding.c[name] for name in SIGNAL_COLUMNS),
                embedding.c.quality,
            )
            .join(face, face.c.id == embedding.c.face_id)
            .where(in_space, ~self.face.verified_clause)
            .order_by(embedding.c.face_id)
        )
        if ids is not None:
            query = query.where(ids.clause(embedding.c.face_id))
        if face_ids is None:
            parts = [query]
        else:
            parts = [query.where(embedding.c.face_id.in_(chunk)) for chunk in id_chunks(face_ids)]
        with self.engine.connect() as conn:
            return [
                UnverifiedFace(
                    int(r.face_id),
                    r.crop_sha256,
                    np.frombuffer(r.vector, dtype=VECTOR_DTYPE),
                    signals_of_row(r),
                    None if r.quality is None else float(r.quality),
                )
                for part in parts
                for r in conn.execute(part)
            ]

    def rejections(self) -> dict[int, frozenset[str]]:
        """face_id -> the person_ids (as text) the app's users said it is not.

        Read whole: rows are written one by one by people, so the table stays small.
        """
        table = self.db.rejection_table
        found: dict[int, set[str]] = {}
        with self.engine.connect() as conn:
            for face_id, person_id in conn.execute(sa.select(table.c.face_id, table.c.person_id)):
                found.setdefault(int(face_id), set()).add(str(person_id))
        return {face_id: frozenset(people) for face_id, people in found.items()}

    def write(
        self,
        model_version: str,
        considered: Sequence[int],
        suggestions: Sequence[tuple[int, Any, float]],
        replace_all: bool = False,
    ) -> int:
        """Replace the suggestions of the considered faces (or all) with new rows.

        Rows are written only for faces that are still there and still unverified.
        """
        table = self.db.suggestion_table
        face = self.face.table
        now = time.time()
        with self.db.transaction() as conn:
            wait_briefly_for_locks(conn)
            if replace_all:
                conn.execute(table.delete())
            else:
                for chunk in id_chunks(considered):
                    conn.execute(table.delete().where(table.c.face_id.in_(chunk)))
            if not suggestions:
                return 0
            still_open = sa.select(face.c.id).where(~self.face.verified_clause)
            open_ids = {
                int(i)
                for chunk in id_chunks(s[0] for s in suggestions)
                for (i,) in conn.execute(still_open.where(face.c.id.in_(chunk)))
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

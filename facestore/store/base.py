"""The store's handle on the database: the engine, the app's face table, one transaction API
and the reads of crops that every part shares."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from facestore.db import write_transaction
from facestore.schema import (
    FaceTable,
    embedding,
    embedding_failure,
    face_rejection,
    face_suggestion,
)
from facestore.schema import reflect_face_table as _reflect
from facestore.store.dialect import is_transient
from facestore.store.records import Crop, IdRanges, crop_from

log = logging.getLogger(__name__)


class Database:
    """Shared by the store's parts. Every write goes through `transaction()`."""

    def __init__(self, engine: Engine, face: FaceTable | None = None) -> None:
        self.engine = engine
        self._face = face
        self._retyped: dict[str, sa.Table] = {}  # own tables whose person_id is the app's
        self._open = threading.local()

    @property
    def face(self) -> FaceTable:
        if self._face is None:
            self._face = _reflect(self.engine)
        return self._face

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A short write transaction (`BEGIN IMMEDIATE` on SQLite). Used inside another
        one on the same thread, it becomes a savepoint of it: one commit for both."""
        outer: Connection | None = getattr(self._open, "conn", None)
        if outer is not None:
            with outer.begin_nested():
                yield outer
            return
        with write_transaction(self.engine) as conn:
            self._open.conn = conn
            try:
                yield conn
            finally:
                self._open.conn = None

    def pending_filter(
        self, space_hash: str, verified: bool = True, ids: IdRanges | None = None
    ) -> list[sa.ColumnElement[bool]]:
        """Faces (verified, or else unverified) with no vector and no failure in the space
        (among ids, when given)."""
        face = self.face.table
        return [
            *([ids.clause(face.c.id)] if ids is not None else []),
            self.face.verified_clause if verified else ~self.face.verified_clause,
            ~sa.exists().where(
                embedding.c.face_id == face.c.id, embedding.c.space_hash == space_hash
            ),
            ~sa.exists().where(
                embedding_failure.c.face_id == face.c.id,
                embedding_failure.c.space_hash == space_hash,
            ),
        ]

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
            return self.crop_rows(conn, face_ids)

    def crop_rows(
        self, conn: Connection, face_ids: Sequence[int], lock: bool = False
    ) -> dict[int, Crop]:
        """face_id -> Crop; with lock, share-locks the rows, skipping those locked by others."""
        query = self._crop_query(face_ids)
        if lock:
            query = query.with_for_update(read=True, skip_locked=True)
        return {int(r.id): crop_from(int(r.id), r.crop, r.crop_type) for r in conn.execute(query)}

    @property
    def suggestion_table(self) -> sa.Table:
        """face_suggestion, with person_id typed like the app's face.person_id."""
        return self._app_typed(face_suggestion)

    @property
    def rejection_table(self) -> sa.Table:
        """face_rejection, with person_id typed like the app's face.person_id."""
        return self._app_typed(face_rejection)

    def _app_typed(self, table: sa.Table) -> sa.Table:
        if table.name not in self._retyped:
            person_type = self.face.table.c.person_id.type
            self._retyped[table.name] = sa.Table(
                table.name,
                sa.MetaData(),
                *(
                    sa.Column(
                        c.name,
                        person_type if c.name == "person_id" else c.type,
                        primary_key=c.primary_key,
                    )
                    for c in table.columns
                ),
            )
        return self._retyped[table.name]


class Part:
    """A part of the store: shares one Database (engine, face table, transactions)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def engine(self) -> Engine:
        return self.db.engine

    @property
    def face(self) -> FaceTable:
        """The app's face table, reflected on first use."""
        return self.db.face

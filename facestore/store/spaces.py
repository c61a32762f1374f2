"""Embedding spaces: which backbone and config made the vectors, and which one is active."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from facestore.backbones import Space
from facestore.schema import embedding, embedding_failure, embedding_space
from facestore.store.base import Part
from facestore.store.dialect import insert_for
from facestore.store.records import PruneCounts, SpaceSummary
from facestore.timestamps import iso_utc


class Spaces(Part):
    """The embedding_space table."""

    def _space_where(self, where: sa.ColumnElement[bool]) -> Space | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(embedding_space).where(where)).first()
        return Space(row.backbone, row.config_hash, json.loads(row.config_json)) if row else None

    def active(self) -> Space | None:
        return self._space_where(embedding_space.c.is_active.is_(sa.true()))

    def get(self, config_hash: str) -> Space | None:
        return self._space_where(embedding_space.c.config_hash == config_hash)

    def record(self, space: Space) -> None:
        # ON CONFLICT: several workers starting at once may record the same space
        # (a check-then-insert lost that race on PostgreSQL with a unique violation)
        with self.db.transaction() as conn:
            self._record(conn, space)

    @staticmethod
    def _record(conn: Connection, space: Space) -> None:
        conn.execute(
            insert_for(conn)(embedding_space)
            .values(
                config_hash=space.config_hash,
                backbone=space.backbone,
                config_json=json.dumps(dict(space.config), sort_keys=True),
                created_at=time.time(),
                is_active=False,
            )
            .on_conflict_do_nothing(index_elements=[embedding_space.c.config_hash])
        )

    def activate(self, space: Space) -> None:
        """Record the space and make it the only active one."""
        with self.db.transaction() as conn:
            self._record(conn, space)
            conn.execute(embedding_space.update().values(is_active=False))
            conn.execute(
                embedding_space.update()
                .where(embedding_space.c.config_hash == space.config_hash)
                .values(is_active=True, activated_at=time.time())
            )

    def summaries(self, exact: bool = True) -> list[SpaceSummary]:
        """Every space the database holds, with its vectors and (exact: a scan of the
        face table) the verified faces it lacks."""
        face = self.face.table
        verified = self.face.verified_clause
        with self.engine.connect() as conn:
            spaces = conn.execute(
                sa.select(embedding_space).order_by(embedding_space.c.created_at)
            ).all()
            n_verified = (
                conn.execute(sa.select(sa.func.count()).where(verified)).scalar_one()
                if exact
                else None
            )
            result = []
            for row in spaces:
                has_vector = sa.exists().where(
                    embedding.c.face_id == face.c.id, embedding.c.space_hash == row.config_hash
                )
                covered = (
                    conn.execute(
                        sa.select(sa.func.count()).where(verified, has_vector)
                    ).scalar_one()
                    if exact
                    else None
                )
                result.append(
                    SpaceSummary(
                        backbone=row.backbone,
                        config_hash=row.config_hash,
                        active=bool(row.is_active),
                        vectors=conn.execute(
                            sa.select(sa.func.count())
                            .select_from(embedding)
                            .where(embedding.c.space_hash == row.config_hash)
                        ).scalar_one(),
                        missing=(
                            int(n_verified - covered)
                            if n_verified is not None and covered is not None
                            else None
                        ),
                        failed=conn.execute(
                            sa.select(sa.func.count())
                            .select_from(embedding_failure)
                            .where(embedding_failure.c.space_hash == row.config_hash)
                        ).scalar_one(),
                        created_at=iso_utc(row.created_at),
                        activated_at=iso_utc(row.activated_at),
                    )
                )
        return result

    def prune_inactive(self) -> PruneCounts:
        """Delete the vectors, failures and records of every non-active space."""
        with self.db.transaction() as conn:
            active = conn.execute(
                sa.select(embedding_space.c.config_hash).where(
                    embedding_space.c.is_active.is_(sa.true())
                )
            ).scalar()
            counts: dict[str, int] = {}
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
        return PruneCounts(**counts)

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
        with self.db.transaction() as conn:
            conn.execute(
                embedding_space.update()
                .where(embedding_space.c.config_hash == space_hash)
                .values(device_info=json.dumps(info, sort_keys=True))
            )

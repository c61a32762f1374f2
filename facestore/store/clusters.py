"""face_cluster and face_cluster_member: groups of unknown faces, which the app reads."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import DTypeLike

from facestore.schema import embedding, face_cluster, face_cluster_absorbed, face_cluster_member
from facestore.store.base import Part
from facestore.store.dialect import wait_briefly_for_locks
from facestore.store.records import VectorMatrix, id_chunks

READ_CHUNK = 4096  # rows per fetch when reading the unknown faces' vectors


@dataclass(frozen=True)
class ClusterRow:
    cluster_id: int
    face_ids: list[int]  # best first: the representative face leads
    representative_face_id: int
    distance: float
    min_size: int


@dataclass(frozen=True)
class StoredCluster:
    cluster_id: int
    space_hash: str
    size: int
    representative_face_id: int
    distance: float
    min_size: int
    created_at: float
    updated_at: float
    face_ids: list[int]
    absorbed: list[int] = dataclasses.field(default_factory=list)  # ids merged into it


def _row(cluster: ClusterRow, space_hash: str, created: float, now: float) -> dict[str, Any]:
    return {
        "cluster_id": cluster.cluster_id,
        "space_hash": space_hash,
        "size": len(cluster.face_ids),
        "representative_face_id": cluster.representative_face_id,
        "distance": cluster.distance,
        "min_size": cluster.min_size,
        "created_at": created,
        "updated_at": now,
    }


class Clusters(Part):
    """The unknown faces' vectors in, their groups out."""

    def _unknown(self, space_hash: str, *columns: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """Unverified faces with a vector in the space that the model names nobody for
        (no face_suggestion row) and did not find low quality, in id order."""
        face = self.face.table
        suggestion = self.db.suggestion_table
        return (
            sa.select(*columns)
            .join(face, face.c.id == embedding.c.face_id)
            .where(
                embedding.c.space_hash == space_hash,
                embedding.c.quality.is_(None),
                ~self.face.verified_clause,
                ~sa.exists().where(suggestion.c.face_id == embedding.c.face_id),
            )
            .order_by(embedding.c.face_id)
        )

    def still_unknown(self, space_hash: str, face_ids: Collection[int]) -> set[int]:
        """Those of face_ids that are still unknown faces."""
        query = self._unknown(space_hash, embedding.c.face_id)
        with self.engine.connect() as conn:
            return {
                int(face_id)
                for chunk in id_chunks(face_ids)
                for (face_id,) in conn.execute(query.where(embedding.c.face_id.in_(chunk)))
            }

    def signature(self) -> tuple[int, float]:
        """(clusters, latest update): changes whenever anyone writes clusters."""
        query = sa.select(sa.func.count(), sa.func.max(face_cluster.c.updated_at))
        with self.engine.connect() as conn:
            count, latest = conn.execute(query).one()
        return int(count), float(latest or 0.0)

    def unknown_vectors(
        self,
        space_hash: str,
        dtype: DTypeLike = np.float32,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[list[int], np.ndarray]:
        """The unknown faces' ids and vectors, streamed into one matrix of dtype (float16:
        half the memory of a large library; see VectorMatrix); progress hears the rows
        read so far."""
        query = self._unknown(space_hash, embedding.c.face_id, embedding.c.vector)
        face_ids: list[int] = []
        with self.engine.connect() as conn:
            in_space = sa.select(sa.func.count()).where(embedding.c.space_hash == space_hash)
            matrix = VectorMatrix(int(conn.execute(in_space).scalar_one()), dtype)
            result = conn.execution_options(yield_per=READ_CHUNK).execute(query)
            for part in result.partitions():
                face_ids.extend(int(r.face_id) for r in part)
                matrix.extend([r.vector for r in part])
                if progress is not None:
                    progress(len(face_ids))
        if not face_ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        return face_ids, matrix.finish()

    def count_unknown(self, space_hash: str) -> int:
        """How many unknown faces the space has."""
        query = sa.select(sa.func.count()).select_from(
            self._unknown(space_hash, embedding.c.face_id).order_by(None).subquery()
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def members(self, space_hash: str) -> dict[int, set[int]]:
        """cluster id -> its faces, for the space's clusters."""
        query = (
            sa.select(face_cluster_member.c.cluster_id, face_cluster_member.c.face_id)
            .join(face_cluster, face_cluster.c.cluster_id == face_cluster_member.c.cluster_id)
            .where(face_cluster.c.space_hash == space_hash)
        )
        found: dict[int, set[int]] = {}
        with self.engine.connect() as conn:
            for cluster_id, face_id in conn.execute(query):
                found.setdefault(int(cluster_id), set()).add(int(face_id))
        return found

    def next_id(self) -> int:
        """An id no cluster has had: above every current and every absorbed one."""
        with self.engine.connect() as conn:
            return _highest_id(conn) + 1

    def absorbed(self) -> dict[int, int]:
        """absorbed cluster id -> the id it went into (which may itself have gone on)."""
        query = sa.select(
            face_cluster_absorbed.c.cluster_id, face_cluster_absorbed.c.into_cluster_id
        )
        with self.engine.connect() as conn:
            return {int(a): int(b) for a, b in conn.execute(query)}

    def follow(self, cluster_id: int) -> int | None:
        """The cluster that holds a given id's faces now: itself, the cluster it was merged
        into (step by step), or None when it is gone (its faces named or deleted)."""
        moved = self.absorbed()
        seen = set()
        while cluster_id in moved and cluster_id not in seen:
            seen.add(cluster_id)
            cluster_id = moved[cluster_id]
        query = sa.select(face_cluster.c.cluster_id).where(face_cluster.c.cluster_id == cluster_id)
        with self.engine.connect() as conn:
            return cluster_id if conn.execute(query).first() is not None else None

    def replace(
        self,
        space_hash: str,
        clusters: Sequence[ClusterRow],
        absorbed: Mapping[int, int] | None = None,
    ) -> None:
        """Make these the clusters (of every space: only the active one has clusters),
        in one transaction; a kept id keeps its created_at. absorbed: old cluster id ->
        the id its faces went into, recorded for apps that follow ids."""
        now = time.time()
        with self.db.transaction() as conn:
            wait_briefly_for_locks(conn)
            if absorbed:
                conn.execute(
                    face_cluster_absorbed.delete().where(
                        face_cluster_absorbed.c.cluster_id.in_(list(absorbed))
                    )
                )
                conn.execute(
                    face_cluster_absorbed.insert(),
                    [
                        {"cluster_id": old, "into_cluster_id": new, "absorbed_at": now}
                        for old, new in absorbed.items()
                    ],
                )
            created = dict(
                conn.execute(sa.select(face_cluster.c.cluster_id, face_cluster.c.created_at)).all()
            )
            conn.execute(face_cluster_member.delete())
            conn.execute(face_cluster.delete())
            if not clusters:
                return
            conn.execute(
                face_cluster.insert(),
                [_row(c, space_hash, created.get(c.cluster_id, now), now) for c in clusters],
            )
            conn.execute(
                face_cluster_member.insert(),
                [
                    {"face_id": face_id, "cluster_id": c.cluster_id, "joined_at": now}
                    for c in clusters
                    for face_id in c.face_ids
                ],
            )

    def extend(
        self, joins: Sequence[tuple[int, int]], founding: Sequence[ClusterRow], space_hash: str
    ) -> list[int]:
        """Add faces to clusters ((face_id, cluster_id)) and new clusters, in one
        transaction; the clusters' sizes and updated_at follow. The new clusters get
        their ids here (their cluster_id is ignored); returns them in order."""
        now = time.time()
        with self.db.transaction() as conn:
            wait_briefly_for_locks(conn)
            first = _highest_id(conn) + 1
            founded = [dataclasses.replace(c, cluster_id=first + i) for i, c in enumerate(founding)]
            if founded:
                conn.execute(
                    face_cluster.insert(), [_row(c, space_hash, now, now) for c in founded]
                )
            rows = [{"face_id": f, "cluster_id": c, "joined_at": now} for f, c in joins]
            rows += [
                {"face_id": f, "cluster_id": c.cluster_id, "joined_at": now}
                for c in founded
                for f in c.face_ids
            ]
            if rows:
                conn.execute(face_cluster_member.insert(), rows)
            for cluster_id in {c for _, c in joins}:
                count = (
                    sa.select(sa.func.count())
                    .where(face_cluster_member.c.cluster_id == cluster_id)
                    .scalar_subquery()
                )
                conn.execute(
                    face_cluster.update()
                    .where(face_cluster.c.cluster_id == cluster_id)
                    .values(size=count, updated_at=now)
                )
        return [c.cluster_id for c in founded]

    def listing(self, min_size: int = 1) -> list[StoredCluster]:
        """The clusters, biggest first, with their faces as they are now (a face the app
        named or deleted since has left: the triggers remove it)."""
        moved = self.absorbed()
        with self.engine.connect() as conn:
            clusters = conn.execute(sa.select(face_cluster)).all()
            members: dict[int, list[int]] = {}
            for cluster_id, face_id in conn.execute(
                sa.select(face_cluster_member.c.cluster_id, face_cluster_member.c.face_id).order_by(
                    face_cluster_member.c.face_id
                )
            ):
                members.setdefault(int(cluster_id), []).append(int(face_id))
        listed = [
            StoredCluster(
                cluster_id=int(c.cluster_id),
                space_hash=c.space_hash,
                size=len(members.get(int(c.cluster_id), [])),
                representative_face_id=int(c.representative_face_id),
                distance=float(c.distance),
                min_size=int(c.min_size),
                created_at=float(c.created_at),
                updated_at=float(c.updated_at),
                face_ids=members.get(int(c.cluster_id), []),
                absorbed=_merged_into(int(c.cluster_id), moved),
            )
            for c in clusters
        ]
        return sorted(
            (c for c in listed if c.size >= min_size), key=lambda c: (-c.size, c.cluster_id)
        )


def _highest_id(conn: sa.Connection) -> int:
    current = conn.execute(sa.select(sa.func.max(face_cluster.c.cluster_id))).scalar()
    gone = conn.execute(sa.select(sa.func.max(face_cluster_absorbed.c.cluster_id))).scalar()
    return max(int(current or 0), int(gone or 0))


def _merged_into(cluster_id: int, moved: Mapping[int, int]) -> list[int]:
    """Every id that was merged into cluster_id, directly or through another, sorted."""
    into: dict[int, list[int]] = {}
    for old, new in moved.items():
        into.setdefault(new, []).append(old)
    found, todo = [], [cluster_id]
    while todo:
        for old in into.get(todo.pop(), []):
            if old not in found and old != cluster_id:
                found.append(old)
                todo.append(old)
    return sorted(found)

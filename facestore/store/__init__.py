"""The embedding cache beside the app's `face` table, in parts with one job each.

    store = Store(engine)
    store.spaces       embedding spaces: active(), record(), activate(), summaries()
    store.queue        the work queue: enqueue_pending(), claim(), release()
    store.cache        guarded writes: write_results(), sweep_orphans()
    store.library      reads: counts(), failures(), training_rows(), vectors_of()
    store.suggestions  face_suggestion: unverified_vectors(), write(); face_rejection
    store.clusters     face_cluster(_member): unknown_vectors(), members(), replace()
    store.quality      low-quality verdicts on unverified faces: mark(), count(), listing()
    store.changes      face_change, the log of relabelled faces: last_seq(), since(), prune()
    store.transaction()  one write transaction; nested use becomes a savepoint

Every part writes through `store.transaction()`. Nothing here decodes images or
runs a model, so no transaction is held across that work.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import Connection, Engine

from facestore.schema import FaceTable
from facestore.store.base import Database, Part
from facestore.store.cache import Cache
from facestore.store.changes import ChangedFaces, Changes, log_changes
from facestore.store.clusters import ClusterRow, Clusters, StoredCluster
from facestore.store.dialect import LOCK_NOT_AVAILABLE, database_now, is_transient
from facestore.store.library import Library
from facestore.store.quality import LowQualityFace, QualityVerdicts
from facestore.store.queue import (
    UNVERIFIED,
    VERIFIED_FIRST,
    LeaseOwner,
    WorkQueue,
    lease_is_dead,
    worker_host,
)
from facestore.store.records import (
    VECTOR_DTYPE,
    CacheCounts,
    Crop,
    FailureResult,
    FailureRow,
    IdRanges,
    PruneCounts,
    QueueCounts,
    SpaceSummary,
    TrainingRows,
    UnverifiedFace,
    VectorResult,
    WriteOutcome,
    crop_from,
    crop_sha256,
    decode_vectors,
    encode_vector,
    printable,
)
from facestore.store.spaces import Spaces
from facestore.store.suggestions import Suggestions


class Store(Part):
    """The cache of one database: its parts share one engine and one transaction API."""

    def __init__(self, engine: Engine, face: FaceTable | None = None) -> None:
        super().__init__(Database(engine, face))
        self.spaces = Spaces(self.db)
        self.queue = WorkQueue(self.db)
        self.cache = Cache(self.db)
        self.library = Library(self.db)
        self.suggestions = Suggestions(self.db)
        self.clusters = Clusters(self.db)
        self.changes = Changes(self.db)
        self.quality = QualityVerdicts(self.db)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.db.transaction() as conn:
            yield conn


__all__ = [
    "LOCK_NOT_AVAILABLE",
    "UNVERIFIED",
    "VECTOR_DTYPE",
    "VERIFIED_FIRST",
    "CacheCounts",
    "ChangedFaces",
    "Changes",
    "ClusterRow",
    "Crop",
    "FailureResult",
    "FailureRow",
    "IdRanges",
    "LeaseOwner",
    "LowQualityFace",
    "PruneCounts",
    "QueueCounts",
    "SpaceSummary",
    "Store",
    "StoredCluster",
    "TrainingRows",
    "UnverifiedFace",
    "VectorResult",
    "WriteOutcome",
    "crop_from",
    "crop_sha256",
    "log_changes",
    "database_now",
    "decode_vectors",
    "encode_vector",
    "is_transient",
    "lease_is_dead",
    "printable",
    "worker_host",
]

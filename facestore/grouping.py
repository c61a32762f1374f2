"""Clusters of unknown faces in the database: parameters per space, a full re-cluster
that keeps ids, and the daemon's incremental joins (facestore.clustering is the pure
part)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestore.backbones import Space
from facestore.clustering import (
    DEFAULT_MIN_SIZE,
    MEASURED_DISTANCE,
    ClusterParams,
    calibrate_distance,
    group,
    representative,
    stable_ids,
    unit_rows,
)
from facestore.errors import ConfigurationError
from facestore.store import ClusterRow, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusteringReport:
    unknown: int
    clustered: int
    clusters: int
    distance: float
    min_size: int
    distance_from: str
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "unknown": self.unknown,
            "clustered": self.clustered,
            "clusters": self.clusters,
            "distance": self.distance,
            "min_size": self.min_size,
            "distance_from": self.distance_from,
            "seconds": round(self.seconds, 3),
        }


def cluster_params(
    store: Store, space: Space, distance: float | None = None, min_size: int | None = None
) -> tuple[ClusterParams, str]:
    """The parameters for a space, and where the distance comes from: given, measured
    for the backbone, or calibrated on the library's verified faces."""
    size = min_size or DEFAULT_MIN_SIZE
    if distance is not None:
        return ClusterParams(distance, size), "given"
    if space.backbone in MEASURED_DISTANCE:
        return ClusterParams(MEASURED_DISTANCE[space.backbone], size), "measured (ORL)"
    rows = store.library.training_rows(space.config_hash)
    calibrated = calibrate_distance(rows.vectors, rows.person_ids)
    if calibrated is None:
        raise ConfigurationError(
            f"No clustering distance is known for backbone {space.backbone}, and it cannot "
            "be calibrated: name at least two people with two faces each, or pass "
            "--distance (a cosine distance, for example 0.06 for dlib)."
        )
    return ClusterParams(calibrated, size), f"calibrated on {len(rows.face_ids)} verified faces"


def recluster(store: Store, space: Space, params: ClusterParams, source: str) -> ClusteringReport:
    """Group every unknown face anew; a group keeps the id of the cluster whose faces it
    mostly holds. Never touches person_id, verified or a named face."""
    started = time.perf_counter()
    face_ids, vectors = store.clusters.unknown_vectors(space.config_hash)
    return _regroup(store, space, params, source, face_ids, vectors, started)[0]


def _regroup(
    store: Store,
    space: Space,
    params: ClusterParams,
    source: str,
    face_ids: list[int],
    vectors: np.ndarray,
    started: float,
) -> tuple[ClusteringReport, list[ClusterRow]]:
    """recluster() on unknown faces already read: the report and the clusters written."""
    labels = group(vectors, params)
    groups = {
        int(label): [face_ids[i] for i in np.flatnonzero(labels == label)]
        for label in sorted(set(labels.tolist()))
        if label >= 0
    }
    previous = store.clusters.members(space.config_hash)
    ids = stable_ids(groups, previous, store.clusters.next_id(), present=face_ids)
    rows = []
    for label, faces in groups.items():
        lead = faces[representative(vectors[labels == label])]
        rows.append(
            ClusterRow(
                ids[label],
                [lead, *[f for f in faces if f != lead]],
                lead,
                params.distance,
                params.min_size,
            )
        )
    store.clusters.replace(space.config_hash, rows)
    report = ClusteringReport(
        unknown=len(face_ids),
        clustered=sum(len(r.face_ids) for r in rows),
        clusters=len(rows),
        distance=params.distance,
        min_size=params.min_size,
        distance_from=source,
        seconds=time.perf_counter() - started,
    )
    log.info(
        "Clustered %d of %d unknown faces into %d clusters (distance %.3f, %s)",
        report.clustered,
        report.unknown,
        report.clusters,
        params.distance,
        source,
    )
    return report, rows


class Clusterer:
    """The daemon's clusters: a full re-cluster when it starts and after each new model
    (every suggestion is redone then), and between those, each new unknown face joins
    the cluster whose centre is within the distance, or founds one with the
    unclustered faces within the distance (min_size in all), or waits among them.
    The cost of a join grows with the clusters and the waiting faces, not the library.
    """

    def __init__(self, store: Store, distance: float | None, min_size: int | None) -> None:
        self.store = store
        self.distance = distance
        self.min_size = min_size
        self._space: str | None = None
        self._params: ClusterParams | None = None
        self._centres: dict[int, np.ndarray] = {}  # cluster id -> sum of unit vectors
        self._waiting: dict[int, np.ndarray] = {}  # unclustered unknown face -> unit vector
        self._next_id = 1
        self._disabled_for: str | None = None

    def update(self, space: Space, full: bool = False) -> None:
        if self._disabled_for == space.config_hash and not full:
            return  # tried again with the next model: there may be named people by then
        if full or self._space != space.config_hash or self._params is None:
            try:
                params, source = cluster_params(self.store, space, self.distance, self.min_size)
            except ConfigurationError as exc:
                log.warning("Not clustering unknown faces: %s", exc)
                self._disabled_for = space.config_hash
                return
            self._disabled_for = None
            self._regroup_all(space, params, source)
            return
        self._join_new(space, self._params)

    def _regroup_all(self, space: Space, params: ClusterParams, source: str) -> None:
        """Re-cluster every unknown face, and keep the centres and the waiting faces."""
        started = time.perf_counter()
        face_ids, vectors = self.store.clusters.unknown_vectors(space.config_hash)
        _, rows = _regroup(self.store, space, params, source, face_ids, vectors, started)
        units = dict(zip(face_ids, unit_rows(vectors), strict=True)) if face_ids else {}
        self._centres = {r.cluster_id: np.sum([units[f] for f in r.face_ids], axis=0) for r in rows}
        clustered = {f for r in rows for f in r.face_ids}
        self._waiting = {f: v for f, v in units.items() if f not in clustered}
        self._next_id = self.store.clusters.next_id()
        self._space, self._params = space.config_hash, params

    def _join_new(self, space: Space, params: ClusterParams) -> None:
        unknown = set(self.store.clusters.unknown_ids(space.config_hash))
        for gone in [f for f in self._waiting if f not in unknown]:
            del self._waiting[gone]  # named, suggested or deleted meanwhile
        known = set(self._waiting) | set().union(
            *self.store.clusters.members(space.config_hash).values(), set()
        )
        new = sorted(unknown - known)
        if not new:
            return
        blobs = self.store.library.vectors_of(space.config_hash, new)
        joins: list[tuple[int, int]] = []
        founded: list[ClusterRow] = []
        for face_id in new:
            if face_id not in blobs:
                continue
            vector = unit_rows(np.frombuffer(blobs[face_id], dtype="<f4")[None, :])[0]
            cluster_id = self._nearest_cluster(vector, params.distance)
            if cluster_id is not None:
                joins.append((face_id, cluster_id))
                self._centres[cluster_id] = self._centres[cluster_id] + vector
                continue
            near = [
                f for f, v in self._waiting.items() if 1.0 - float(v @ vector) <= params.distance
            ]
            if len(near) + 1 >= params.min_size:
                faces = [face_id, *near]
                founded.append(
                    ClusterRow(self._next_id, faces, face_id, params.distance, params.min_size)
                )
                self._centres[self._next_id] = vector + np.sum(
                    [self._waiting.pop(f) for f in near], axis=0
                )
                self._next_id += 1
            else:
                self._waiting[face_id] = vector
        if joins or founded:
            self.store.clusters.extend(joins, founded, space.config_hash)
            log.info(
                "%d unknown faces joined clusters, %d clusters founded", len(joins), len(founded)
            )

    def _nearest_cluster(self, vector: np.ndarray, distance: float) -> int | None:
        if not self._centres:
            return None
        ids = list(self._centres)
        centres = unit_rows(np.stack([self._centres[c] for c in ids]))
        similarity = centres @ vector
        best = int(np.argmax(similarity))
        return ids[best] if 1.0 - float(similarity[best]) <= distance else None

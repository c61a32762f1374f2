"""Clusters of unknown faces in the database: parameters per space, a full re-cluster
that keeps ids, and the daemon's incremental joins (facestore.clustering is the pure
part)."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestore.backbones import Space
from facestore.clustering import (
    DEFAULT_MIN_SIZE,
    MEASURED_DISTANCE,
    ClusterParams,
    UnitRows,
    calibrate_distance,
    calibration_sample,
    group,
    representative,
    stable_ids,
    unit_rows,
)
from facestore.errors import ConfigurationError
from facestore.store import ClusterRow, Store, decode_vectors

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
    store: Store,
    space: Space,
    distance: float | None = None,
    min_size: int | None = None,
    pairs: Mapping[int, Any] | None = None,
) -> tuple[ClusterParams, str]:
    """The parameters for a space, and where the distance comes from: given, measured
    for the backbone, or calibrated on the library's verified faces (pairs: their
    face_id -> person_id, when the caller holds them; else read)."""
    size = min_size or DEFAULT_MIN_SIZE
    if distance is not None:
        return ClusterParams(distance, size), "given"
    if space.backbone in MEASURED_DISTANCE:
        return ClusterParams(MEASURED_DISTANCE[space.backbone], size), "measured (ORL)"
    if pairs is None:
        pairs = store.library.training_pairs(space.config_hash)
    blobs = store.library.vectors_of(space.config_hash, calibration_sample(pairs))
    sample = sorted(blobs)
    vectors = decode_vectors([blobs[face_id] for face_id in sample])
    calibrated = calibrate_distance(vectors, [pairs[face_id] for face_id in sample])
    if calibrated is None:
        raise ConfigurationError(
            f"No clustering distance is known for backbone {space.backbone}, and it cannot "
            "be calibrated: name at least two people with two faces each, or pass "
            "--distance (a cosine distance, for example 0.06 for dlib)."
        )
    of = f" (a sample of the {len(pairs)})" if len(sample) < len(pairs) else ""
    return ClusterParams(calibrated, size), f"calibrated on {len(sample)} verified faces{of}"


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

    A join reads nothing but the new faces (the caller passes them in) and the
    clusters' signature: its cost grows with the new faces, and in memory with the
    clusters and waiting faces, not with the library. Clusters someone else wrote
    (`facestore clusters --rebuild`, another daemon) are read back before joining.
    """

    def __init__(self, store: Store, distance: float | None, min_size: int | None) -> None:
        self.store = store
        self.distance = distance
        self.min_size = min_size
        self._space: str | None = None
        self._params: ClusterParams | None = None
        self._sums: dict[int, np.ndarray] = {}  # cluster id -> sum of its unit vectors
        self._centres = UnitRows()  # cluster id -> its mean direction
        self._member_of: dict[int, int] = {}  # clustered face -> cluster id
        self._waiting = UnitRows()  # unclustered unknown face -> unit vector
        self._signature: tuple[int, float] | None = None  # of the clusters as last written
        self._disabled_for: str | None = None

    def update(
        self,
        space: Space,
        full: bool = False,
        new: Mapping[int, np.ndarray] | None = None,
        unverified: Collection[int] | None = None,
        pairs: Mapping[int, Any] | None = None,
    ) -> None:
        """new: unknown faces (id -> vector) that may not be clustered yet; unverified:
        every unverified face, when the caller read them all (waiting faces not among
        them are forgotten); pairs: the verified faces' current training pairs, when
        the caller holds them (to calibrate the distance without reading them)."""
        if self._disabled_for == space.config_hash and not full:
            return  # tried again with the next model: there may be named people by then
        if full or self._space != space.config_hash or self._params is None:
            try:
                params, source = cluster_params(
                    self.store, space, self.distance, self.min_size, pairs
                )
            except ConfigurationError as exc:
                log.warning("Not clustering unknown faces: %s", exc)
                self._disabled_for = space.config_hash
                return
            self._disabled_for = None
            self._regroup_all(space, params, source)
            return
        if self.store.clusters.signature() != self._signature:
            log.info("The clusters were rewritten elsewhere; reading them back")
            self._read_back(space, self._params, new or {})
        if unverified is not None:
            keep = set(unverified)
            for gone in [f for f in self._waiting.ids() if f not in keep]:
                self._waiting.pop(gone)
        self._join(space, self._params, new or {})

    def _regroup_all(self, space: Space, params: ClusterParams, source: str) -> None:
        """Re-cluster every unknown face, and keep the centres and the waiting faces."""
        started = time.perf_counter()
        face_ids, vectors = self.store.clusters.unknown_vectors(space.config_hash)
        _, rows = _regroup(self.store, space, params, source, face_ids, vectors, started)
        self._remember(space, params, face_ids, vectors, {r.cluster_id: r.face_ids for r in rows})

    def _read_back(self, space: Space, params: ClusterParams, new: Collection[int]) -> None:
        face_ids, vectors = self.store.clusters.unknown_vectors(space.config_hash)
        members = self.store.clusters.members(space.config_hash)
        self._remember(space, params, face_ids, vectors, members)
        for face_id in new:  # to be joined now, not left waiting
            if face_id in self._waiting:
                self._waiting.pop(face_id)

    def _remember(
        self,
        space: Space,
        params: ClusterParams,
        face_ids: list[int],
        vectors: np.ndarray,
        members: Mapping[int, Collection[int]],
    ) -> None:
        units = dict(zip(face_ids, unit_rows(vectors), strict=True)) if face_ids else {}
        self._sums, self._centres, self._member_of = {}, UnitRows(), {}
        for cluster_id, faces in members.items():
            present = [units[f] for f in faces if f in units]
            if present:
                self._add_to(cluster_id, np.sum(present, axis=0))
                self._member_of.update((f, cluster_id) for f in faces)
        self._waiting = UnitRows()
        for face_id, unit in units.items():
            if face_id not in self._member_of:
                self._waiting.put(face_id, unit)
        self._space, self._params = space.config_hash, params
        self._signature = self.store.clusters.signature()

    def _join(self, space: Space, params: ClusterParams, new: Mapping[int, np.ndarray]) -> None:
        fresh = sorted(f for f in new if f not in self._member_of and f not in self._waiting)
        if not fresh:
            return
        joins: list[tuple[int, int]] = []
        founding: list[tuple[list[int], np.ndarray]] = []  # faces (founder first), centre
        for face_id in fresh:
            vector = unit_rows(np.asarray(new[face_id], dtype=np.float32)[None, :])[0]
            cluster_id = self._centres.nearest(vector, params.distance)
            if cluster_id is not None:
                joins.append((face_id, cluster_id))
                self._add_to(cluster_id, vector)
                continue
            near = self._waiting.within(vector, params.distance)
            if near and len(near) + 1 >= params.min_size:
                still = self.store.clusters.still_unknown(space.config_hash, near)
                for gone in set(near) - still:  # named, suggested or deleted meanwhile
                    self._waiting.pop(gone)
                near = sorted(still)
            if len(near) + 1 >= params.min_size:
                centre = vector + np.sum([self._waiting.pop(f) for f in near], axis=0)
                founding.append(([face_id, *near], centre))
            else:
                self._waiting.put(face_id, vector)
        if not joins and not founding:
            return
        rows = [
            ClusterRow(0, faces, faces[0], params.distance, params.min_size)
            for faces, _ in founding
        ]
        ids = self.store.clusters.extend(joins, rows, space.config_hash)
        for cluster_id, (faces, centre) in zip(ids, founding, strict=True):
            self._add_to(cluster_id, centre)
            self._member_of.update((f, cluster_id) for f in faces)
        self._member_of.update(joins)
        self._signature = self.store.clusters.signature()
        log.info("%d unknown faces joined clusters, %d clusters founded", len(joins), len(ids))

    def _add_to(self, cluster_id: int, vectors_sum: np.ndarray) -> None:
        total = self._sums.get(cluster_id, 0) + vectors_sum
        self._sums[cluster_id] = total
        self._centres.put(cluster_id, unit_rows(total[None, :])[0])

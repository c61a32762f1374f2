"""Groups of unknown faces in the library: parameters per space, a full re-cluster that
keeps ids (and records the ids a merge absorbed), and whom a group may be. The pure
algorithm is facestore.grouping; the daemon's incremental grouper is
facestore.daemon.grouper."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from facestore.artifacts import Bundle
from facestore.backbones import Space
from facestore.errors import ConfigurationError
from facestore.grouping import (
    DEFAULT_MIN_SIZE,
    EXACT_LIMIT,
    ClusterParams,
    absorbed_ids,
    calibrate,
    calibration_sample,
    group,
    representative,
    stable_ids,
)
from facestore.neighbours import Progress
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
    """The parameters for a space, and where they come from: the distance given, or
    the cut and the link calibrated on the library's verified faces (pairs: their
    face_id -> person_id, when the caller holds them; else read)."""
    size = min_size or DEFAULT_MIN_SIZE
    if distance is not None:
        return ClusterParams(distance, size), "given"
    if pairs is None:
        pairs = store.library.training_pairs(space.config_hash)
    blobs = store.library.vectors_of(space.config_hash, calibration_sample(pairs))
    sample = sorted(blobs)
    vectors = decode_vectors([blobs[face_id] for face_id in sample])
    calibrated = calibrate(vectors, [pairs[face_id] for face_id in sample]) if sample else None
    if calibrated is None:
        raise ConfigurationError(
            f"The clustering distance of space {space.label} is calibrated on the verified "
            "faces, and there are too few: name at least two people with two faces each, or "
            "pass --cluster-distance (a cosine distance in this space)."
        )
    of = f" (a sample of the {len(pairs)})" if len(sample) < len(pairs) else ""
    source = (
        f"calibrated on {len(sample)} verified faces{of} of {calibrated.people} people; "
        f"link {calibrated.link:.3f}"
    )
    return ClusterParams(calibrated.distance, size, calibrated.link), source


def recluster(
    store: Store,
    space: Space,
    params: ClusterParams,
    source: str,
    progress: Progress | None = None,
) -> ClusteringReport:
    """Group every unknown face anew; a group keeps the id of the cluster whose faces it
    mostly holds. Never touches person_id, verified or a named face. progress hears
    each stage of a long pass: read, neighbours, micro-clusters, linkage, write."""
    started = time.perf_counter()
    face_ids, vectors = read_unknown(store, space, progress)
    return regroup(store, space, params, source, face_ids, vectors, started, progress)[0]


def read_unknown(
    store: Store, space: Space, progress: Progress | None = None
) -> tuple[list[int], np.ndarray]:
    """The unknown faces' ids and vectors: float16 above EXACT_LIMIT (half the memory;
    the neighbour index keeps them in float16 anyway), else float32 for the exact path."""
    count = store.clusters.count_unknown(space.config_hash)
    dtype = np.float16 if count > EXACT_LIMIT else np.float32

    def read(done: int) -> None:
        if progress is not None:
            progress("read", done, count)

    return store.clusters.unknown_vectors(space.config_hash, dtype, read)


def regroup(
    store: Store,
    space: Space,
    params: ClusterParams,
    source: str,
    face_ids: list[int],
    vectors: np.ndarray,
    started: float,
    progress: Progress | None = None,
) -> tuple[ClusteringReport, list[ClusterRow]]:
    """recluster() on unknown faces already read: the report and the clusters written."""
    labels = group(vectors, params, progress=progress)
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    rows_of = np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(order) else []
    groups = {int(labels[rows[0]]): [face_ids[i] for i in rows] for rows in rows_of}
    previous = store.clusters.members(space.config_hash)
    ids = stable_ids(groups, previous, store.clusters.next_id(), present=face_ids)
    absorbed = absorbed_ids(groups, previous, ids)
    rows = []
    for members in rows_of:
        label = int(labels[members[0]])
        faces = groups[label]
        lead = faces[representative(vectors[members])]
        rows.append(
            ClusterRow(
                ids[label],
                [lead, *[f for f in faces if f != lead]],
                lead,
                params.distance,
                params.min_size,
            )
        )
    if progress is not None:
        progress("write", 0, 1)
    store.clusters.replace(space.config_hash, rows, absorbed)
    if progress is not None:
        progress("write", 1, 1)
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


MAY_BE_FACTOR = 1.5  # a group "may be" a known person within this times the rule's threshold


@dataclass(frozen=True)
class Resemblance:
    """The known person a group's faces lie nearest, in the open-set rule's distance."""

    person_id: Any
    distance: float  # the mean of the group's faces' distances to that person
    threshold: float  # the rule's: a face nearer than this is named

    def as_json(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "distance": round(self.distance, 4),
            "threshold": round(self.threshold, 4),
        }


def resemblances(
    store: Store, bundle: Bundle, clusters: Mapping[int, Collection[int]]
) -> dict[int, Resemblance]:
    """For each cluster whose faces lie within MAY_BE_FACTOR x the model's threshold of a
    known person, that person: a group the user may merge into someone (the same child
    some years later). Only with a model of the clusters' space and an open-set rule."""
    rule = bundle.open_set
    if rule is None or not clusters:
        return {}
    space_hash = str(bundle.embedding_config.get("config_hash"))
    found: dict[int, Resemblance] = {}
    for cluster_id, faces in clusters.items():
        blobs = store.library.vectors_of(space_hash, sorted(faces))
        if not blobs:
            continue
        vectors = decode_vectors(list(blobs.values()))
        mean = np.zeros(len(rule.centroids), dtype=np.float64)
        for start in range(0, len(vectors), 1024):
            mean += rule.distances(vectors[start : start + 1024]).sum(axis=0)
        mean /= len(vectors)
        best = int(np.argmin(mean))
        if mean[best] <= MAY_BE_FACTOR * rule.threshold:
            found[cluster_id] = Resemblance(
                bundle.person_ids[best], float(mean[best]), rule.threshold
            )
    return found

"""The daemon's clusters of unknown faces: joins as faces arrive, and full passes that
bring them back to what a rebuild gives (facestore.unknown_faces)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import numpy as np

from facestore.backbones import Space
from facestore.clustering import EXACT_LIMIT, ClusterParams, unit_rows, unit_rows_in_place
from facestore.daemon.full_pass import FullPass
from facestore.errors import ConfigurationError, FacestoreError
from facestore.store import ClusterRow, Store, decode_vectors
from facestore.unknown_faces import cluster_params, read_unknown, regroup
from facestore.vector_rows import IndexedRows, UnitRows

log = logging.getLogger(__name__)

# The daemon re-clusters every unknown face when the faces that came since its last full
# pass reach RECLUSTER_SHARE of them, or when a pass brings none (the arrivals paused);
# either only once RECLUSTER_SPACING times the last full pass's duration has gone by,
# so that full passes take at most about 1/RECLUSTER_SPACING of the daemon's time.
RECLUSTER_SHARE = 0.1
RECLUSTER_SPACING = 10.0
# Above this many unknown faces a full pass runs in a child process (when the daemon
# gives the clusterer one), beside the daemon's work: seconds below it, minutes above.
CHILD_ABOVE = EXACT_LIMIT


class Clusterer:
    """The daemon's clusters. A full re-cluster when it starts and after each new model
    (every suggestion is redone then); between those, each new unknown face joins the
    cluster it would join in a full pass (mean distance to its faces within the cut, a
    face of it within the link), or founds one with waiting faces within the link, or
    waits. Joins are immediate but depend on the order faces arrive in, so the
    clusters are regrouped fully now and then (RECLUSTER_SHARE, RECLUSTER_SPACING): once the
    arrivals pause, they are what `facestore clusters --rebuild` gives, with ids kept
    (a merge keeps the larger cluster's id and records the other's).

    A join reads nothing but the new faces (the caller passes them in) and the
    clusters' signature. Clusters someone else wrote (`facestore clusters --rebuild`,
    another daemon) are read back before joining.
    """

    def __init__(
        self,
        store: Store,
        distance: float | None,
        min_size: int | None,
        clock: Callable[[], float] = time.monotonic,
        full_pass: FullPass | None = None,
    ) -> None:
        """full_pass: where the full re-clusters of a large library run (more than
        CHILD_ABOVE unknown faces): a child process beside the daemon's work. None:
        every full pass here, in this process."""
        self.store = store
        self.full_pass = full_pass
        self._held: dict[int, np.ndarray] = {}  # faces that came while a child pass ran
        self._state_of: str | None = None  # the space whose groups are in memory
        self._pass_started = 0.0
        self.distance = distance
        self.min_size = min_size
        self.clock = clock
        self._space: str | None = None
        self._params: ClusterParams | None = None
        self._source = ""
        self._sums: dict[int, np.ndarray] = {}  # cluster id -> sum of its unit vectors
        self._means = UnitRows()  # cluster id -> the mean of its unit vectors
        self._members: dict[int, list[int]] = {}  # cluster id -> its faces
        self._member_of: dict[int, int] = {}  # clustered face -> cluster id
        self._clustered = UnitRows()  # clustered face -> unit vector
        # unclustered unknown face -> unit vector; an index of them above EXACT_LIMIT
        self._waiting: UnitRows | IndexedRows = UnitRows()
        self._signature: tuple[int, float] | None = None  # of the clusters as last written
        self._disabled_for: str | None = None
        self._since_full = 0  # faces that came or went since the last full pass
        self._full_seconds = 0.0  # how long the last full pass took
        self._full_at = 0.0  # when it ended (clock)
        self.full_passes = 0

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
        the caller holds them (to calibrate the distances without reading them)."""
        if self._disabled_for == space.config_hash and not full:
            return  # tried again with the next model: there may be named people by then
        if self.full_pass is not None and self.full_pass.running:
            self._held.update(new or {})
            if not full and not self._child_pass_ended(space):
                return  # the faces wait for the new groups
            new, self._held = dict(self._held), {}
            if not full and self._params is not None:
                self._join(space, self._params, new)
                return
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
                self._since_full += 1
        arrived = self._join(space, self._params, new or {})
        if self._full_pass_due(arrived):
            self._regroup_all(space, self._params, self._source)

    def _full_pass_due(self, arrived: int) -> bool:
        if not self._since_full:
            return False
        if self.clock() - self._full_at < RECLUSTER_SPACING * self._full_seconds:
            return False
        unknown = len(self._clustered) + len(self._waiting)
        return arrived == 0 or self._since_full >= RECLUSTER_SHARE * unknown

    def _child_pass_ended(self, space: Space) -> bool:
        """Has the child's pass ended? Its groups are read back when it has; when it
        failed, the old ones (still in the database) stay."""
        assert self.full_pass is not None
        try:
            report = self.full_pass.poll()
        except FacestoreError as exc:  # the next try waits as long as after a pass
            log.error("The full re-cluster failed: %s", exc)
            self._full_seconds = time.perf_counter() - self._pass_started
            self._full_at = self.clock()
            return True
        if report is None:
            return False
        if self._params is not None and self._state_of == space.config_hash:
            self._take_back(space, self._params)
        elif self._params is not None:  # no groups in memory yet: read them all
            self._read_back(space, self._params, self._held)
        self._since_full = 0
        self._full_seconds = time.perf_counter() - self._pass_started
        self._full_at = self.clock()
        self.full_passes += 1
        return True

    @property
    def progress(self) -> tuple[str, int, int] | None:
        """The running child pass's stage: (stage, done, total); None when none runs."""
        return self.full_pass.stage if self.full_pass is not None else None

    def close(self) -> None:
        """Stop a full pass in progress: the old groups stay."""
        if self.full_pass is not None:
            self.full_pass.stop()

    def _regroup_all(self, space: Space, params: ClusterParams, source: str) -> None:
        """Re-cluster every unknown face, and keep the clusters and the waiting faces:
        here, or in the child process for a large library."""
        if (
            self.full_pass is not None
            and self.store.clusters.count_unknown(space.config_hash) > CHILD_ABOVE
        ):
            self._space, self._params, self._source = space.config_hash, params, source
            self._pass_started = time.perf_counter()
            self.full_pass.start(space, params, source)
            return
        started = time.perf_counter()
        face_ids, vectors = read_unknown(self.store, space)
        _, rows = regroup(self.store, space, params, source, face_ids, vectors, started)
        self._remember(space, params, face_ids, vectors, {r.cluster_id: r.face_ids for r in rows})
        self._source = source
        self._since_full = 0
        self._full_seconds = time.perf_counter() - started
        self._full_at = self.clock()
        self.full_passes += 1

    def _read_back(self, space: Space, params: ClusterParams, new: Collection[int]) -> None:
        face_ids, vectors = read_unknown(self.store, space)
        members = self.store.clusters.members(space.config_hash)
        self._remember(space, params, face_ids, vectors, members)
        for face_id in new:  # to be joined now, not left waiting
            if face_id in self._waiting:
                self._waiting.pop(face_id)

    def _take_back(self, space: Space, params: ClusterParams) -> None:
        """The groups this daemon's child wrote, taken in with the vectors this process
        holds: a face moves between the clusters and the waiting faces; only the faces
        it never saw are read (not the whole library, as _read_back does)."""
        members = self.store.clusters.members(space.config_hash)
        before = self._member_of
        now = {face: cluster for cluster, faces in members.items() for face in faces}
        units: dict[int, np.ndarray | None] = {}
        for face in now:
            if face in before:
                units[face] = self._clustered.get(face)
            elif face in self._waiting:
                units[face] = self._waiting.pop(face)
            else:  # came while the pass ran, or embedded by another process
                units[face] = self._held.get(face)
        missing = [f for f, unit in units.items() if unit is None]
        if missing:
            blobs = self.store.library.vectors_of(space.config_hash, missing)
            for face in missing:
                units[face] = decode_vectors([blobs[face]])[0] if face in blobs else None
        for face in before:
            if face not in now:
                self._waiting.put(face, self._clustered.get(face))
        old = self._clustered
        self._sums, self._means, self._members, self._member_of = {}, UnitRows(), {}, {}
        self._clustered = UnitRows()
        for cluster_id, faces in members.items():
            present = [f for f in faces if units.get(f) is not None]
            if present:
                rows = unit_rows(np.array([units[f] for f in present], dtype=np.float32))
                self._add_to(cluster_id, present, rows)
        del old
        self._space, self._params, self._state_of = space.config_hash, params, space.config_hash
        self._signature = self.store.clusters.signature()
        for face in self._held:  # to be joined now, not left waiting
            if face in self._waiting:
                self._waiting.pop(face)

    def _remember(
        self,
        space: Space,
        params: ClusterParams,
        face_ids: list[int],
        vectors: np.ndarray,
        members: Mapping[int, Collection[int]],
    ) -> None:
        units = unit_rows_in_place(vectors) if face_ids else vectors
        row_of = {face_id: row for row, face_id in enumerate(face_ids)}
        self._sums, self._means, self._members, self._member_of = {}, UnitRows(), {}, {}
        self._clustered = UnitRows()
        for cluster_id, faces in members.items():
            present = [row_of[f] for f in faces if f in row_of]
            if present:
                faces_present = [face_ids[row] for row in present]
                self._add_to(cluster_id, faces_present, units[present].astype(np.float32))
        waiting = np.array([row for row, f in enumerate(face_ids) if f not in self._member_of])
        waiting_ids = [face_ids[row] for row in waiting]
        if len(waiting) > EXACT_LIMIT:  # one product per new face would read them all
            self._waiting = IndexedRows(waiting_ids, units, waiting)
        else:
            self._waiting = UnitRows()
            for face_id, row in zip(waiting_ids, waiting.tolist(), strict=True):
                self._waiting.put(face_id, units[row].astype(np.float32))
        self._space, self._params, self._state_of = space.config_hash, params, space.config_hash
        self._signature = self.store.clusters.signature()

    def _join(self, space: Space, params: ClusterParams, new: Mapping[int, np.ndarray]) -> int:
        """Join or found clusters with the new faces; returns how many were new here."""
        fresh = sorted(f for f in new if f not in self._member_of and f not in self._waiting)
        if not fresh:
            return 0
        self._since_full += len(fresh)
        link = params.link_distance
        joins: list[tuple[int, int]] = []
        founding: list[tuple[list[int], np.ndarray]] = []  # faces (founder first), units
        for face_id in fresh:
            vector = unit_rows(np.asarray(new[face_id], dtype=np.float32)[None, :])[0]
            cluster_id = self._means.nearest(vector, params.distance)
            if cluster_id is not None and self._has_mate(cluster_id, vector, link):
                joins.append((face_id, cluster_id))
                self._add_to(cluster_id, [face_id], vector[None, :])
                continue
            near = self._waiting.within(vector, link)
            if near and len(near) + 1 >= params.min_size:
                still = self.store.clusters.still_unknown(space.config_hash, near)
                for gone in set(near) - still:  # named, suggested or deleted meanwhile
                    self._waiting.pop(gone)
                near = sorted(still)
            if len(near) + 1 >= params.min_size:
                units = np.array([vector, *[self._waiting.pop(f) for f in near]])
                founding.append(([face_id, *near], units))
            else:
                self._waiting.put(face_id, vector)
        if not joins and not founding:
            return len(fresh)
        rows = [
            ClusterRow(0, faces, faces[0], params.distance, params.min_size)
            for faces, _ in founding
        ]
        ids = self.store.clusters.extend(joins, rows, space.config_hash)
        for cluster_id, (faces, units) in zip(ids, founding, strict=True):
            self._add_to(cluster_id, faces, units)
        self._signature = self.store.clusters.signature()
        log.info("%d unknown faces joined clusters, %d clusters founded", len(joins), len(ids))
        return len(fresh)

    def _has_mate(self, cluster_id: int, vector: np.ndarray, link: float) -> bool:
        faces = self._members[cluster_id]
        units = np.array([self._clustered.get(f) for f in faces])
        return bool(1.0 - float((units @ vector).max()) <= link + 1e-6)

    def _add_to(self, cluster_id: int, faces: list[int], units: np.ndarray) -> None:
        total = self._sums.get(cluster_id, 0) + units.sum(axis=0)
        self._sums[cluster_id] = total
        self._members.setdefault(cluster_id, []).extend(faces)
        for face_id, unit in zip(faces, units, strict=True):
            self._member_of[face_id] = cluster_id
            self._clustered.put(face_id, unit)
        self._means.put(cluster_id, total / len(self._members[cluster_id]))

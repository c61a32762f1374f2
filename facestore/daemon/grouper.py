"""The daemon's clusters of unknown faces: joins as faces arrive, and full passes that
bring them back to what a rebuild gives (facestore.unknown_groups); a large library's
full pass in a child process (facestore.daemon.full_pass), its groups then read in a
thread, so that the daemon's work goes on."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import numpy as np

from facestore.backbones import Space
from facestore.daemon.full_pass import FullPass
from facestore.daemon.group_memory import GroupMemory, read_memory, take_over
from facestore.errors import ConfigurationError, FacestoreError
from facestore.grouping import EXACT_LIMIT, ClusterParams, unit_rows
from facestore.store import ClusterRow, Store, decode_vectors
from facestore.unknown_groups import cluster_params, read_unknown, regroup

log = logging.getLogger(__name__)

# The daemon re-clusters every unknown face when the faces that came since its last full
# pass reach RECLUSTER_SHARE of them, or when a pass brings none (the arrivals paused);
# either only once RECLUSTER_SPACING times the last full pass's duration has gone by,
# so that full passes take at most about 1/RECLUSTER_SPACING of the daemon's time.
RECLUSTER_SHARE = 0.1
RECLUSTER_SPACING = 10.0
# Above this many unknown faces a full pass runs in a child process (when the daemon
# gives the grouper one), beside the daemon's work: seconds below it, minutes above.
CHILD_ABOVE = EXACT_LIMIT


class Grouper:
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
        self.distance = distance
        self.min_size = min_size
        self.clock = clock
        self.full_pass = full_pass
        self._memory = GroupMemory()
        self._memory_of: str | None = None  # the space whose groups are in memory
        self._held: dict[int, np.ndarray] = {}  # faces that came while a full pass ran
        self._space: str | None = None
        self._params: ClusterParams | None = None
        self._source = ""
        self._disabled_for: str | None = None
        self._since_full = 0  # faces that came or went since the last full pass
        self._pass_started = 0.0
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
        if self.full_pass is not None and self.full_pass.busy:
            self._held.update(new or {})
            if not full and not self._pass_ended(space):
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
        if self.store.clusters.signature() != self._memory.signature:
            log.info("The clusters were rewritten elsewhere; reading them back")
            self._read_back(space, self._params, new or {})
        if unverified is not None:
            keep = set(unverified)
            gone = [f for f in self._memory.waiting.ids() if f not in keep]
            self._memory.forget_waiting(gone)
            self._since_full += len(gone)
        arrived = self._join(space, self._params, new or {})
        if self._full_pass_due(arrived):
            self._regroup_all(space, self._params, self._source)

    def _full_pass_due(self, arrived: int) -> bool:
        if not self._since_full:
            return False
        if self.clock() - self._full_at < RECLUSTER_SPACING * self._full_seconds:
            return False
        return arrived == 0 or self._since_full >= RECLUSTER_SHARE * len(self._memory)

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
        self._pass_started = time.perf_counter()
        self._space, self._params, self._source = space.config_hash, params, source
        large = self.store.clusters.count_unknown(space.config_hash) > CHILD_ABOVE
        if self.full_pass is not None and large:
            self.full_pass.start(space, params, source)
            return
        face_ids, vectors = read_unknown(self.store, space)
        _, rows = regroup(self.store, space, params, source, face_ids, vectors, self._pass_started)
        members = {r.cluster_id: r.face_ids for r in rows}
        signature = self.store.clusters.signature()
        self._remember(space, read_memory(face_ids, vectors, members, signature))
        self._pass_finished()

    def _pass_ended(self, space: Space) -> bool:
        """Has the child's pass (and the reading of its groups) ended? When it has, its
        groups are this grouper's; when it failed, the old ones stay (in the database
        too) and the next try comes no sooner than after a pass."""
        assert self.full_pass is not None
        try:
            report = self.full_pass.poll()
        except FacestoreError as exc:
            log.error("The full re-cluster failed: %s", exc)
            self._pass_finished(failed=True)
            return True
        if report is None:
            return False
        if isinstance(report, GroupMemory):  # read in the background: see below
            self._remember(space, report)
        elif self._memory_of == space.config_hash:  # taken over from the memory
            signature = self.store.clusters.signature()  # before: a later write shows
            members = self.store.clusters.members(space.config_hash)
            memory = take_over(self._memory, members, self._held, self._vectors_of, signature)
            self._remember(space, memory)
        else:  # nothing in memory yet: every unknown face is read, beside the daemon's work
            self.full_pass.read_in_background(lambda: self._read_memory(space))
            return False
        self._memory.forget_waiting(self._held)  # to be joined now, not left waiting
        self._pass_finished()
        return True

    def _pass_finished(self, failed: bool = False) -> None:
        if not failed:
            self._since_full = 0
            self.full_passes += 1
        self._full_seconds = time.perf_counter() - self._pass_started
        self._full_at = self.clock()

    def _vectors_of(self, face_ids: Sequence[int]) -> dict[int, np.ndarray]:
        assert self._space is not None
        blobs = self.store.library.vectors_of(self._space, face_ids)
        return {face: decode_vectors([blob])[0] for face, blob in blobs.items()}

    def _read_memory(self, space: Space) -> GroupMemory:
        signature = self.store.clusters.signature()  # before: a later write shows
        face_ids, vectors = read_unknown(self.store, space)
        members = self.store.clusters.members(space.config_hash)
        return read_memory(face_ids, vectors, members, signature)

    def _read_back(self, space: Space, params: ClusterParams, new: Collection[int]) -> None:
        self._remember(space, self._read_memory(space))
        self._params = params
        self._memory.forget_waiting(new)  # to be joined now, not left waiting

    def _remember(self, space: Space, memory: GroupMemory) -> None:
        self._memory, self._memory_of, self._space = memory, space.config_hash, space.config_hash

    def _join(self, space: Space, params: ClusterParams, new: Mapping[int, np.ndarray]) -> int:
        """Join or found clusters with the new faces; returns how many were new here."""
        fresh = sorted(
            f for f in new if f not in self._memory.member_of and f not in self._memory.waiting
        )
        if not fresh:
            return 0
        self._since_full += len(fresh)
        link = params.link_distance
        joins: list[tuple[int, int]] = []
        founding: list[tuple[list[int], np.ndarray]] = []  # faces (founder first), units
        for face_id in fresh:
            vector = unit_rows(np.asarray(new[face_id], dtype=np.float32)[None, :])[0]
            cluster_id = self._memory.means.nearest(vector, params.distance)
            if cluster_id is not None and self._memory.has_mate(cluster_id, vector, link):
                joins.append((face_id, cluster_id))
                self._memory.add_to(cluster_id, [face_id], vector[None, :])
                continue
            near = self._memory.waiting.within(vector, link)
            if near and len(near) + 1 >= params.min_size:
                still = self.store.clusters.still_unknown(space.config_hash, near)
                for gone in set(near) - still:  # named, suggested or deleted meanwhile
                    self._memory.waiting.pop(gone)
                near = sorted(still)
            if len(near) + 1 >= params.min_size:
                units = np.array([vector, *[self._memory.waiting.pop(f) for f in near]])
                founding.append(([face_id, *near], units))
            else:
                self._memory.waiting.put(face_id, vector)
        if not joins and not founding:
            return len(fresh)
        rows = [
            ClusterRow(0, faces, faces[0], params.distance, params.min_size)
            for faces, _ in founding
        ]
        ids = self.store.clusters.extend(joins, rows, space.config_hash)
        for cluster_id, (faces, units) in zip(ids, founding, strict=True):
            self._memory.add_to(cluster_id, faces, units)
        self._memory.signature = self.store.clusters.signature()
        log.info("%d unknown faces joined clusters, %d clusters founded", len(joins), len(ids))
        return len(fresh)

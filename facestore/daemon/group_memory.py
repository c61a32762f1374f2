"""The daemon's groups in memory: each cluster's faces with the sum and mean of their unit
vectors, and the unknown faces waiting for a group; built from the database, or taken
over from the previous memory after a full pass (facestore.daemon.grouper)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np

from facestore.grouping import EXACT_LIMIT, unit_rows, unit_rows_in_place
from facestore.vector_rows import IndexedRows, UnitRows


class GroupMemory:
    """Clusters (faces, sums and means of unit vectors) and the waiting faces."""

    def __init__(self, waiting: UnitRows | IndexedRows | None = None) -> None:
        self.sums: dict[int, np.ndarray] = {}  # cluster id -> sum of its unit vectors
        self.means = UnitRows()  # cluster id -> the mean of its unit vectors
        self.members: dict[int, list[int]] = {}  # cluster id -> its faces
        self.member_of: dict[int, int] = {}  # clustered face -> cluster id
        self.clustered = UnitRows()  # clustered face -> unit vector
        # unclustered unknown face -> unit vector; an inverted file of them when large
        self.waiting: UnitRows | IndexedRows = waiting if waiting is not None else UnitRows()
        self.signature: tuple[int, float] | None = None  # of the clusters it was read with

    def __len__(self) -> int:
        """Unknown faces held: in clusters and waiting."""
        return len(self.clustered) + len(self.waiting)

    def add_to(self, cluster_id: int, faces: list[int], units: np.ndarray) -> None:
        total = self.sums.get(cluster_id, 0) + units.sum(axis=0)
        self.sums[cluster_id] = total
        self.members.setdefault(cluster_id, []).extend(faces)
        for face_id, unit in zip(faces, units, strict=True):
            self.member_of[face_id] = cluster_id
            self.clustered.put(face_id, unit)
        self.means.put(cluster_id, total / len(self.members[cluster_id]))

    def has_mate(self, cluster_id: int, vector: np.ndarray, link: float) -> bool:
        units = np.array([self.clustered.get(f) for f in self.members[cluster_id]])
        return bool(1.0 - float((units @ vector).max()) <= link + 1e-6)

    def forget_waiting(self, faces: Collection[int]) -> None:
        for face in faces:
            if face in self.waiting:
                self.waiting.pop(face)


def read_memory(
    face_ids: list[int],
    vectors: np.ndarray,
    members: Mapping[int, Collection[int]],
    signature: tuple[int, float],
) -> GroupMemory:
    """The unknown faces split into the clusters' and the waiting ones; the waiting ones
    of a large library in an inverted file (IndexedRows), so that a join stays cheap.
    signature: the clusters' signature, read before the members."""
    units = unit_rows_in_place(vectors) if face_ids else vectors
    row_of = {face_id: row for row, face_id in enumerate(face_ids)}
    memory = GroupMemory()
    for cluster_id, faces in members.items():
        present = [row_of[f] for f in faces if f in row_of]
        if present:
            in_cluster = [face_ids[row] for row in present]
            memory.add_to(cluster_id, in_cluster, units[present].astype(np.float32))
    waiting = np.array([r for r, f in enumerate(face_ids) if f not in memory.member_of], np.int64)
    waiting_ids = [face_ids[row] for row in waiting]
    if len(waiting) > EXACT_LIMIT:  # one product per new face would read them all
        memory.waiting = IndexedRows(waiting_ids, units, waiting)
    else:
        for face_id, row in zip(waiting_ids, waiting.tolist(), strict=True):
            memory.waiting.put(face_id, units[row].astype(np.float32))
    memory.signature = signature
    return memory


def take_over(
    old: GroupMemory,
    members: Mapping[int, Collection[int]],
    held: Mapping[int, np.ndarray],
    read: Callable[[Sequence[int]], dict[int, np.ndarray]],
    signature: tuple[int, float],
) -> GroupMemory:
    """The memory of new clusters, from the old one's vectors: a face moves between the
    clusters and the waiting faces (the old waiting rows are kept, not rebuilt); the
    faces it never held come from held (arrived meanwhile) or read (face ids ->
    vectors, from the database)."""
    units: dict[int, np.ndarray | None] = {}
    now = {face for faces in members.values() for face in faces}
    for face in now:
        if face in old.member_of:
            units[face] = old.clustered.get(face)
        elif face in old.waiting:
            units[face] = old.waiting.pop(face)
        else:  # came while the pass ran, or embedded by another process
            units[face] = held.get(face)
    missing = [f for f, unit in units.items() if unit is None]
    units.update(read(missing) if missing else {})
    for face in old.member_of:
        if face not in now:
            old.waiting.put(face, old.clustered.get(face))
    memory = GroupMemory(old.waiting)
    for cluster_id, faces in members.items():
        present = [f for f in faces if units.get(f) is not None]
        if present:
            rows = unit_rows(np.array([units[f] for f in present], dtype=np.float32))
            memory.add_to(cluster_id, present, rows)
    memory.signature = signature
    return memory

"""Groups of unknown faces, and the ids that keep them recognisable across runs. Pure.

The method (chosen on real faces of two backbone families, docs/accuracy.md):
leader micro-clusters of radius `distance * LEADER_SHARE`, then average linkage over
their centroids, cut at `distance` (cosine distance, the space's own units); then
every member must have a group mate within `link` of it, and a group of fewer than
`min_size` faces is no group. Average linkage does not chain one person into the
next the way DBSCAN does; the link rule keeps a face seen once from joining a group
on its mean distance alone; the micro-clusters keep 20,000 faces within seconds.

Both distances are calibrated per space on the library's verified faces
(`calibrate`): the cut is the distance below which only PAIR_FALSE_MERGE of the
pairs of two different people fall (the impostor pairs, as the open-set rule reads
its impostor distances), and the link the distance within which LINK_GENUINE of the
verified faces have another face of their own person. No backbone has a constant.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from facestore.openset import impostor_quantile, unit_rows

if TYPE_CHECKING:
    from facestore.neighbours import NeighbourIndex, Progress

LEADER_SHARE = 1 / 3  # micro-cluster radius / cut
# Two faces are too little to show as a person: a pair is as often a pose fragment of
# someone with a group already, or two strangers, as a new person (ORL, dlib: 1.55 groups
# per new person at 2, 1.18 at 3; docs/accuracy.md). Immich's minFaces is 3 too.
DEFAULT_MIN_SIZE = 3
# Share of impostor pairs (two verified faces of different people) closer than the cut.
# 0.1% on ORL: dlib 0.056 (purity 0.99), casia-webface 0.44 (purity 1.0). 0.3% raised the
# pairwise F over random splits but merged two new people with casia-webface in the
# daemon's bench (purity 0.93): docs/accuracy.md, "Recall of the groups".
PAIR_FALSE_MERGE = 0.001
# Share of verified faces with a face of their own person within the link distance.
# 95% (was 90%): pairwise F over random splits of ORL up 0.005-0.02 (dlib) and 0.03
# (casia-webface), purity the same (bench/group_methods.py).
LINK_GENUINE = 0.95
# Above CALIBRATION_FACES verified faces the distances are calibrated on a sample: up to
# CALIBRATION_PEOPLE people, up to CALIBRATION_PER_PERSON faces each (ORL: 40 people, 7 each)
CALIBRATION_FACES = 2000
CALIBRATION_PEOPLE = 100
CALIBRATION_PER_PERSON = 20
# Up to this many unknown faces every pair is compared (20,000: 4.4 s); above, a
# nearest-neighbour index finds the near ones (docs/benchmarks.md).
EXACT_LIMIT = 20_000


@dataclass(frozen=True)
class ClusterParams:
    distance: float  # cosine distance at which groups are cut (average linkage)
    min_size: int = DEFAULT_MIN_SIZE
    link: float | None = None  # each member's nearest group mate within it (None: distance)

    @property
    def link_distance(self) -> float:
        return self.distance if self.link is None else min(self.link, self.distance)


@dataclass(frozen=True)
class Calibration:
    """The cut and the link of a space, and what they were read from."""

    distance: float
    link: float
    method: str  # how the impostor quantile was found (openset.impostor_quantile)
    faces: int
    people: int


def leaders(vectors: np.ndarray, radius: float, block: int = 256) -> np.ndarray:
    """Micro-cluster per face, in order: the nearest leader within radius, else the face
    leads a new one. A block of faces is compared with the leaders it starts with in
    one product; the leaders the block itself makes are checked face by face."""
    chosen = np.zeros((max(1, min(len(vectors), 1024)), vectors.shape[1]), np.float32)
    count = 0
    labels = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), block):
        rows = vectors[start : start + block]
        before = count
        if before:
            known = rows @ chosen[:before].T
            known_best = known.argmax(axis=1)
            known_similarity = known[np.arange(len(rows)), known_best]
        for offset, vector in enumerate(rows):
            best, similarity = -1, -np.inf
            if before:
                best, similarity = int(known_best[offset]), float(known_similarity[offset])
            if count > before:
                fresh = chosen[before:count] @ vector
                nearest = int(np.argmax(fresh))
                if float(fresh[nearest]) > similarity:
                    best, similarity = before + nearest, float(fresh[nearest])
            if best >= 0 and 1.0 - similarity <= radius:
                labels[start + offset] = best
                continue
            if count == len(chosen):
                chosen = np.concatenate([chosen, np.zeros_like(chosen)])
            chosen[count] = vector
            labels[start + offset] = count
            count += 1
    return labels


def components(units: np.ndarray, distance: float, block: int = 2048) -> list[np.ndarray]:
    """The connected components of "within distance" over unit rows (indices each).

    Average linkage never joins groups with no pair within the cut, so each component
    can be cut alone: the distance matrices stay per component, not N x N (20,000
    faces: 1.6 GB in one piece). Built block by block, in float32.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = [], []
    for start in range(0, len(units), block):
        similarity = units[start : start + block] @ units.T
        near_rows, near_cols = np.nonzero(similarity >= 1.0 - distance - 1e-6)
        rows.append(near_rows + start)
        cols.append(near_cols)
    graph = coo_matrix(
        (
            np.ones(sum(len(r) for r in rows), dtype=np.int8),
            (np.concatenate(rows), np.concatenate(cols)),
        ),
        shape=(len(units), len(units)),
    )
    count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if count else []


def group(
    vectors: np.ndarray,
    params: ClusterParams,
    index: NeighbourIndex | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """A group label per face (>= 0; equal labels, one group), -1 for faces in none.

    Up to EXACT_LIMIT faces (and no index given), every pair is compared: the exact
    method below. Above it, or with an index, the same method runs on the index's
    neighbour graph (facestore.neighbour_graph): faiss's inverted file by default."""
    if index is None and len(vectors) > EXACT_LIMIT:
        from facestore.neighbours import ApproximateIndex

        index = ApproximateIndex()
    if index is not None:
        from facestore.neighbour_graph import group_by_neighbours

        return group_by_neighbours(
            unit_rows_in_place(vectors),
            params.distance,
            params.distance * LEADER_SHARE,
            params.link_distance,
            params.min_size,
            index,
            progress=progress,
        )
    return group_exactly(vectors, params)


def group_exactly(vectors: np.ndarray, params: ClusterParams) -> np.ndarray:
    """group(), comparing every face with every leader and every centroid."""
    from scipy.cluster.hierarchy import fcluster, linkage  # ~0.2 s: not at CLI start

    if len(vectors) == 0:
        return np.zeros(0, dtype=np.int64)
    units = unit_rows(vectors)
    micro = leaders(units, params.distance * LEADER_SHARE)
    sums = np.zeros((int(micro.max()) + 1, units.shape[1]))
    np.add.at(sums, micro, units)
    centroids = unit_rows(sums)
    groups = np.empty(len(centroids), dtype=np.int64)
    count = 0
    for members in components(centroids, params.distance):
        if len(members) == 1:
            groups[members] = count
            count += 1
            continue
        tree = linkage(centroids[members], method="average", metric="cosine")
        found = fcluster(tree, t=params.distance, criterion="distance") - 1
        groups[members] = count + found
        count += int(found.max()) + 1
    return linked(units, groups[micro], params.link_distance, params.min_size)


def unit_rows_in_place(vectors: np.ndarray, block: int = 16384) -> np.ndarray:
    """vectors scaled to unit length a block at a time, in their own dtype (float16 stays
    float16: no float32 copy of a million rows); a float32 copy of anything else."""
    if vectors.dtype != np.float16:
        return unit_rows(vectors)
    for start in range(0, len(vectors), block):
        vectors[start : start + block] = unit_rows(vectors[start : start + block])
    return vectors


def linked(units: np.ndarray, labels: np.ndarray, link: float, min_size: int) -> np.ndarray:
    """labels where every member has a group mate within link (others leave, as -1,
    until each one left has one), and every group has min_size faces."""
    labels = labels.copy()
    if min_size <= 1:
        return labels
    sizes = np.bincount(labels)
    labels[sizes[labels] < min_size] = -1  # most faces of a large library: alone
    order = np.argsort(labels, kind="stable")
    order = order[labels[order] >= 0]
    for members in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1):
        kept = members
        while len(kept) >= min_size:
            near = nearest_mate(units[kept]) <= link + 1e-6
            if near.all():
                break
            labels[kept[~near]] = -1
            kept = kept[near]
        if len(kept) < min_size:
            labels[kept] = -1
    return labels


def nearest_mate(units: np.ndarray, block: int = 2048) -> np.ndarray:
    """Each row's cosine distance to the nearest other row (a block of rows at a time)."""
    out = np.empty(len(units), dtype=np.float32)
    for start in range(0, len(units), block):
        similarity = units[start : start + block] @ units.T
        rows = np.arange(len(similarity))
        similarity[rows, rows + start] = -np.inf
        out[start : start + block] = 1.0 - similarity.max(axis=1)
    return out


def calibration_sample(pairs: Mapping[int, object], seed: int = 0) -> list[int]:
    """The verified faces (face_id -> person) to calibrate the distance on: all of them
    up to CALIBRATION_FACES, else a seeded sample of people and of their faces, so
    that the cost does not grow with the library (each grid step clusters them)."""
    if len(pairs) <= CALIBRATION_FACES:
        return sorted(pairs)
    by_person: dict[str, list[int]] = {}
    for face_id in sorted(pairs):
        by_person.setdefault(str(pairs[face_id]), []).append(face_id)
    rng = np.random.default_rng(seed)
    people = sorted(by_person)
    if len(people) > CALIBRATION_PEOPLE:
        people = sorted(rng.choice(people, CALIBRATION_PEOPLE, replace=False).tolist())
    chosen: list[int] = []
    for person in people:
        faces = by_person[person]
        if len(faces) > CALIBRATION_PER_PERSON:
            faces = rng.choice(faces, CALIBRATION_PER_PERSON, replace=False).tolist()
        chosen.extend(int(face_id) for face_id in faces)
    return sorted(chosen)


def calibrate(vectors: np.ndarray, people: Sequence[object]) -> Calibration | None:
    """The cut and the link for a space, from its verified faces (and their people);
    None without two people of two faces each.

    The cut: the impostor pair distance at PAIR_FALSE_MERGE (with few impostor pairs,
    the lower of the empirical quantile and a normal fit's, as the open-set rule
    does). The link: the distance within which LINK_GENUINE of the faces have a face
    of their own person, never above the cut.
    """
    names = np.asarray([str(p) for p in people])
    counts = Counter(names.tolist())
    if sum(1 for n in counts.values() if n >= 2) < 2:
        return None
    units = unit_rows(vectors)
    similarity = units @ units.T
    same = names[:, None] == names[None, :]
    upper = np.triu(np.ones_like(same), k=1)
    impostor = 1.0 - similarity[upper & ~same]
    distance, method = impostor_quantile(impostor, PAIR_FALSE_MERGE)
    np.fill_diagonal(same, False)
    nearest_own = np.where(same, similarity, -np.inf).max(axis=1)
    genuine = 1.0 - nearest_own[np.isfinite(nearest_own)]
    link = float(np.quantile(genuine, LINK_GENUINE))
    distance = max(distance, 0.0)
    return Calibration(distance, min(link, distance), method, len(names), len(counts))


def stable_ids(
    groups: Mapping[int, Iterable[int]],
    previous: Mapping[int, Iterable[int]],
    next_id: int,
    present: Iterable[int] | None = None,
) -> dict[int, int]:
    """group label -> cluster id. A group keeps the id of an earlier cluster when it
    holds most (over half) of that cluster's faces still present (default: in some
    group; faces named or deleted since do not count), biggest overlaps first, each id
    once; other groups get new ids from next_id up."""
    members = {label: set(faces) for label, faces in groups.items()}
    in_run = set(present) if present is not None else set().union(*members.values())
    old = {cid: set(faces) & in_run for cid, faces in previous.items()}
    pairs = sorted(
        (
            (len(faces & old_faces), label, cid)
            for label, faces in members.items()
            for cid, old_faces in old.items()
            if old_faces and 2 * len(faces & old_faces) > len(old_faces)
        ),
        reverse=True,
    )
    chosen: dict[int, int] = {}
    taken: set[int] = set()
    for _, label, cid in pairs:
        if label not in chosen and cid not in taken:
            chosen[label] = cid
            taken.add(cid)
    for label in sorted(members):
        if label not in chosen:
            chosen[label] = next_id
            next_id += 1
    return chosen


def absorbed_ids(
    groups: Mapping[int, Iterable[int]],
    previous: Mapping[int, Iterable[int]],
    ids: Mapping[int, int],
) -> dict[int, int]:
    """old cluster id -> the id that took it over: for each earlier cluster whose id no
    group kept, the id of the group that now holds most (over half) of its faces still
    in a group. A merge of two clusters keeps the larger one's id (stable_ids); this
    says where the smaller one went, so that an app that showed it can follow it."""
    kept = set(ids.values())
    holder = {face: ids[label] for label, faces in groups.items() for face in faces}
    moved: dict[int, int] = {}
    for cid, faces in previous.items():
        if cid in kept:
            continue
        now = Counter(holder[f] for f in faces if f in holder)
        if now:
            into, count = now.most_common(1)[0]
            if 2 * count > sum(now.values()):
                moved[cid] = into
    return moved


def representative(vectors: np.ndarray) -> int:
    """The index of the face closest to the group's mean direction."""
    units = unit_rows(vectors)
    centre = units.sum(axis=0)
    return int(np.argmax(units @ centre))

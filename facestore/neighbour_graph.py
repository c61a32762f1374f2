"""Groups of a large library from its neighbour graph. Pure (the index is passed in).

The same method as facestore.clustering's exact path (leader micro-clusters, average
linkage over their centroids cut at the distance, a group mate within the link, a
minimum size), with every "which faces are near" answered by a nearest-neighbour
index instead of a product of every face with every other:

- a face joins the nearest earlier leader among its k nearest faces within the
  radius, else leads a micro-cluster of its own;
- the centroids are linked to their k nearest centroids within the cut, and average
  linkage runs on each connected piece alone (it never joins pieces with no pair
  within the cut); a piece of more than MAX_LINKAGE centroids is first split at a
  tighter cut, so that no linkage holds more than MAX_LINKAGE^2 / 2 distances;
- a face keeps its group only with a group mate among its k nearest within the link.

Memory grows with the faces times k, never faces squared; time with the index's.
"""

from __future__ import annotations

import logging

import numpy as np

from facestore.neighbours import NeighbourIndex, Neighbours

log = logging.getLogger(__name__)

K = 32  # neighbours per face and per centroid (16 split more of the large groups: bench)
MAX_LINKAGE = 8000  # centroids in one average linkage: 8000^2/2 doubles, 256 MB
SPLIT_STEP = 0.9  # a piece too large for one linkage is split at 0.9 x the cut, again...
ROWS = 16384  # rows handled at a time


def group_by_neighbours(
    units: np.ndarray,
    distance: float,
    radius: float,
    link: float,
    min_size: int,
    index: NeighbourIndex,
    k: int = K,
) -> np.ndarray:
    """A group label per unit row (>= 0), -1 for faces in none: micro-clusters of the
    radius, average linkage of their centroids cut at distance, a mate within link."""
    if len(units) == 0:
        return np.zeros(0, dtype=np.int64)
    faces = index.neighbours(units, k)
    micro = leaders_from(faces, radius)
    centroids = centroids_of(units, micro)
    log.debug("%d faces in %d micro-clusters", len(units), len(centroids))
    near = index.neighbours(centroids, k) if len(centroids) > 1 else None
    groups = linkage_by_piece(centroids, near, distance)
    return linked_by(groups[micro], faces, link, min_size)


def leaders_from(faces: Neighbours, radius: float) -> np.ndarray:
    """Micro-cluster per face, in face order: the nearest earlier leader among its
    neighbours within radius, else the face leads a new one."""
    count = len(faces.ids)
    labels = np.full(count, -1, dtype=np.int64)
    leads = np.zeros(count, dtype=bool)
    for start in range(0, count, ROWS):
        ids = faces.ids[start : start + ROWS]
        rows = np.arange(start, start + len(ids))
        candidate = (
            (ids >= 0) & (ids < rows[:, None]) & (faces.distances[start : start + ROWS] <= radius)
        )
        has = candidate.any(axis=1)
        alone = rows[~has]  # no earlier face within the radius: leads, whatever came before
        leads[alone] = True
        labels[alone] = alone
        for offset in np.flatnonzero(has).tolist():
            face = start + offset
            for j in ids[offset][candidate[offset]].tolist():  # nearest first
                if leads[j]:
                    labels[face] = labels[j]
                    break
            else:
                leads[face] = True
                labels[face] = face
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


def centroids_of(units: np.ndarray, micro: np.ndarray) -> np.ndarray:
    """The unit mean direction of each micro-cluster (float32), summed a chunk at a time
    through a sparse indicator matrix."""
    from scipy.sparse import csr_matrix

    count = int(micro.max()) + 1
    sums = np.zeros((count, units.shape[1]), dtype=np.float32)
    for start in range(0, len(units), ROWS):
        labels = micro[start : start + ROWS]
        indicator = csr_matrix(
            (np.ones(len(labels), np.float32), (labels, np.arange(len(labels)))),
            shape=(count, len(labels)),
        )
        sums += indicator @ np.asarray(units[start : start + ROWS], dtype=np.float32)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    sums /= np.where(norms == 0, 1, norms)
    return sums


def linkage_by_piece(centroids: np.ndarray, near: Neighbours | None, distance: float) -> np.ndarray:
    """A group label per centroid: average linkage cut at distance, run on each piece
    of centroids linked (among their neighbours) within distance."""
    from scipy.cluster.hierarchy import fcluster, linkage

    groups = np.arange(len(centroids), dtype=np.int64)  # alone, unless linked below
    if near is None:
        return groups
    next_label = len(centroids)
    for members in _pieces(near, distance, np.arange(len(centroids))):
        if len(members) < 2:
            continue
        tree = linkage(centroids[members].astype(np.float64), method="average", metric="cosine")
        found = fcluster(tree, t=distance, criterion="distance") - 1
        groups[members] = next_label + found
        next_label += int(found.max()) + 1
    return groups


def _pieces(near: Neighbours, cut: float, subset: np.ndarray) -> list[np.ndarray]:
    """The connected pieces of subset (centroid indices) with edges to neighbours
    within cut; a piece of more than MAX_LINKAGE is split again at a tighter cut."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    position = np.full(len(near.ids), -1, dtype=np.int64)
    position[subset] = np.arange(len(subset))
    ids = near.ids[subset]
    target = np.where(ids >= 0, position[np.maximum(ids, 0)], -1)
    edge = (target >= 0) & (near.distances[subset] <= cut + 1e-6)
    rows = np.broadcast_to(np.arange(len(subset))[:, None], ids.shape)[edge]
    graph = coo_matrix(
        (np.ones(len(rows), np.int8), (rows, target[edge])), shape=(len(subset), len(subset))
    )
    count, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    pieces = []
    for piece in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1):
        members = subset[piece]
        if len(members) > MAX_LINKAGE:
            log.info(
                "%d micro-clusters linked within %.4f: split at %.4f for average linkage",
                len(members),
                cut,
                cut * SPLIT_STEP,
            )
            pieces.extend(_pieces(near, cut * SPLIT_STEP, members))
        else:
            pieces.append(members)
    return pieces


def linked_by(labels: np.ndarray, faces: Neighbours, link: float, min_size: int) -> np.ndarray:
    """labels where every member has a group mate among its neighbours within link
    (others leave, as -1, until each one left has one), and every group has min_size
    faces; the neighbour-graph form of facestore.clustering.linked."""
    labels = labels.copy()
    if min_size <= 1:
        return labels
    near = (faces.ids >= 0) & (faces.distances <= link + 1e-6)
    while True:
        sizes = np.bincount(labels[labels >= 0], minlength=1)
        small = (labels >= 0) & (sizes[np.maximum(labels, 0)] < min_size)
        labels[small] = -1
        inside = np.flatnonzero(labels >= 0)
        if not len(inside):
            return labels
        mates = labels[np.maximum(faces.ids[inside], 0)] == labels[inside][:, None]
        lonely = inside[~(mates & near[inside]).any(axis=1)]
        if not len(lonely):
            return labels
        labels[lonely] = -1

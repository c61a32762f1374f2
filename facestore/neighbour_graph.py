"""Groups of a large library from its neighbour graph. Pure (the index is passed in).

The same method as facestore.grouping's exact path (leader micro-clusters, average
linkage over their centroids cut at the distance, a group mate within the link, a
minimum size), with every "which faces are near" answered by a nearest-neighbour
index instead of a product of every face with every other:

- a face joins the nearest earlier leader among its k nearest faces within the
  radius, else leads a micro-cluster of its own;
- the centroids are linked within the cut to the micro-clusters of their nearest
  faces (the same index), and average linkage runs on each connected piece alone
  (it never joins pieces with no pair within the cut); a piece of more than
  MAX_LINKAGE centroids is first split at a tighter cut, so that no linkage holds
  more than MAX_LINKAGE^2 / 2 distances;
- a face keeps its group only with a group mate among its k nearest within the link.

Memory grows with the faces times k, never faces squared; time with the index's.
"""

from __future__ import annotations

import logging

import numpy as np

from facestore.neighbours import NeighbourIndex, Neighbours, Progress, Searcher, neighbours

log = logging.getLogger(__name__)

K = 32  # neighbours per face and per centroid (16 split more of the large groups: bench)
MAX_LINKAGE = 8000  # centroids in one average linkage: 8000^2/2 doubles, 256 MB
SPLIT_STEP = 0.9  # a piece too large for one linkage is split at 0.9 x the cut, again...
ROWS = 16384  # rows handled at a time
PAIR_ROWS = 1024  # micro-clusters whose candidate pairs are measured at a time (k rows each)


def group_by_neighbours(
    units: np.ndarray,
    distance: float,
    radius: float,
    link: float,
    min_size: int,
    index: NeighbourIndex,
    k: int = K,
    progress: Progress | None = None,
) -> np.ndarray:
    """A group label per unit row (>= 0), -1 for faces in none: micro-clusters of the
    radius, average linkage of their centroids cut at distance, a mate within link."""
    if len(units) == 0:
        return np.zeros(0, dtype=np.int64)
    searcher, faces = neighbours(index, units, k, progress)
    micro = leaders_from(faces, radius, progress)
    centroids = Centroids(units, micro)
    log.debug("%d faces in %d micro-clusters", len(units), centroids.count)
    edges = centroid_edges(centroids, micro, faces, searcher, distance, radius, k)
    del searcher  # the index's copy of the faces
    groups = linkage_by_piece(centroids, edges, distance, progress)
    return linked_by(groups[micro], faces, link, min_size)


def leaders_from(faces: Neighbours, radius: float, progress: Progress | None = None) -> np.ndarray:
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
        if progress is not None:
            progress("micro-clusters", start + len(ids), count)
    return np.unique(labels, return_inverse=True)[1].astype(np.int64)


class Centroids:
    """The unit mean direction of each micro-cluster. A micro-cluster of one face (most
    of a large library: strangers seen once) is that face's row, not a copy; the others
    are summed a chunk at a time through a sparse indicator matrix (float32)."""

    def __init__(self, units: np.ndarray, micro: np.ndarray) -> None:
        from scipy.sparse import csr_matrix

        self.units = units
        self.count = int(micro.max()) + 1
        sizes = np.bincount(micro, minlength=self.count)
        self.face_of = np.full(self.count, -1, dtype=np.int64)  # the face of a single
        single = sizes[micro] == 1
        self.face_of[micro[single]] = np.flatnonzero(single)
        several = np.flatnonzero(sizes > 1)
        self.row_of = np.full(self.count, -1, dtype=np.int64)
        self.row_of[several] = np.arange(len(several))
        sums = np.zeros((len(several), units.shape[1]), dtype=np.float32)
        for start in range(0, len(units), ROWS):
            labels = micro[start : start + ROWS]
            inside = np.flatnonzero(~single[start : start + ROWS])
            indicator = csr_matrix(
                (np.ones(len(inside), np.float32), (self.row_of[labels[inside]], inside)),
                shape=(len(several), len(labels)),
            )
            sums += indicator @ np.asarray(units[start : start + ROWS], dtype=np.float32)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        self.several = several
        self.sums = sums / np.where(norms == 0, 1, norms)

    def rows(self, which: np.ndarray) -> np.ndarray:
        """The centroids of these micro-clusters, float32."""
        out = np.empty((len(which), self.units.shape[1]), dtype=np.float32)
        faces = self.face_of[which]
        single = faces >= 0
        out[single] = self.units[faces[single]]
        out[~single] = self.sums[self.row_of[which[~single]]]
        return out


def centroid_edges(
    centroids: Centroids,
    micro: np.ndarray,
    faces: Neighbours,
    searcher: Searcher,
    distance: float,
    radius: float,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of micro-clusters whose centroids lie within distance: (a, b, distance).

    The candidates of a micro-cluster of one face are its face's neighbours'; of a
    larger one, the micro-clusters of the k faces nearest its centroid (asked of the
    faces' index: no second index). A candidate whose face lies further (in angle)
    than the cut plus twice the radius cannot have its centroid within the cut and is
    left out; between two faces alone the distance is the faces'; the others are
    computed."""
    reach = np.arccos(1.0 - distance) + 2 * np.arccos(1.0 - radius)
    far = 1.0 - np.cos(min(reach, np.pi))  # faces further than this: no candidate
    candidates = np.full((centroids.count, k), -1, dtype=np.int32)
    gaps = np.full((centroids.count, k), np.nan, dtype=np.float32)  # known: two singles
    single = np.flatnonzero(centroids.face_of >= 0)
    for start in range(0, len(single), ROWS):
        rows = single[start : start + ROWS]
        near = faces.ids[centroids.face_of[rows]]
        gap = faces.distances[centroids.face_of[rows]]
        useful = (near >= 0) & (gap <= far)
        other = np.where(useful, micro[np.maximum(near, 0)], -1)
        candidates[rows] = other
        alone = useful & (centroids.face_of[np.maximum(other, 0)] >= 0)
        gaps[rows] = np.where(alone, gap, np.nan)
    for start in range(0, len(centroids.several), ROWS):
        which = centroids.several[start : start + ROWS]
        similarity, found = searcher.search(
            np.ascontiguousarray(centroids.sums[start : start + ROWS]), k
        )
        useful = (found >= 0) & (1.0 - similarity <= far)
        candidates[which, : found.shape[1]] = np.where(useful, micro[np.maximum(found, 0)], -1)
    pairs_a, pairs_b, pair_gaps = [], [], []
    for start in range(0, centroids.count, PAIR_ROWS):
        block = candidates[start : start + PAIR_ROWS]
        a = np.broadcast_to(np.arange(start, start + len(block))[:, None], block.shape)
        keep = (block >= 0) & (block != a)
        a, b, gap = a[keep], block[keep], gaps[start : start + PAIR_ROWS][keep]
        todo = np.isnan(gap)
        gap[todo] = 1.0 - np.einsum("ij,ij->i", centroids.rows(a[todo]), centroids.rows(b[todo]))
        within = gap <= distance + 1e-6
        pairs_a.append(a[within])
        pairs_b.append(b[within])
        pair_gaps.append(gap[within])
    return np.concatenate(pairs_a), np.concatenate(pairs_b), np.concatenate(pair_gaps)


def linkage_by_piece(
    centroids: Centroids,
    edges: tuple[np.ndarray, np.ndarray, np.ndarray],
    distance: float,
    progress: Progress | None = None,
) -> np.ndarray:
    """A group label per micro-cluster: average linkage cut at distance, run on each
    piece of micro-clusters linked within distance."""
    from scipy.cluster.hierarchy import fcluster, linkage

    groups = np.arange(centroids.count, dtype=np.int64)  # alone, unless linked below
    next_label = centroids.count
    pieces = [p for p in _pieces(edges, distance, np.arange(centroids.count)) if len(p) > 1]
    for done, members in enumerate(pieces, start=1):
        if progress is not None and (done % 1000 == 0 or done == len(pieces)):
            progress("linkage", done, len(pieces))
        points = centroids.rows(members).astype(np.float64)
        tree = linkage(points, method="average", metric="cosine")
        found = fcluster(tree, t=distance, criterion="distance") - 1
        groups[members] = next_label + found
        next_label += int(found.max()) + 1
    return groups


def _pieces(
    edges: tuple[np.ndarray, np.ndarray, np.ndarray], cut: float, subset: np.ndarray
) -> list[np.ndarray]:
    """The connected pieces of subset (micro-cluster indices) over the edges within cut;
    a piece of more than MAX_LINKAGE is split again at a tighter cut."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b, gap = edges
    position = np.full(int(max(a.max(initial=0), b.max(initial=0), subset.max())) + 1, -1)
    position[subset] = np.arange(len(subset))
    keep = (position[a] >= 0) & (position[b] >= 0) & (gap <= cut + 1e-6)
    graph = coo_matrix(
        (np.ones(int(keep.sum()), np.int8), (position[a[keep]], position[b[keep]])),
        shape=(len(subset), len(subset)),
    )
    _, labels = connected_components(graph, directed=False)
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
            pieces.extend(_pieces(edges, cut * SPLIT_STEP, members))
        else:
            pieces.append(members)
    return pieces


def linked_by(labels: np.ndarray, faces: Neighbours, link: float, min_size: int) -> np.ndarray:
    """labels where every member has a group mate among its neighbours within link
    (others leave, as -1, until each one left has one), and every group has min_size
    faces; the neighbour-graph form of facestore.grouping.linked."""
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

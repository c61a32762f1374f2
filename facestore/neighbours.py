"""Each face's nearest faces, from faiss: the neighbour graph that groups a large library.

An index is a dependency of the grouping (facestore.neighbour_graph.group_by_neighbours):
`ExactIndex` (a flat index: every pair, exact) or `ApproximateIndex` (an inverted file
of float16 vectors: each face is compared with the faces of its NPROBE nearest lists
only). faiss's inverted file was chosen over hnswlib, pynndescent and faiss's own HNSW
by measuring on the same vectors (bench/neighbour_libraries.py, docs/benchmarks.md): it
found 99% of the true neighbours within the cut at 128 and 512 dimensions (97% at 1M),
the HNSW graphs 68-92%, and pynndescent as many but ten times slower.

Vectors are unit rows, float16 or float32; the index reads them a chunk at a time in
float32, so the caller's matrix is the only full copy besides the index's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

# A long pass says how far it is: (stage, done, total), e.g. ("neighbours", 16384, 1000000)
Progress = Callable[[str, int, int], None]

CHUNK = 16384  # rows converted to float32 and searched at a time
NPROBE = 8  # inverted lists searched per face (recall within the cut: 0.99 at 100k, 0.97 at 1M)
TRAIN_PER_LIST = 40  # k-means training points per list (faiss asks for 39 or more)


@dataclass(frozen=True)
class Neighbours:
    """Each row's k nearest other rows, nearest first: ids (-1 where fewer were found)
    and cosine distances (inf there)."""

    ids: np.ndarray  # int32, rows x k
    distances: np.ndarray  # float32, rows x k


class Searcher(Protocol):
    """Rows indexed: the k nearest of them to each query."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) of the k nearest indexed rows, nearest first; -1 ids
        where fewer were found. queries: float32 unit rows."""
        ...


class NeighbourIndex(Protocol):
    """Indexes unit rows (float16 or float32), read a chunk at a time."""

    name: str

    def build(self, units: np.ndarray) -> Searcher: ...


def chunks(count: int) -> list[slice]:
    return [slice(start, start + CHUNK) for start in range(0, count, CHUNK)]


def neighbours(
    index: NeighbourIndex, units: np.ndarray, k: int, progress: Progress | None = None
) -> tuple[Searcher, Neighbours]:
    """The index built on units, and each row's k nearest other rows: k + 1 found, the
    row itself dropped (a copy of it elsewhere stays a neighbour)."""
    searcher = index.build(units)
    want = min(k + 1, len(units))
    ids = np.full((len(units), k), -1, dtype=np.int32)
    distances = np.full((len(units), k), np.inf, dtype=np.float32)
    for rows in chunks(len(units)):
        similarity, found = searcher.search(np.ascontiguousarray(units[rows], np.float32), want)
        own = np.arange(rows.start, rows.start + len(found))[:, None]
        keep = (found >= 0) & (found != own)
        first = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept ones, in order
        kept = np.take_along_axis(keep, first, axis=1)
        width = first.shape[1]
        ids[rows, :width] = np.where(kept, np.take_along_axis(found, first, axis=1), -1)
        near = 1.0 - np.take_along_axis(similarity, first, axis=1)
        distances[rows, :width] = np.where(kept, near, np.inf)
        if progress is not None:
            progress("neighbours", min(rows.stop, len(units)), len(units))
    return searcher, Neighbours(ids, distances)


class _Faiss:
    def __init__(self, index: object) -> None:
        self.index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        found: tuple[np.ndarray, np.ndarray] = self.index.search(queries, k)  # type: ignore[attr-defined]
        return found


class ExactIndex:
    """Every pair compared (faiss's flat inner-product index): exact."""

    name = "exact"

    def build(self, units: np.ndarray) -> Searcher:
        import faiss

        index = faiss.IndexFlatIP(units.shape[1])
        for rows in chunks(len(units)):
            index.add(np.ascontiguousarray(units[rows], np.float32))
        return _Faiss(index)


class ApproximateIndex:
    """faiss's inverted file over float16 vectors: about 2 sqrt(n) lists from k-means on
    a sample, each query searched in its nprobe nearest lists."""

    name = "approximate"

    def __init__(self, nprobe: int = NPROBE, lists: int | None = None, seed: int = 0) -> None:
        self.nprobe = nprobe
        self.lists = lists
        self.seed = seed
        self.searched: tuple[int, int] = (0, 0)  # lists searched per face, of lists: last run

    def build(self, units: np.ndarray) -> Searcher:
        import faiss

        count, dim = units.shape
        lists = self.lists or int(2 * np.sqrt(count))
        lists = max(1, min(lists, count // TRAIN_PER_LIST))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        rng = np.random.default_rng(self.seed)
        sample = np.sort(rng.choice(count, min(count, TRAIN_PER_LIST * lists), replace=False))
        index.cp.seed = self.seed
        index.train(np.ascontiguousarray(units[sample], np.float32))
        for rows in chunks(count):
            index.add(np.ascontiguousarray(units[rows], np.float32))
        index.nprobe = min(self.nprobe, lists)
        self.searched = (int(index.nprobe), lists)
        return _Faiss(index)


def recall(found: Neighbours, truth: Neighbours, radius: float) -> float:
    """Of the true neighbours within radius, the share found (1.0 when there are none)."""
    hits = total = 0
    for got, want, far in zip(found.ids, truth.ids, truth.distances, strict=True):
        wanted = set(want[far <= radius].tolist())
        total += len(wanted)
        hits += len(wanted & set(got.tolist()))
    return hits / total if total else 1.0

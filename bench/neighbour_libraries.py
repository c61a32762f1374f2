"""Which nearest-neighbour library builds the groups' neighbour graph: each candidate
indexes the same synthetic library (bench/cluster_library.py's vectors: 70% people, 30%
one-off strangers) and finds every face's k nearest faces. Reported per candidate:
build and query seconds, the recall of the true k nearest within --radius (the faces
a grouping cut can link; on a sample of faces, against faiss's exact flat index), and
the index's memory (RSS growth). Timing only; the vectors choose no default.

    python bench/neighbour_libraries.py [--size 100000] [--dim 128] [--k 16]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.cluster_library import people_vectors  # noqa: E402

SAMPLE = 2000


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def faiss_hnsw(vectors: np.ndarray, k: int, fp16: bool) -> tuple[np.ndarray, float, float]:
    import faiss

    started = time.perf_counter()
    if fp16:
        index = faiss.IndexHNSWSQ(
            vectors.shape[1], faiss.ScalarQuantizer.QT_fp16, 16, faiss.METRIC_INNER_PRODUCT
        )
    else:
        index = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 40
    index.add(vectors)
    built = time.perf_counter() - started
    index.hnsw.efSearch = max(32, 2 * k)
    _, ids = index.search(vectors, k)
    return ids, built, time.perf_counter() - started - built


def faiss_ivf(vectors: np.ndarray, k: int, fp16: bool) -> tuple[np.ndarray, float, float]:
    import faiss

    started = time.perf_counter()
    lists = int(4 * np.sqrt(len(vectors)))
    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    if fp16:
        index = faiss.IndexIVFScalarQuantizer(
            quantizer,
            vectors.shape[1],
            lists,
            faiss.ScalarQuantizer.QT_fp16,
            faiss.METRIC_INNER_PRODUCT,
        )
    else:
        index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors[np.random.default_rng(0).permutation(len(vectors))[: 40 * lists]])
    index.add(vectors)
    built = time.perf_counter() - started
    index.nprobe = 8
    _, ids = index.search(vectors, k)
    return ids, built, time.perf_counter() - started - built


def facestore_index(vectors: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    """The index facestore groups a large library with, as it builds and searches it."""
    from facestore.neighbours import ApproximateIndex

    started = time.perf_counter()
    searcher = ApproximateIndex().build(vectors)
    built = time.perf_counter() - started
    _, ids = searcher.search(vectors, k)
    return ids.astype(np.int64), built, time.perf_counter() - started - built


def hnswlib_index(vectors: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    import hnswlib

    started = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), ef_construction=40, M=16)
    index.add_items(vectors, num_threads=os.cpu_count() or 1)
    built = time.perf_counter() - started
    index.set_ef(max(32, 2 * k))
    ids, _ = index.knn_query(vectors, k=k, num_threads=os.cpu_count() or 1)
    return ids.astype(np.int64), built, time.perf_counter() - started - built


def pynndescent_index(vectors: np.ndarray, k: int) -> tuple[np.ndarray, float, float]:
    from pynndescent import NNDescent

    started = time.perf_counter()
    index = NNDescent(vectors, metric="cosine", n_neighbors=k, random_state=0)
    ids, _ = index.neighbor_graph
    return ids.astype(np.int64), time.perf_counter() - started, 0.0


CANDIDATES: dict[str, Callable[[np.ndarray, int], tuple[np.ndarray, float, float]]] = {
    "faiss HNSWFlat (M 16)": lambda v, k: faiss_hnsw(v, k, fp16=False),
    "faiss HNSW, float16 storage": lambda v, k: faiss_hnsw(v, k, fp16=True),
    "faiss IVFFlat (float32, 4 sqrt(n) lists, nprobe 8)": lambda v, k: faiss_ivf(v, k, fp16=False),
    "facestore's ApproximateIndex (faiss IVF, float16, 2 sqrt(n) lists, 8 searched)": (
        lambda v, k: facestore_index(v, k)
    ),
    "hnswlib (M 16)": hnswlib_index,
    "pynndescent": pynndescent_index,
}


def exact_neighbours(
    vectors: np.ndarray, sample: np.ndarray, k: int, radius: float
) -> list[set[int]]:
    """Each sampled face's true k nearest faces within radius (cosine distance): the
    neighbours a grouping cut can use. Faces further off (a stranger's nearest, in
    high dimensions almost as far as any face) do not count."""
    import faiss

    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarity, ids = index.search(vectors[sample], k)
    return [set(i[s >= 1.0 - radius].tolist()) for s, i in zip(similarity, ids, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument(
        "--radius", type=float, default=0.1, help="neighbours within it count (cosine)"
    )
    parser.add_argument("--only", nargs="*", help="candidates whose name starts so")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = np.ascontiguousarray(people_vectors(args.size, rng, args.dim))
    sample = rng.choice(args.size, min(SAMPLE, args.size), replace=False)
    truth = exact_neighbours(vectors, sample, args.k, args.radius)
    results = []
    for name, build in CANDIDATES.items():
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        before = rss_mib()
        try:
            ids, built, queried = build(vectors, args.k)
        except ImportError as exc:
            results.append({"library": name, "error": str(exc)})
            continue
        found = ids[sample]
        hits = sum(len(set(a.tolist()) & b) for a, b in zip(found, truth, strict=True))
        recall = hits / max(1, sum(len(b) for b in truth))
        results.append(
            {
                "library": name,
                "size": args.size,
                "dim": args.dim,
                "k": args.k,
                "build_s": round(built, 1),
                "query_all_s": round(queried, 1),
                "recall_within_radius": round(float(recall), 4),
                "radius": args.radius,
                "rss_growth_mib": round(rss_mib() - before),
            }
        )
        print(json.dumps(results[-1]), flush=True)
        del ids


if __name__ == "__main__":
    main()

"""Clusters of unknown faces through the database: a full re-cluster, and the cost of
one reconcile that brings new unknown faces, against the size of the library.

For each size, an app database of that many unverified faces is filled quickly
(a one-byte crop, synthetic 128-d vectors written directly: 70% in skewed groups of
people with a within-person spread like dlib's, 30% one-off strangers; timing only,
never a default).
Then it times, through facestore's own code and a real SQLite file:

- `rebuild_s`: `facestore clusters --rebuild` (read every unknown face, group, write);
- `daemon_start_s`: the daemon's first, full re-cluster (the same, plus its state);
- `join_s`: one reconcile's clustering work after 10 new unknown faces arrive: the
  read of just those faces (what the suggestion pass does) and Clusterer.update,
  median of 5 rounds. This is the part that must not grow with the library;
- `regroup_per_new_face_ms`: the daemon's full passes, spread over the faces that
  bring them about: one full pass (daemon_start_s) each time RECLUSTER_SHARE of the
  unknown faces have arrived since the last, so daemon_start_s / (share x faces);
- `peak_rss_mib`: the process's peak so far (sizes run in the order given).

    python bench/cluster_library.py [--sizes 1000 20000] [--distance 0.06] [--dim 128]
        [--min-size 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import sqlite3
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import Space, config_hash  # noqa: E402
from facestore.clustering import DEFAULT_MIN_SIZE, ClusterParams  # noqa: E402
from facestore.daemon.clusterer import RECLUSTER_SHARE, Clusterer  # noqa: E402
from facestore.embedding import ensure_active_space  # noqa: E402
from facestore.store import Store  # noqa: E402
from facestore.unknown_faces import recluster  # noqa: E402

STRANGERS = 0.3  # share of faces seen once (background people)


def space(dim: int) -> Space:
    return Space("synthetic", config_hash("synthetic", {"dim": dim}), {"dim": dim})


def people_vectors(count: int, rng: np.random.Generator, dim: int) -> np.ndarray:
    """count unit vectors: STRANGERS of them one-off faces, the rest people with skewed
    (Zipf-like, 2 to 200) numbers of faces, spread ~0.03 cosine distance around each."""
    grouped = count - int(STRANGERS * count)
    sizes = np.clip((200 / np.arange(1, grouped + 1) ** 0.7).astype(int), 2, 200)
    people = np.repeat(np.arange(len(sizes)), sizes)[:grouped]
    people = np.concatenate([people, people.max() + 1 + np.arange(count - grouped)])
    centres = rng.normal(size=(int(people.max()) + 1, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    # a within-person cosine spread of about 0.03 whatever the dimension
    vectors = centres[people] + rng.normal(scale=0.25 / np.sqrt(dim), size=(count, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[rng.permutation(count)].astype(np.float32)


def add_faces(path: Path, vectors: np.ndarray, into: Space) -> list[int]:
    """Unverified face rows with these vectors in a space, written directly; their ids."""
    con = sqlite3.connect(path)
    start = int(con.execute("SELECT coalesce(max(id), 0) FROM face").fetchone()[0]) + 1
    ids = list(range(start, start + len(vectors)))
    con.executemany(
        "INSERT INTO face (id, face_crop_blob, person_id, verified) VALUES (?, x'00', NULL, 0)",
        ((i,) for i in ids),
    )
    con.executemany(
        "INSERT INTO embedding (face_id, space_hash, crop_sha256, vector, created_at) "
        "VALUES (?, ?, 'x', ?, 0)",
        (
            (i, into.config_hash, v.astype("<f4").tobytes())
            for i, v in zip(ids, vectors, strict=True)
        ),
    )
    con.execute("DELETE FROM embedding_job")
    con.commit()
    con.close()
    return ids


def measure(
    work: Path, size: int, distance: float, dim: int, min_size: int
) -> dict[str, float | int]:
    synthetic = space(dim)
    path = work / f"library-{size}.db"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, person_id INTEGER, "
        "verified BOOLEAN NOT NULL DEFAULT 0)"
    )
    con.close()
    engine = database.create_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    store = Store(engine)
    ensure_active_space(store, synthetic)
    rng = np.random.default_rng(size)
    add_faces(path, people_vectors(size, rng, dim), synthetic)
    params = ClusterParams(distance, min_size)

    started = time.perf_counter()
    report = recluster(store, synthetic, params, "given")
    rebuild = time.perf_counter() - started

    clusterer = Clusterer(store, distance, min_size)
    started = time.perf_counter()
    clusterer.update(synthetic, full=True)
    daemon_start = time.perf_counter() - started

    joins = []
    for _ in range(5):
        ids = add_faces(path, people_vectors(10, rng, dim), synthetic)
        started = time.perf_counter()
        rows = store.suggestions.unverified_vectors(synthetic.config_hash, ids)
        clusterer.update(synthetic, new={row.face_id: row.vector for row in rows})
        joins.append(time.perf_counter() - started)
    return {
        "unknown_faces": size,
        "clusters": report.clusters,
        "clustered": report.clustered,
        "rebuild_s": round(rebuild, 2),
        "daemon_start_s": round(daemon_start, 2),
        "join_10_new_ms": round(1000 * statistics.median(joins), 1),
        "regroup_per_new_face_ms": round(1000 * daemon_start / (RECLUSTER_SHARE * size), 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="clusters through the database, by size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--distance", type=float, default=0.06)
    parser.add_argument("--dim", type=int, default=128, help="128: dlib's; 512: facenet's")
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE)
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()
    work = scratch("facestore-cluster-library-", keep=args.keep)
    results = [measure(work, size, args.distance, args.dim, args.min_size) for size in args.sizes]
    print(json.dumps(results))
    print(
        f"{'unknown':>8} {'clusters':>8} {'rebuild_s':>9} {'start_s':>8} {'join_10_ms':>10} "
        f"{'regroup/face_ms':>15} {'peak_rss_mib':>12}"
    )
    for r in results:
        print(
            f"{r['unknown_faces']:8d} {r['clusters']:8d} {r['rebuild_s']:9.2f} "
            f"{r['daemon_start_s']:8.2f} {r['join_10_new_ms']:10.1f} "
            f"{r['regroup_per_new_face_ms']:15.2f} {r['peak_rss_mib']:12d}"
        )


if __name__ == "__main__":
    main()

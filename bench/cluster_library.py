"""Clusters of unknown faces through the database: a full re-cluster, and the cost of
one reconcile that brings new unknown faces, against the size of the library.

For each size, an app database of that many unverified faces is filled by a child
process (a one-byte crop, synthetic 128-d or 512-d vectors written directly: 70% in
skewed groups of people with a within-person spread like dlib's, 30% one-off
strangers; timing only, never a default).
Then it times, through facestore's own code and a real SQLite file (or a new
PostgreSQL database, --database postgresql):

- `rebuild_s`: `facestore clusters --rebuild` (read every unknown face, group, write);
- `daemon_start_s`: the daemon's first, full re-cluster (the same, plus its state): in
  a child process above CHILD_ABOVE faces, until the daemon has read the new groups
  back; `daemon_longest_stall_s`: the longest the daemon's loop was held meanwhile
  (the read-back of the groups and of the waiting faces);
- `join_s`: one reconcile's clustering work after 10 new unknown faces arrive: the
  read of just those faces (what the suggestion pass does) and Grouper.update,
  median of 5 rounds. This is the part that must not grow with the library;
- `regroup_per_new_face_ms`: the daemon's full passes, spread over the faces that
  bring them about: one full pass (daemon_start_s) each time RECLUSTER_SHARE of the
  unknown faces have arrived since the last, so daemon_start_s / (share x faces);
- `peak_rss_rebuild_mib`, `peak_rss_mib`: the process's peak after the rebuild, and at
  the end (with the daemon's state; sizes run in the order given).

    python bench/cluster_library.py [--sizes 1000 20000] [--distance 0.06] [--dim 128]
        [--min-size 3] [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.common import postgres_database, scratch  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import Space, config_hash  # noqa: E402
from facestore.daemon.full_pass import FullPass  # noqa: E402
from facestore.daemon.grouper import RECLUSTER_SHARE, Grouper  # noqa: E402
from facestore.embedding import ensure_active_space  # noqa: E402
from facestore.grouping import DEFAULT_MIN_SIZE, ClusterParams  # noqa: E402
from facestore.schema import embedding  # noqa: E402
from facestore.store import Store  # noqa: E402
from facestore.unknown_groups import recluster  # noqa: E402

STRANGERS = 0.3  # share of faces seen once (background people)
FILL_CHUNK = 20_000  # faces generated and written at a time


def space(dim: int) -> Space:
    return Space("synthetic", config_hash("synthetic", {"dim": dim}), {"dim": dim})


def people_of(count: int, rng: np.random.Generator) -> np.ndarray:
    """The person of each face, shuffled: STRANGERS of them one-off faces, the rest people
    with skewed (Zipf-like, 2 to 200) numbers of faces."""
    grouped = count - int(STRANGERS * count)
    sizes = np.clip((200 / np.arange(1, grouped + 1) ** 0.7).astype(int), 2, 200)
    people = np.repeat(np.arange(len(sizes)), sizes)[:grouped]
    people = np.concatenate([people, people.max() + 1 + np.arange(count - grouped)])
    return people[rng.permutation(count)]


def vectors_of(people: np.ndarray, dim: int, seed: int) -> np.ndarray:
    """Unit vectors for these faces: each person's centre (drawn from the person's own
    seed, so that a chunk needs no table of centres) plus a within-person cosine spread
    of about 0.03 whatever the dimension."""
    centres = np.stack([np.random.default_rng([seed, int(p)]).normal(size=dim) for p in people])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng([seed, int(people[0]), len(people)])
    vectors = centres + rng.normal(scale=0.25 / np.sqrt(dim), size=centres.shape)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


def people_vectors(count: int, rng: np.random.Generator, dim: int) -> np.ndarray:
    """count faces' unit vectors (people_of, vectors_of) in one matrix: for small sets."""
    return vectors_of(people_of(count, rng), dim, int(rng.integers(1 << 31)))


def add_faces(url: str, people: np.ndarray, dim: int, seed: int, into: Space) -> list[int]:
    """Unverified face rows with vectors in a space, written directly a chunk at a time
    (SQLAlchemy Core: SQLite or PostgreSQL); their ids."""
    engine = sa.create_engine(url)
    face = sa.table("face", sa.column("id"), sa.column("face_crop_blob"), sa.column("verified"))
    with engine.begin() as conn:
        start = int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM face")).scalar()) + 1
    ids = list(range(start, start + len(people)))
    for offset in range(0, len(people), FILL_CHUNK):
        chunk_ids = ids[offset : offset + FILL_CHUNK]
        vectors = vectors_of(people[offset : offset + FILL_CHUNK], dim, seed)
        with engine.begin() as conn:
            conn.execute(
                face.insert(),
                [{"id": i, "face_crop_blob": b"\0", "verified": False} for i in chunk_ids],
            )
            conn.execute(
                embedding.insert(),
                [
                    {
                        "face_id": i,
                        "space_hash": into.config_hash,
                        "crop_sha256": "x",
                        "vector": v.astype("<f4").tobytes(),
                        "created_at": 0.0,
                    }
                    for i, v in zip(chunk_ids, vectors, strict=True)
                ],
            )
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM embedding_job"))
    engine.dispose()
    return ids


def fill(url: str, size: int, dim: int) -> None:
    """The app's face table, facestore's tables, and size unknown faces (run in a child
    process, so that the generator's memory is not the measured process's)."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BYTEA_OR_BLOB, "
                "person_id INTEGER, verified BOOLEAN NOT NULL DEFAULT FALSE)".replace(
                    "BYTEA_OR_BLOB", "BYTEA" if engine.dialect.name == "postgresql" else "BLOB"
                )
            )
        )
    engine.dispose()
    engine = database.create_engine(url)
    database.upgrade(engine)
    ensure_active_space(Store(engine), space(dim))
    engine.dispose()
    add_faces(url, people_of(size, np.random.default_rng(size)), dim, size, space(dim))


def peak_rss_mib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def measure(url: str, size: int, distance: float, dim: int, min_size: int) -> dict[str, Any]:
    synthetic = space(dim)
    started = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=fill, args=(url, size, dim))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"filling the library failed ({child.exitcode})")
    filled = time.perf_counter() - started
    engine = database.create_engine(url)
    store = Store(engine)
    params = ClusterParams(distance, min_size)
    rss_before = peak_rss_mib()

    started = time.perf_counter()
    stage_started: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stage_started.setdefault(stage, time.perf_counter() - started)

    report = recluster(store, synthetic, params, "given", progress)
    rebuild = time.perf_counter() - started
    marks = sorted(stage_started.items(), key=lambda item: item[1]) + [("end", rebuild)]
    stages = {name: round(marks[i + 1][1] - at, 1) for i, (name, at) in enumerate(marks[:-1])}
    rss_rebuild = peak_rss_mib()

    grouper = Grouper(store, distance, min_size, full_pass=FullPass(store))
    started = time.perf_counter()
    stalls = [0.0]
    grouper.update(synthetic, full=True)  # in a child above CHILD_ABOVE faces
    while grouper.full_passes == 0:
        time.sleep(0.05)  # the daemon's loop: its other work would go on here
        before = time.perf_counter()
        grouper.update(synthetic)
        stalls.append(time.perf_counter() - before)
    daemon_start = time.perf_counter() - started

    joins = []
    rng = np.random.default_rng(size + 1)
    for round_ in range(5):
        ids = add_faces(url, people_of(10, rng), dim, size + 2 + round_, synthetic)
        started = time.perf_counter()
        rows = store.suggestions.unverified_vectors(synthetic.config_hash, ids)
        grouper.update(synthetic, new={row.face_id: row.vector for row in rows})
        joins.append(time.perf_counter() - started)
    engine.dispose()
    return {
        "database": engine.dialect.name,
        "dim": dim,
        "unknown_faces": size,
        "clusters": report.clusters,
        "clustered": report.clustered,
        "fill_s": round(filled, 1),
        "rebuild_s": round(rebuild, 2),
        "rebuild_stages_s": stages,
        "daemon_start_s": round(daemon_start, 2),
        "daemon_longest_stall_s": round(max(stalls), 2),
        "join_10_new_ms": round(1000 * statistics.median(joins), 1),
        "regroup_per_new_face_ms": round(1000 * daemon_start / (RECLUSTER_SHARE * size), 2),
        "rss_at_start_mib": rss_before,
        "peak_rss_rebuild_mib": rss_rebuild,
        "peak_rss_mib": peak_rss_mib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="clusters through the database, by size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--distance", type=float, default=0.06)
    parser.add_argument("--dim", type=int, default=128, help="128: dlib's; 512: facenet's")
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--keep", action="store_true", help="leave the scratch files")
    args = parser.parse_args()
    results = []
    for size in args.sizes:
        if args.database == "postgresql":
            with postgres_database(keep=args.keep) as url:
                results.append(measure(url, size, args.distance, args.dim, args.min_size))
        else:
            work = scratch("facestore-cluster-library-", keep=args.keep)
            url = f"sqlite:///{work / f'library-{size}.db'}"
            results.append(measure(url, size, args.distance, args.dim, args.min_size))
        print(json.dumps(results[-1]), flush=True)
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

"""Time to embed 10 new verified faces into a store that already holds many.

For each store size, fills an app database quickly (face rows plus ready-made
vectors in the active space, written directly), loads the backbone once, adds 10
verified faces with plain sqlite3 (facestore's triggers queue them), then times
`embed_pending` until they are embedded: wall time and CPU time per new face.
Two passes: `queue` is what the daemon runs when a change wakes it (the queue
only); `scan` is its timer pass and `facestore embed` (scans the face table and
sweeps orphans), shown for comparison.

    python bench/incremental.py [--sizes 10000 100000] [--weights PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import random_weights, scratch, synthetic_crop  # noqa: E402
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone, space_of  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import EMBED, QUEUE, embed_pending  # noqa: E402
from facestore.store import Store  # noqa: E402


def filled_store(path: Path, faces: int, space_hash: str, backbone_space) -> Store:  # type: ignore[no-untyped-def]
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, person_id INTEGER, "
        "verified BOOLEAN NOT NULL DEFAULT 0)"
    )
    crop = synthetic_crop(0, 0)
    con.executemany(
        "INSERT INTO face (id, face_crop_blob, person_id, verified) VALUES (?, ?, ?, 1)",
        ((i, crop, i // 20) for i in range(1, faces + 1)),
    )
    con.commit()
    con.close()
    engine = database.create_engine(f"sqlite:///{path}")
    database.upgrade(engine)
    store = Store(engine)
    from facestore.embedding import ensure_active_space

    ensure_active_space(store, backbone_space)
    sha = hashlib.sha256(crop).hexdigest()
    vector = np.random.default_rng(0).normal(size=512).astype("<f4").tobytes()
    con = sqlite3.connect(path)
    con.executemany(
        "INSERT INTO embedding (face_id, space_hash, crop_sha256, vector, created_at) "
        "VALUES (?, ?, ?, ?, 0)",
        ((i, space_hash, sha, vector) for i in range(1, faces + 1)),
    )
    con.commit()
    con.close()
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description="incremental embed latency")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--weights", default=os.environ.get("FACESTORE_WEIGHTS"))
    parser.add_argument("--keep", action="store_true", help="leave the scratch directory")
    args = parser.parse_args()
    work = scratch("facestore-incremental-", keep=args.keep)
    weights = Path(args.weights) if args.weights else random_weights(work / "w.pt")
    backbone = build_backbone(BackboneSettings(weights=weights, device="auto"))
    space = space_of(backbone)
    backbone.embed_images([__import__("PIL.Image").Image.new("RGB", (160, 160))])  # warm-up
    print("store_faces  pass   new_faces  wall_s  cpu_ms_per_face")
    for size in args.sizes:
        db = work / f"store-{size}.db"
        store = filled_store(db, size, space.config_hash, space)
        for scan in (False, True):
            con = sqlite3.connect(db)
            con.executemany(
                "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, 1, 1)",
                ((synthetic_crop(1, 100 + i + 10 * scan),) for i in range(10)),
            )
            con.commit()
            con.close()
            started, cpu = time.perf_counter(), time.process_time()
            report = embed_pending(
                store, backbone, batch_size=32, space=space, kind=EMBED if scan else QUEUE
            )
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert report.embedded == 10, report
            name = "scan" if scan else "queue"
            print(f"{size:11d}  {name:5s}  {10:9d}  {wall:6.2f}  {1000 * cpu / 10:15.1f}")


if __name__ == "__main__":
    main()

"""A library of 1M faces and 10k people: the daemon's passes, status, retrain, suggestions.

Builds the library quickly: the app's `face` table with one identical small crop per
row, person sizes skewed (Zipf-like: a few people with thousands of faces, many
with a handful), a share of the faces unverified, and their vectors written directly
into the active space (synthetic 512-d, clustered per person: timing only). Then it
measures, through facestore's own code and CLI:

- queue_pass_s: the daemon woken by a change: 10 new faces embedded (random facenet
  weights), suggestions for them (clusters off: bench/cluster_library.py);
- first_timer_pass_s, timer_pass_s (the last of 3), timer_pass_max_s: the daemon's
  timer passes with nothing new (the safety net; the first checks everything);
- the same with _retrain: the daemon with its retrain policy on, following the
  training pairs through the change log (its thresholds out of reach, so that no
  retrain starts: retrain_s times that);
- help_s, status_s: `facestore --help` and `facestore status --json` as subprocesses;
- retrain_s, retrain_peak_rss_mib: `facestore retrain` as a subprocess (auto, with
  the calibrated "unknown" rule), capped at --retrain-cap seconds;
- suggest_100k_s: suggestions for every unverified face with the new model.

On PostgreSQL the library is built in a new database with a unique name on the
local server (--admin-url), dropped at the end; --db URL uses a given database
instead, refused if it holds any table unless --force (bench.common). It is vacuumed
and analysed once after the bulk load (vacuum_s), as autovacuum would have done as it
grew. It prints one JSON object, then a table. --keep DIR leaves the database, the
model directory and facestore.env (FACESTORE_DB, FACESTORE_MODEL_DIR) there.

    python bench/scale.py [--faces 1000000] [--people 10000] [--backend sqlite|postgresql]
                          [--keep DIR] [--unverified 0.1] [--skip-retrain]
                          [--db URL [--force]] [--admin-url URL]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from bench.common import (  # noqa: E402
    ADMIN_URL,
    postgres_database,
    random_weights,
    scratch,
    synthetic_crop,
)
from facestore import db as database  # noqa: E402
from facestore.backbones import build_backbone, space_of  # noqa: E402
from facestore.config import BackboneSettings  # noqa: E402
from facestore.embedding import ensure_active_space  # noqa: E402
from facestore.store import Store  # noqa: E402

CHUNK = 50_000


def person_sizes(faces: int, people: int, rng: np.random.Generator) -> np.ndarray:
    """A person per face, Zipf-like sizes (at least 2 faces each), shuffled order."""
    weights = 1.0 / np.arange(1, people + 1) ** 0.9
    sizes = np.maximum(2, np.floor(weights / weights.sum() * faces)).astype(np.int64)
    sizes[0] += faces - sizes.sum()  # the rest to the biggest
    labels = np.repeat(np.arange(people), sizes)
    return labels[rng.permutation(len(labels))]


def create_app_table(url: str, path: Path | None) -> None:
    if path is not None:
        con = sqlite3.connect(path)
        con.execute(
            "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, "
            "person_id INTEGER, verified BOOLEAN NOT NULL DEFAULT 0)"
        )
        con.close()
        return
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a database made for this run (bench.common)
        conn.execute(
            sa.text(
                "CREATE TABLE face (id bigserial PRIMARY KEY, face_crop_blob bytea, "
                "person_id bigint, verified boolean NOT NULL DEFAULT false)"
            )
        )
    engine.dispose()


def fill(store: Store, labels: np.ndarray, unverified: float, space_hash: str, dim: int) -> None:
    """Face rows and their vectors, written in chunks (facestore's triggers are on)."""
    import sqlalchemy as sa

    from facestore.schema import embedding
    from facestore.store import crop_sha256

    crop = synthetic_crop(0, 0, size=40)
    sha = crop_sha256(crop)
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(int(labels.max()) + 1, dim)).astype(np.float32)
    face = store.db.face.table
    started = time.perf_counter()
    for start in range(0, len(labels), CHUNK):
        part = labels[start : start + CHUNK]
        ids = np.arange(start + 1, start + len(part) + 1)
        named = rng.random(len(part)) >= unverified
        vectors = centres[part] + 0.5 * rng.normal(size=(len(part), dim)).astype(np.float32)
        with store.engine.begin() as conn:
            conn.execute(
                face.insert(),
                [
                    {"id": int(i), "face_crop_blob": crop, "person_id": int(p), "verified": bool(v)}
                    for i, p, v in zip(ids, part, named, strict=True)
                ],
            )
            conn.execute(sa.delete(sa.table("embedding_job")))
            conn.execute(
                embedding.insert(),
                [
                    {
                        "face_id": int(i),
                        "space_hash": space_hash,
                        "crop_sha256": sha,
                        "vector": v.astype("<f4").tobytes(),
                        "created_at": 0.0,
                    }
                    for i, v in zip(ids, vectors, strict=True)
                ],
            )
        done = start + len(part)
        print(f"  {done:,} faces ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if store.engine.dialect.name == "postgresql":  # the ids were given: move the sequence on
        with store.engine.begin() as conn:
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence('face', 'id'), max(id)) FROM face")
            )


def timed_cli(env: dict[str, str], *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "facestore", *args], env=env, capture_output=True, text=True
    )
    took = time.perf_counter() - started
    if out.returncode not in (0,):
        print(out.stderr[-2000:], file=sys.stderr)
    return took, out.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description="facestore at 1M faces")
    parser.add_argument("--faces", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--unverified", type=float, default=0.1)
    parser.add_argument("--retrain-cap", type=float, default=900)
    parser.add_argument("--skip-retrain", action="store_true")
    parser.add_argument("--db", help="PostgreSQL: this database (refused if it holds tables)")
    parser.add_argument("--force", action="store_true", help="use --db even if it holds tables")
    parser.add_argument("--admin-url", default=ADMIN_URL, help="where to make the database")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
    work = args.keep or scratch("facestore-scale-")
    with contextlib.ExitStack() as stack:
        path = work / "library.db" if args.backend == "sqlite" else None
        if path is not None:
            if path.exists():
                path.unlink()
            url = f"sqlite:///{path}"
        else:
            made = postgres_database(args.db, bool(args.keep), args.force, args.admin_url)
            url = stack.enter_context(made)
        run(args, work, url, path)


def run(args: argparse.Namespace, work: Path, url: str, path: Path | None) -> None:
    model_dir = work / "model"
    weights = random_weights(work / "random-vggface2.pt")
    backbone = build_backbone(BackboneSettings(weights=weights, device="cpu"))
    space = space_of(backbone)
    rng = np.random.default_rng(0)
    labels = person_sizes(args.faces, args.people, rng)

    create_app_table(url, path)
    engine = database.create_engine(url)
    database.upgrade(engine)
    store = Store(engine)
    ensure_active_space(store, space)
    started = time.perf_counter()
    fill(store, labels, args.unverified, space.config_hash, 512)
    build_s = time.perf_counter() - started
    vacuum_s = None
    if engine.dialect.name == "postgresql":
        # A real library grows over months while autovacuum keeps up; this one was bulk
        # loaded in minutes (and the local server runs with autovacuum off), so it is
        # vacuumed and analysed once, as after any bulk load: else the queue's million
        # dead rows and planner statistics of empty tables slow every count.
        started = time.perf_counter()
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        vacuum_s = round(time.perf_counter() - started, 1)
    (work / "facestore.env").write_text(
        f"FACESTORE_DB={url}\nFACESTORE_MODEL_DIR={model_dir}\nFACESTORE_WEIGHTS={weights}\n"
    )
    env = {
        **os.environ,
        "FACESTORE_DB": url,
        "FACESTORE_MODEL_DIR": str(model_dir),
        "FACESTORE_WEIGHTS": str(weights),
    }
    result: dict[str, object] = {
        "faces": args.faces,
        "people": args.people,
        "backend": args.backend,
        "unverified": int(args.faces * args.unverified),
        "build_s": round(build_s, 1),
        "vacuum_s": vacuum_s,
    }

    result["help_s"] = round(timed_cli(env, "--help")[0], 3)
    took, out = timed_cli(env, "status", "--json")
    result["status_s"] = round(took, 3)

    if not args.skip_retrain:
        started = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "facestore", "retrain"], env=env, stderr=subprocess.PIPE
        )
        try:
            _, err = proc.communicate(timeout=args.retrain_cap)
            result["retrain_s"] = round(time.perf_counter() - started, 1)
            if proc.returncode:
                result["retrain_error"] = err.decode()[-500:]
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            result["retrain_s"] = f"stopped at the {args.retrain_cap:.0f} s cap"
        result["retrain_peak_rss_mib"] = (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        )

    from facestore import artifacts
    from facestore.daemon.loop import Daemon
    from facestore.daemon.options import WatchOptions
    from facestore.daemon.suggester import Suggester
    from facestore.predict import Predictor

    if artifacts.current_version(model_dir) is not None:
        predictor = Predictor.load(model_dir)
        started = time.perf_counter()
        Suggester(store, None).suggest(predictor, space.config_hash, replace_all=True)
        result["suggest_100k_s"] = round(time.perf_counter() - started, 1)

    face = store.db.face.table
    for retrain_on in (False, True):
        # retrain on: the policy follows the training pairs through the change log; its
        # thresholds are set out of reach, so that the passes time the policy, not a retrain
        suffix = "_retrain" if retrain_on else ""
        options = WatchOptions(
            retrain=retrain_on,
            clusters=False,
            retrain_min_changes=10**9,
            retrain_delay=10**9,
        )
        daemon = Daemon(store, model_dir, options, backbone)
        daemon.start()
        started = time.perf_counter()
        daemon.reconcile(scan=True)  # the first pass checks everything
        result[f"first_timer_pass{suffix}_s"] = round(time.perf_counter() - started, 2)
        passes = []
        for _ in range(3):  # steady state: rolling slices
            started = time.perf_counter()
            daemon.reconcile(scan=True)
            passes.append(time.perf_counter() - started)
        result[f"timer_pass{suffix}_s"] = round(passes[-1], 2)
        result[f"timer_pass{suffix}_max_s"] = round(max(passes), 2)
        crops = [synthetic_crop(1, i + 10 * retrain_on) for i in range(10)]
        with engine.begin() as conn:
            conn.execute(
                face.insert(),
                [{"face_crop_blob": c, "person_id": 1, "verified": True} for c in crops],
            )
        started = time.perf_counter()
        daemon.reconcile(scan=False)  # woken by the app's insert
        result[f"queue_pass{suffix}_s"] = round(time.perf_counter() - started, 2)
        daemon.close()

    print(json.dumps(result))
    for key, value in result.items():
        print(f"{key:24s} {value}")


if __name__ == "__main__":
    main()

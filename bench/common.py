"""Shared builders for the bench scripts: their scratch space and databases, synthetic app
databases, random weights.

A benchmark never touches data it did not make: it works in a scratch directory (and,
on PostgreSQL, a database) created for the run with a unique name, removed at the end
unless --keep. Given an existing database (--db URL) it refuses one that holds any
table, unless --force.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from facestore import db as database


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_loops(count: int) -> Iterator[None]:
    """count busy-loop processes beside the block: a machine busy with other work."""
    loops = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(count)]
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.join()


def synthetic_crop(person: int, sample: int, size: int = 160, quality: int = 90) -> bytes:
    """A realistic-size JPEG face crop: a per-person pattern, per-sample noise, colour."""
    base = np.random.default_rng(1000 + person).uniform(0, 255, (20, 20, 3))
    pattern = np.kron(base, np.ones((size // 20, size // 20, 1)))
    noise = np.random.default_rng(person * 100_003 + sample).normal(0, 10, pattern.shape)
    pixels = np.clip(pattern + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def app_database(path: Path, faces: int, per_person: int = 20, upgrade: bool = True) -> Path:
    """An app database with `faces` verified JPEG crops, facestore schema installed."""
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE face (id INTEGER PRIMARY KEY, face_crop_blob BLOB, person_id INTEGER, "
        "verified BOOLEAN NOT NULL DEFAULT 0)"
    )
    rows = (
        (synthetic_crop(i // per_person, i % per_person), i // per_person) for i in range(faces)
    )
    con.executemany("INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)", rows)
    con.commit()
    con.close()
    if upgrade:
        database.upgrade(database.create_engine(f"sqlite:///{path}"))
    return path


def random_weights(path: Path, seed: int = 1) -> Path:
    """A randomly initialised InceptionResnetV1 in the official vggface2 format."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(seed)
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), path)
    return path


def start_watch(db: Path, work: Path, log: Path, *options: str) -> subprocess.Popen[bytes]:
    """`facestore watch` on db as a subprocess, models in work/model, stderr to log."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facestore",
            "--db",
            str(db),
            "--model-dir",
            str(work / "model"),
            "watch",
            *options,
        ],
        stderr=log.open("w"),
        stdout=subprocess.DEVNULL,
    )


def scratch(prefix: str, keep: bool = False) -> Path:
    """A new directory for this run; removed when the script ends unless keep."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if keep:
        print(f"keeping {work}", file=sys.stderr)
    else:
        atexit.register(shutil.rmtree, work, True)
    return work


ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class RefusedDatabase(SystemExit):
    pass


@contextlib.contextmanager
def postgres_database(
    url: str | None = None, keep: bool = False, force: bool = False, admin_url: str = ADMIN_URL
) -> Iterator[str]:
    """A PostgreSQL database for one run. url None: a new one with a unique name on the
    admin URL's server, dropped at the end unless keep. url given: used as it is (never
    dropped), refused if it holds any table, unless force."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    if url is not None:
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            tables = sa.inspect(conn).get_table_names()
        engine.dispose()
        if tables and not force:
            where = sa.engine.make_url(url).render_as_string(hide_password=True)
            named = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise RefusedDatabase(
                f"{where} holds {len(tables)} table{'s' * (len(tables) != 1)} this benchmark "
                f"did not create ({named}). "
                "Leave --db out (a new database is made and dropped), or pass --force to use "
                "it anyway."
            )
        yield url
        return
    name = f"facestore_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    made = sa.engine.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield made
    finally:
        if keep:
            print(f"keeping database {name}", file=sys.stderr)
        else:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

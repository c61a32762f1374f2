"""Faults a real install meets, on the real daemon as a subprocess (real facenet path,
random weights): the PostgreSQL server going away mid-pass, and a full disk under a
SQLite library. The daemon stays up, says it is not ready, counts the errors, loses no
face and writes no half-done vector, and carries on by itself when the fault is gone.
docs/reliability.md has the figures."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from facestore import db as database
from tests.support.backends import fill_postgres_app
from tests.support.helpers import encode, face_image
from tests.support.http import get, metrics, served_at
from tests.support.private_postgres import private_postgres
from tests.support.processes import Watcher, app_db, patient, wait_for, wait_progressing

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

FAST = ["--retrain-min-changes", "3", "--retrain-delay", "5", "--retrain-cooldown", "0"]
VECTOR_BYTES = 512 * 4


def errors(base: str) -> float:
    return sum(
        v for (name, _), v in metrics(base).items() if name == "facestore_database_errors_total"
    )


def check_vectors(engine: sa.Engine) -> tuple[int, int]:
    """(faces, faces whose vector is whole and of their crop as it is now)."""
    with engine.connect() as conn:
        faces = conn.execute(sa.text("SELECT id, face_crop_blob FROM face")).all()
        vectors = dict(
            (int(f), (sha, bytes(v)))
            for f, sha, v in conn.execute(
                sa.text("SELECT face_id, crop_sha256, vector FROM embedding")
            )
        )
    good = sum(
        1
        for face_id, blob in faces
        if face_id in vectors
        and vectors[face_id][0] == hashlib.sha256(bytes(blob)).hexdigest()
        and len(vectors[face_id][1]) == VECTOR_BYTES
    )
    assert len(vectors) <= len(faces)
    return len(faces), good


def ready_watcher(
    db: Path | str, tmp_path: Path, weights: Path, watchers: list[Watcher], *extra: str
) -> tuple[Watcher, str]:
    """`facestore watch` (fast retrain policy, 2 s interval, metrics on a free port) once
    /readyz says ready; its endpoint's base URL."""
    watcher = Watcher(
        db,
        tmp_path,
        weights,
        "--metrics-addr",
        "127.0.0.1:0",
        *extra,
        base=[*FAST, "--interval", "2"],
    )
    watchers.append(watcher)
    base = served_at(watcher)
    wait_for(lambda: get(base + "/readyz")[0] == 200, patient(30), "/readyz to turn 200")
    return watcher, base


def test_a_postgresql_outage_mid_pass_is_survived(
    weights_file: Path, tmp_path: Path, watchers: list[Watcher]
) -> None:
    with private_postgres() as server:
        url = server.create_database("app")
        fill_postgres_app(url, people=3, per_person=3)
        database.upgrade(database.create_engine(url))
        watcher, base = ready_watcher(url, tmp_path, weights_file, watchers, "--batch-size", "8")
        app = sa.create_engine(url, poolclass=NullPool)

        def add(first: int, count: int) -> None:
            with app.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
                        "VALUES (1, :blob, 1, true)"
                    ),
                    [{"blob": encode(face_image(1, first + i))} for i in range(count)],
                )

        def embedded() -> int:
            with app.connect() as conn:
                return int(conn.execute(sa.text("SELECT count(*) FROM embedding")).scalar_one())

        add(100, 80)
        before = embedded()
        wait_for(lambda: embedded() > before, patient(10), "the pass to start writing")
        server.stop_immediately()  # in the middle of the pass
        stopped_at = time.monotonic()
        wait_for(lambda: get(base + "/readyz")[0] == 503, patient(10), "/readyz to say not ready")
        wait_for(lambda: errors(base) >= 1, patient(10), "the database errors to be counted")
        reasons = " ".join(json.loads(get(base + "/readyz")[1])["reasons"])
        assert "the last reconcile failed" in reasons
        assert watcher.proc.poll() is None  # still up
        assert get(base + "/healthz")[0] == 200  # its loop alive

        server.start()
        add(300, 10)  # added after the restart
        wait_progressing(
            lambda: check_vectors(app) == (99, 99),
            embedded,
            patient(20),
            "every face, those of before, during and after the outage, to be embedded",
        )
        wait_for(lambda: get(base + "/readyz")[0] == 200, patient(10), "/readyz to recover")
        print(f"outage to all embedded: {time.monotonic() - stopped_at:.1f} s")
        assert watcher.proc.poll() is None  # no restart of its own
        app.dispose()
        assert watcher.stop() == 0


@contextlib.contextmanager
def small_disk(where: Path, megabytes: int) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here ({mounted.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill_up(directory: Path) -> Path:
    """A file that takes every free byte of the filesystem."""
    filler = directory / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def test_a_full_disk_is_survived_and_named(
    weights_file: Path, tmp_path: Path, watchers: list[Watcher]
) -> None:
    with small_disk(tmp_path / "disk", 16) as disk:
        db = app_db(disk / "app.db", people=3, per_person=3)
        watcher, base = ready_watcher(db, tmp_path, weights_file, watchers, "--batch-size", "8")
        con = sqlite3.connect(db)
        con.executemany(
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
            [(encode(face_image(1, 100 + i)),) for i in range(40)],
        )
        con.commit()
        con.close()
        filler = fill_up(disk)  # now the daemon's writes cannot find room
        wait_for(lambda: errors(base) >= 1, patient(15), "the database errors to be counted")
        wait_for(lambda: get(base + "/readyz")[0] == 503, patient(10), "/readyz to say not ready")
        reasons = " ".join(json.loads(get(base + "/readyz")[1])["reasons"])
        assert "full" in reasons, reasons
        assert watcher.proc.poll() is None
        doctor = subprocess.run(
            [sys.executable, "-m", "facestore", "--db", str(db), "doctor", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        [disk_check] = [c for c in json.loads(doctor.stdout) if c["check"] == "disk"]
        assert disk_check["status"] == "fail" and "free" in disk_check["detail"], disk_check

        filler.unlink()  # space comes back
        freed_at = time.monotonic()
        engine = sa.create_engine(f"sqlite:///{db}", poolclass=NullPool)
        wait_for(lambda: check_vectors(engine) == (49, 49), patient(30), "every face embedded")
        wait_for(lambda: get(base + "/readyz")[0] == 200, patient(10), "/readyz to recover")
        print(f"space back to all embedded and ready: {time.monotonic() - freed_at:.1f} s")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        engine.dispose()
        assert watcher.stop() == 0


def spawned(pid: int) -> set[int]:
    """The daemon's `spawn` children: decode workers, and a retrain while one runs."""
    found = set()
    for child in child_pids(pid):
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(child)
    return found


def child_pids(pid: int) -> set[int]:
    """The process's children, read per thread; a thread that ends meanwhile is skipped."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the thread ended between listing and reading
            children.update(int(c) for c in (task / "children").read_text().split())
    return children


def test_a_killed_retrain_process_leaves_the_model_serving_and_is_retried(
    weights_file: Path, tmp_path: Path, watchers: list[Watcher]
) -> None:
    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    cooldown = ["--retrain-cooldown", "10"]  # a crash is tried again after it
    watcher, base = ready_watcher(db, tmp_path, weights_file, watchers, *cooldown)
    wait_for(lambda: (tmp_path / "model" / "current").exists(), patient(30), "a first model")
    serving = (tmp_path / "model" / "current").resolve().name
    started = watcher.output().count("Retrain started")
    workers = spawned(watcher.proc.pid)  # the decode pool's processes, if any
    con = sqlite3.connect(db)
    con.execute("UPDATE face SET person_id = 2 WHERE id IN (1, 2, 3)")  # relabels
    con.commit()
    con.close()
    found: list[int] = []

    def child_running() -> bool:
        found[:] = sorted(spawned(watcher.proc.pid) - workers)
        return bool(found) and watcher.output().count("Retrain started") > started

    wait_for(child_running, patient(20), "the retrain's process to start")
    killed_at = time.monotonic()
    os.kill(found[0], signal.SIGKILL)
    wait_for(
        lambda: "Retrain failed: The retrain process died" in watcher.output(),
        patient(10),
        "the crash to be logged",
    )
    assert watcher.proc.poll() is None  # the daemon is up
    assert get(base + "/healthz")[0] == 200
    [(_, labels)] = [k for k in metrics(base) if k[0] == "facestore_model_info"]
    assert dict(labels)["version"] == serving  # the current model keeps serving
    wait_for(
        lambda: (tmp_path / "model" / "current").resolve().name != serving,
        patient(30),
        "the retrain to be tried again and published",
    )
    print(f"killed retrain to a new model: {time.monotonic() - killed_at:.1f} s")
    assert metrics(base)[("facestore_retrain_failures_total", ())] >= 1
    assert watcher.stop() == 0

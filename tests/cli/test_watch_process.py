"""`facestore watch` as a real subprocess, with the real facenet path (random weights)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.support.helpers import (
    ISO_UTC,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.processes import (
    Watcher,
    app_db,
    model_version,
    patient,
    wait_for,
    wait_progressing,
)

pytestmark = pytest.mark.slow


def add_faces(db: Path, person: int | None, count: int, verified: bool, start: int) -> None:
    for i in range(count):
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, ?, ?)",
            encode(face_image(person if person is not None else 1, start + i)),
            person,
            int(verified),
        )


def test_watch_embeds_retrains_suggests_and_stops_cleanly(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    watcher = Watcher(db, tmp_path, weights_file)
    watchers.append(watcher)
    # first pass: embeds the 9 faces and trains (9 new training faces >= 3)
    wait_for(lambda: model_version(tmp_path) is not None, patient(15), "the first model")
    first = model_version(tmp_path)

    add_faces(db, 2, 5, verified=True, start=20)
    took = wait_for(
        lambda: sqlite_rows(db, "SELECT count(*) FROM embedding")[0][0] == 14,
        patient(5),
        "five new faces to be embedded",
    )
    print(f"5 new faces embedded in {took:.1f}s")
    wait_for(lambda: model_version(tmp_path) != first, patient(10), "the retrain after 5 new faces")
    second = model_version(tmp_path)

    sqlite_exec(db, "UPDATE face SET person_id = 0 WHERE id IN (4, 5, 6)")
    took = wait_for(
        lambda: model_version(tmp_path) != second, patient(10), "a retrain after relabels"
    )
    print(f"relabel of 3 faces -> new model in {took:.1f}s")

    add_faces(db, None, 2, verified=False, start=40)
    current = model_version(tmp_path)
    wait_for(
        lambda: (
            sqlite_rows(
                db, "SELECT count(*) FROM face_suggestion WHERE model_version = ?", current
            )[0][0]
            == 2
        ),
        patient(5),
        "suggestions for 2 unverified faces",
    )
    # "this is not X": the next reconcile (woken by the write) drops X for that face
    [(face_id, person_id)] = sqlite_rows(
        db, "SELECT face_id, person_id FROM face_suggestion ORDER BY face_id LIMIT 1"
    )
    sqlite_exec(
        db, "INSERT INTO face_rejection (face_id, person_id) VALUES (?, ?)", face_id, person_id
    )
    took = wait_for(
        lambda: (
            not sqlite_rows(
                db,
                "SELECT 1 FROM face_suggestion WHERE face_id = ? AND person_id = ?",
                face_id,
                person_id,
            )
        ),
        patient(5),
        "the rejected suggestion to go",
    )
    print(f"rejection -> suggestion gone in {took:.1f}s")
    started = time.monotonic()
    assert watcher.stop(signal.SIGTERM) == 0
    print(f"SIGTERM -> exit 0 in {time.monotonic() - started:.1f}s")
    log = watcher.output()
    assert "Model " in log and "Retrain published model" in log and "Traceback" not in log


def test_sigint_also_exits_zero(tmp_path: Path, weights_file: Path, watchers: list[Watcher]):
    db = app_db(tmp_path / "app.db", people=2, per_person=2)
    watcher = Watcher(db, tmp_path, weights_file, "--no-suggestions")
    watchers.append(watcher)
    wait_for(lambda: "Watching" in watcher.output(), patient(12), "the daemon to start")
    assert watcher.stop(signal.SIGINT) == 0


def test_the_daemons_retrain_keeps_the_models_settings_and_every_log_line_is_json(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    """Issue 37: a model trained with non-default settings, then the daemon's retrain (in
    its child process) reuses them; under --log-format json every line of stderr, the
    child's included, is a JSON object."""
    db = app_db(tmp_path / "app.db", people=3, per_person=4)
    chosen = {"classifier": "centroid", "far": 0.05, "val_fraction": 0.3, "seed": 3, "keep": 3}
    trained = subprocess.run(
        [sys.executable, "-m", "facestore", "--db", str(db), "--model-dir", str(tmp_path / "model")]
        + ["train", "--classifier", "centroid", "--false-accept", "0.05", "--seed", "3"]
        + ["--val-fraction", "0.3", "--keep-versions", "3"],
        capture_output=True,
        text=True,
        env={**os.environ, "FACESTORE_WEIGHTS": str(weights_file), "TORCH_HOME": str(tmp_path)},
        timeout=patient(60),
    )
    assert trained.returncode == 0, trained.stderr
    first = model_version(tmp_path)
    watcher = Watcher(db, tmp_path, weights_file, "--log-format", "json")
    watchers.append(watcher)
    wait_for(lambda: "Watching" in watcher.output(), patient(12), "the daemon to start")
    add_faces(db, 1, 4, verified=True, start=30)
    wait_for(lambda: model_version(tmp_path) != first, patient(20), "the daemon's retrain")
    assert watcher.stop(signal.SIGTERM) == 0
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["settings"] == chosen
    assert metrics["classifier"] == "centroid" and metrics["open_set"]["far_target"] == 0.05
    lines = [line for line in watcher.output().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all(ISO_UTC.fullmatch(e["time"]) and e["message"] for e in entries)
    loggers = {e["logger"] for e in entries}
    assert "facestore.retrain" in loggers  # logged in the retrain's child process


def test_configuration_error_exits_2(tmp_path: Path, weights_file: Path) -> None:
    db = make_app_db(tmp_path / "app.db")  # facestore schema not installed
    result = subprocess.run(
        [sys.executable, "-m", "facestore", "--db", str(db), "watch"],
        capture_output=True,
        text=True,
        env={**os.environ, "FACESTORE_WEIGHTS": str(weights_file)},
    )
    assert result.returncode == 2
    assert "Run 'facestore db upgrade'" in result.stderr


def cache_state(db: Path) -> dict[int, tuple[str, np.ndarray]]:
    rows = sqlite_rows(db, "SELECT face_id, crop_sha256, vector FROM embedding")
    return {f: (sha, np.frombuffer(v, dtype="<f4")) for f, sha, v in rows}


def test_kill_9_mid_batch_then_restart_ends_like_an_uninterrupted_run(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    crashed = app_db(tmp_path / "crashed.db", people=4, per_person=20, corrupt=["random"])
    clean = tmp_path / "clean.db"
    shutil.copy(crashed, clean)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    first = Watcher(crashed, tmp_path / "a", weights_file, "--no-suggestions", "--batch-size", "8")
    watchers.append(first)
    wait_for(lambda: "Embedded 8 faces" in first.output(), patient(12), "the first batch")
    first.proc.kill()  # SIGKILL in the middle of embedding
    first.proc.wait()
    partial = len(cache_state(crashed))
    assert 0 < partial < 80

    restarted = Watcher(
        crashed, tmp_path / "a", weights_file, "--no-suggestions", "--batch-size", "8"
    )
    watchers.append(restarted)
    reference = Watcher(
        clean, tmp_path / "b", weights_file, "--no-suggestions", "--batch-size", "8"
    )
    watchers.append(reference)

    def done(db: Path) -> tuple[int, int]:
        counts = "SELECT (SELECT count(*) FROM embedding), (SELECT count(*) FROM embedding_failure)"
        return sqlite_rows(db, counts)[0]

    # 80 vectors and the corrupt face's failure in each. Two daemons share the CPU: on a
    # busy machine this takes several times the quiet ~20 s, so the wait fails only
    # when neither writes anything for longer than a daemon takes to start and embed.
    wait_progressing(
        lambda: done(crashed) == done(clean) == (80, 1),
        lambda: (done(crashed), done(clean)),
        patient(12),
        "all faces in both databases",
    )
    assert restarted.stop() == 0 and reference.stop() == 0

    got, want = cache_state(crashed), cache_state(clean)
    assert got.keys() == want.keys()
    for face_id, (sha, vector) in want.items():
        assert got[face_id][0] == sha
        np.testing.assert_allclose(got[face_id][1], vector, atol=1e-5)
    assert sqlite_rows(crashed, "SELECT face_id, attempts FROM embedding_failure") == sqlite_rows(
        clean, "SELECT face_id, attempts FROM embedding_failure"
    )
    assert sqlite_rows(crashed, "PRAGMA integrity_check") == [("ok",)]


def test_sigterm_during_a_large_librarys_full_pass_exits_soon_and_keeps_the_old_groups(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher]
) -> None:
    """More unknown faces than CHILD_ABOVE: the daemon's full pass runs in its child;
    a SIGTERM then ends daemon and child within 10 s, and the groups are the old ones."""
    import hashlib
    import sqlite3

    from facestore import db as database
    from facestore.daemon.grouper import CHILD_ABOVE
    from facestore.grouping import ClusterParams
    from facestore.store import Store
    from facestore.unknown_groups import recluster

    db = app_db(tmp_path / "app.db", people=3, per_person=3)
    first = Watcher(db, tmp_path, weights_file)  # the active space and a model
    watchers.append(first)
    wait_for(lambda: model_version(tmp_path) is not None, patient(15), "the first model")
    assert first.stop() == 0
    (space_hash,) = sqlite_rows(db, "SELECT DISTINCT space_hash FROM embedding")[0]
    # the library grows past CHILD_ABOVE unknown faces (vectors written as the bench does):
    # 200 people of 5 faces, the rest strangers
    count = CHILD_ABOVE + 10_000
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 512))
    vectors = rng.normal(size=(count, 512))
    vectors[:1000] = np.repeat(centres, 5, axis=0) + 0.05 * rng.normal(size=(1000, 512))
    con = sqlite3.connect(db)
    start = con.execute("SELECT max(id) FROM face").fetchone()[0] + 1
    con.executemany(
        "INSERT INTO face (id, photo_id, face_crop_blob, person_id, verified) "
        "VALUES (?, 1, x'00', NULL, 0)",
        ((start + i,) for i in range(count)),
    )
    crop = hashlib.sha256(b"\0").hexdigest()
    con.executemany(
        "INSERT INTO embedding (face_id, space_hash, crop_sha256, vector, created_at) "
        "VALUES (?, ?, ?, ?, 0)",
        ((start + i, space_hash, crop, v.astype("<f4").tobytes()) for i, v in enumerate(vectors)),
    )
    con.execute("DELETE FROM embedding_job")
    con.commit()
    con.close()
    store = Store(database.create_engine(f"sqlite:///{db}"))
    space = store.spaces.active()
    assert space is not None
    old = recluster(store, space, ClusterParams(0.1, 3), "given")  # the groups the app sees
    assert old.clusters == 200
    before = sqlite_rows(db, "SELECT cluster_id, face_id FROM face_cluster_member ORDER BY 1, 2")

    second = Watcher(db, tmp_path, weights_file, "--cluster-distance", "0.1")
    watchers.append(second)
    wait_for(
        lambda: "Full re-cluster started" in second.output(),
        patient(60),
        "the full pass in its child",
    )
    started = time.monotonic()
    assert second.stop() == 0
    took = time.monotonic() - started
    print(f"stopped {took:.1f}s after SIGTERM")
    assert took < 10
    assert "Clustered" not in second.output().split("Full re-cluster started")[1]
    after = sqlite_rows(db, "SELECT cluster_id, face_id FROM face_cluster_member ORDER BY 1, 2")
    assert after == before

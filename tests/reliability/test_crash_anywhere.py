"""kill -9 the daemon at random moments while it embeds and retrains; nothing is lost."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from facestore import artifacts
from tests.support.helpers import sqlite_exec, sqlite_rows
from tests.support.processes import FULL, Watcher, app_db, patient, wait_for, wait_progressing
from tests.support.types import Figures

pytestmark = pytest.mark.slow

ARGS = [
    "--interval",
    "1",
    "--batch-size",
    "8",
    "--no-suggestions",
    "--retrain-min-changes",
    "1",
    "--retrain-delay",
    "0",
    "--retrain-cooldown",
    "0",
]


def vectors(db: Path) -> dict[int, tuple[str, np.ndarray]]:
    rows = sqlite_rows(db, "SELECT face_id, crop_sha256, vector FROM embedding")
    return {f: (sha, np.frombuffer(v, dtype="<f4")) for f, sha, v in rows}


def phase(log: str) -> str:
    last = [line for line in log.splitlines() if " INFO " in line][-1:] or [""]
    if "Retrain started" in last[0] or "Retraining" in last[0] or "Class distribution" in last[0]:
        return "retrain"
    if "Embedded" in last[0] or "Watching" in last[0] or "Recorded" in last[0]:
        return "embed"
    return "other"


def test_kill_9_anywhere(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher], figures: Figures
):  # type: ignore[no-untyped-def]
    people, per_person, kills = (50, 40, 25) if FULL else (12, 20, 20)
    db = app_db(
        tmp_path / "app.db", people=people, per_person=per_person, corrupt=["random", "bomb"]
    )
    clean = tmp_path / "clean.db"
    shutil.copy(db, clean)
    env = {**os.environ, "FACESTORE_WEIGHTS": str(weights_file)}
    subprocess.run(
        [sys.executable, "-m", "facestore", "--db", str(clean), "embed", "--batch-size", "8"],
        check=True,
        env=env,
        capture_output=True,
    )

    rng = random.Random(3)
    phases: dict[str, int] = {}
    model_dir = tmp_path / "model"
    for n in range(kills):
        if n % 4 == 3:  # relabels give the next run a retrain to be killed in
            sqlite_exec(
                db,
                "UPDATE face SET person_id = ? WHERE id = ?",
                rng.randrange(people),
                rng.randrange(1, people * per_person),
            )
        watcher = Watcher(db, tmp_path, weights_file, *ARGS, base=[])
        watchers.append(watcher)
        wait_for(lambda w=watcher: "Watching" in w.output(), 60, "the daemon to start")
        time.sleep(rng.uniform(0, 1.5))
        watcher.proc.kill()
        watcher.proc.wait()
        phases[phase(watcher.output())] = phases.get(phase(watcher.output()), 0) + 1
        assert sqlite_rows(db, "PRAGMA integrity_check") == [("ok",)]
        if artifacts.current_version(model_dir) is not None:
            artifacts.load_bundle(model_dir)  # always loadable
    killed_with = len(vectors(db))

    final = Watcher(db, tmp_path, weights_file, *ARGS, base=[])
    watchers.append(final)
    wait_for(lambda: "Watching" in final.output(), 60, "the daemon to start")
    total = people * per_person
    failures = "SELECT face_id, attempts, error FROM embedding_failure ORDER BY face_id"
    wait_progressing(
        lambda: (
            len(vectors(db)) == total and sqlite_rows(db, failures) == sqlite_rows(clean, failures)
        ),
        lambda: (len(vectors(db)), sqlite_rows(db, failures)),
        patient(12),
        "the restarted daemon to finish (its last batch holds only the corrupt crops)",
    )
    wait_for(lambda: artifacts.current_version(model_dir) is not None, patient(12), "a model")
    assert final.stop() == 0

    assert sqlite_rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert sqlite_rows(
        db, "SELECT count(*), count(DISTINCT face_id || space_hash) FROM embedding"
    ) == [(total, total)]
    assert sqlite_rows(db, "SELECT count(*) FROM embedding WHERE length(vector) != 2048") == [(0,)]
    got, want = vectors(db), vectors(clean)
    assert got.keys() == want.keys()
    for face_id, (sha, vector) in want.items():
        assert got[face_id][0] == sha
        np.testing.assert_allclose(got[face_id][1], vector, atol=1e-5)
    assert sqlite_rows(db, failures) == sqlite_rows(clean, failures)
    bundle = artifacts.load_bundle(model_dir)
    assert len(bundle.training_set) <= total
    figures(
        f"{total} faces, {kills} kill -9 (phases at kill: {phases}); "
        f"{killed_with} vectors when the last kill landed; final cache equals a clean run's "
        f"(vectors within 1e-5), integrity_check ok, model {bundle.version} loadable"
    )

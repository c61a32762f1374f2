"""A tagging app writing with plain sqlite3 while `facestore watch` runs."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.helpers import sqlite_rows
from tests.support.processes import FULL, Watcher, app_db, patient, wait_for
from tests.support.types import Figures

pytestmark = pytest.mark.slow

SIMULATOR = r"""
import io, json, random, sqlite3, sys, time
import numpy as np
from PIL import Image

db, seconds, rate = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rng = random.Random(7)

def crop():
    pixels = np.random.default_rng(rng.randrange(1 << 30)).integers(0, 255, (112, 92), dtype=np.uint8)
    out = io.BytesIO(); Image.fromarray(pixels).save(out, "JPEG"); return out.getvalue()

con = sqlite3.connect(db)  # default settings: 5 s timeout, deferred transactions
ops = {"insert": 0, "verify": 0, "relabel": 0, "edit": 0, "delete": 0, "replace": 0}
locked = 0
until = time.time() + seconds
while time.time() < until:
    op = rng.choice(list(ops))
    ids = [r[0] for r in con.execute("SELECT id FROM face")]
    try:
        if op == "insert" or not ids:
            con.execute("INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
                        "VALUES (1, ?, ?, ?)", (crop(), rng.randrange(4), rng.random() < 0.7))
        elif op == "verify":
            con.execute("UPDATE face SET verified = 1, person_id = coalesce(person_id, 0) "
                        "WHERE id = ?", (rng.choice(ids),))
        elif op == "relabel":
            con.execute("UPDATE face SET person_id = ? WHERE id = ?", (rng.randrange(4), rng.choice(ids)))
        elif op == "edit":
            con.execute("UPDATE face SET face_crop_blob = ? WHERE id = ?", (crop(), rng.choice(ids)))
        elif op == "delete":
            con.execute("DELETE FROM face WHERE id = ?", (rng.choice(ids),))
        else:
            con.execute("INSERT OR REPLACE INTO face (id, photo_id, face_crop_blob, person_id, verified) "
                        "VALUES (?, 1, ?, ?, 1)", (rng.choice(ids), crop(), rng.randrange(4)))
        con.commit()
        ops[op] += 1
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc):
            locked += 1
        con.rollback()
    time.sleep(rng.expovariate(rate))
print(json.dumps({"ops": ops, "locked": locked}))
"""


def test_app_and_daemon_share_the_database(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher], figures: Figures
) -> None:
    seconds = 60 if FULL else 20
    db = app_db(tmp_path / "app.db", people=4, per_person=3, unverified=2)
    watcher = Watcher(
        db,
        tmp_path,
        weights_file,
        "--interval",
        "2",
        "--retrain-min-changes",
        "5",
        "--retrain-delay",
        "5",
        "--retrain-cooldown",
        "3",
        base=[],
    )
    watchers.append(watcher)
    wait_for(lambda: "Watching" in watcher.output(), 60, "the daemon to start")
    simulator = subprocess.run(
        [sys.executable, "-c", SIMULATOR, str(db), str(seconds), "10"],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    assert simulator.returncode == 0, simulator.stderr
    result = json.loads(simulator.stdout)
    stopped = time.monotonic()

    def consistent() -> bool:
        faces = dict(
            sqlite_rows(
                db, "SELECT id, face_crop_blob FROM face WHERE person_id IS NOT NULL AND verified"
            )
        )
        active = sqlite_rows(db, "SELECT config_hash FROM embedding_space WHERE is_active")
        if not active:
            return False
        vectors = sqlite_rows(
            db, "SELECT face_id, crop_sha256 FROM embedding WHERE space_hash = ?", active[0][0]
        )
        by_face = {}
        for face_id, sha in vectors:
            by_face.setdefault(face_id, []).append(sha)
        return all(
            by_face.get(face_id) == [hashlib.sha256(blob).hexdigest()]
            for face_id, blob in faces.items()
        )

    settle = wait_for(consistent, patient(12), "every verified face to have its one current vector")
    deleted_vectors = sqlite_rows(
        db, "SELECT count(*) FROM embedding WHERE face_id NOT IN (SELECT id FROM face)"
    )
    deleted_suggestions = sqlite_rows(
        db, "SELECT count(*) FROM face_suggestion WHERE face_id NOT IN (SELECT id FROM face)"
    )
    assert deleted_vectors == [(0,)] and deleted_suggestions == [(0,)]
    assert watcher.stop() == 0
    log = watcher.output()
    assert result["locked"] == 0, result
    assert "database is locked" not in log and "Traceback" not in log
    total_ops = sum(result["ops"].values())
    figures(
        f"{seconds}s, {total_ops} app writes ({total_ops / seconds:.1f}/s: {result['ops']}), "
        f"0 'database is locked' in either process, consistent {settle:.1f}s after the app "
        f"stopped ({time.monotonic() - stopped:.1f}s incl. checks), "
        f"{log.count('Retrain published')} retrains"
    )

"""With file events disabled, the timer alone catches every change within one interval."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.helpers import encode, face_image, sqlite_exec, sqlite_rows
from tests.support.processes import Watcher, app_db, patient, wait_for
from tests.support.types import Figures

pytestmark = pytest.mark.slow


def test_poll_only_catches_changes_within_an_interval(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher], figures: Figures
) -> None:
    db = app_db(tmp_path / "app.db", people=2, per_person=2)
    interval = 3.0
    watcher = Watcher(
        db,
        tmp_path,
        weights_file,
        "--poll",
        "--interval",
        str(interval),
        "--no-suggestions",
        base=[],
    )
    watchers.append(watcher)
    wait_for(
        lambda: sqlite_rows(db, "SELECT count(*) FROM embedding")[0][0] == 4,
        60,
        "the first reconcile",
    )
    assert "timer only" in watcher.output()
    delays = []
    for n in range(3):
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
            encode(face_image(1, 10 + n)),
        )
        started = time.monotonic()
        wait_for(
            lambda n=n: sqlite_rows(db, "SELECT count(*) FROM embedding")[0][0] == 5 + n,
            patient(interval + 3),  # quiet: one interval plus the embedding
            "the timer to catch the new face",
        )
        delays.append(time.monotonic() - started)
    assert watcher.stop() == 0
    figures(
        f"--poll --interval {interval:.0f}: new faces embedded after "
        + ", ".join(f"{d:.1f}s" for d in delays)
    )

"""The bad-input catalogue: each crop is embedded or recorded as failed once, memory bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.helpers import (
    CORRUPT_BLOBS,
    encode,
    face_image,
    png_bomb,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.processes import app_db
from tests.support.types import Figures

pytestmark = pytest.mark.slow


def catalogue() -> dict[str, tuple[bytes, bool]]:
    """name -> (crop bytes, should embed)."""
    grey = face_image(1, 1)
    photo = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (4000, 4000, 3), dtype=np.uint8)
    )
    sixteen = Image.fromarray(np.linspace(0, 65535, 92 * 112).reshape(112, 92).astype(np.uint16))
    return {
        "random bytes": (CORRUPT_BLOBS["random"], False),
        "0 bytes": (b"", False),
        "truncated JPEG": (CORRUPT_BLOBS["truncated-jpeg"], False),
        "PNG header claiming 50000x50000": (png_bomb(), False),
        "text file": (CORRUPT_BLOBS["text"], False),
        "CMYK JPEG": (encode(grey.convert("CMYK"), "JPEG"), True),
        "16-bit PNG": (encode(sixteen, "PNG"), True),
        "RGBA PNG": (encode(grey.convert("RGBA"), "PNG"), True),
        "palette PNG with transparency": (encode(grey.convert("P"), "PNG", transparency=0), True),
        "1x1 image": (encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"), True),
        "4000x4000 photo": (encode(photo, "JPEG", quality=85), True),
    }


def embed(db: Path, weights: Path) -> tuple[dict, int]:
    """Run `facestore embed` in a child process; return its JSON and its peak RSS in MiB."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "facestore", "--db", str(db), "embed", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "FACESTORE_WEIGHTS": str(weights)},
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(out), usage.ru_maxrss // 1024


def test_bad_input_catalogue(tmp_path: Path, weights_file: Path, figures: Figures) -> None:
    baseline_db = app_db(tmp_path / "baseline.db", people=1, per_person=2)
    _, baseline_rss = embed(baseline_db, weights_file)

    db = app_db(tmp_path / "app.db", people=1, per_person=2)
    cases = catalogue()
    ids = {}
    for name, (blob, _) in cases.items():
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 0, 1)",
            blob,
        )
        ids[name] = sqlite_rows(db, "SELECT max(id) FROM face")[0][0]

    first, rss = embed(db, weights_file)
    bad = [n for n, (_, ok) in cases.items() if not ok]
    assert (first["embedded"], first["failed"]) == (2 + len(cases) - len(bad), len(bad))
    for name, (_, ok) in cases.items():
        vector = sqlite_rows(db, "SELECT count(*) FROM embedding WHERE face_id = ?", ids[name])
        failure = sqlite_rows(
            db, "SELECT attempts FROM embedding_failure WHERE face_id = ?", ids[name]
        )
        assert (vector, failure) == (([(1,)], []) if ok else ([(0,)], [(1,)])), name

    second, _ = embed(db, weights_file)  # failures are not retried
    assert (second["embedded"], second["failed"]) == (0, 0)
    assert sqlite_rows(db, "SELECT max(attempts) FROM embedding_failure") == [(1,)]

    sqlite_exec(
        db,
        "UPDATE face SET face_crop_blob = ? WHERE id = ?",
        encode(face_image(1, 2)),
        ids["random bytes"],
    )  # the crop changes: retried
    third, _ = embed(db, weights_file)
    assert (third["embedded"], third["failed"]) == (1, 0)

    assert rss < baseline_rss + 512, (rss, baseline_rss)
    figures(
        f"{len(cases)} cases: {len(cases) - len(bad)} embedded, {len(bad)} recorded failed once "
        f"and not retried; peak RSS of 'facestore embed' {rss} MiB vs {baseline_rss} MiB "
        f"for two good crops"
    )

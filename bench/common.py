"""Shared builders for the bench scripts: synthetic app databases and random weights."""

from __future__ import annotations

import io
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from facestore import db as database


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

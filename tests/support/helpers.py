"""Builders shared by the tests: synthetic crops, an app database, a fake backbone."""

from __future__ import annotations

import io
import re
import sqlite3
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def face_image(person: int, sample: int, size: tuple[int, int] = (92, 112)) -> Image.Image:
    """A grey, face-sized image: a per-person pattern plus per-sample noise."""
    base = np.random.default_rng(1000 + person).uniform(0, 255, (14, 12))
    pattern = np.kron(base, np.ones((8, 8)))[: size[1], : size[0]]
    noise = np.random.default_rng(person * 100 + sample).normal(0, 12, pattern.shape)
    pixels = np.clip(pattern + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L")


def drawn_face(person: int, sample: int, size: tuple[int, int] = (92, 112)) -> Image.Image:
    """A grey drawing of a face (oval, eyes, brows, nose, mouth) that a face detector
    takes for one (MTCNN's output network: 0.85-0.99), unlike face_image's patterns."""
    rng = np.random.default_rng(person * 100 + sample)
    w, h = size
    image = Image.new("L", size, 60)
    draw = ImageDraw.Draw(image)
    draw.ellipse((w * 0.12, h * 0.08, w * 0.88, h * 0.95), fill=170 + person * 10)
    eye_y, eye_x = h * (0.40 + 0.02 * rng.normal()), w * (0.22 + 0.02 * person)
    for x in (w * 0.5 - eye_x, w * 0.5 + eye_x):
        draw.ellipse((x - 7, eye_y - 4, x + 7, eye_y + 4), fill=30)
        draw.line((x - 9, eye_y - 9, x + 9, eye_y - 10), fill=70, width=3)
    draw.polygon([(w * 0.5, h * 0.45), (w * 0.44, h * 0.63), (w * 0.56, h * 0.63)], fill=140)
    draw.line((w * 0.36, h * 0.76, w * 0.64, h * 0.76), fill=80, width=4)
    pixels = np.asarray(image, np.float64) + rng.normal(0, 6, (h, w))
    grey = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return grey.filter(ImageFilter.GaussianBlur(1.5))


def encode(image: Image.Image, fmt: str = "JPEG", **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming width x height pixels, with a tiny (wrong) body."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


# one timestamp format everywhere facestore prints one
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")

CORRUPT_BLOBS: dict[str, bytes] = {
    "empty": b"",
    "random": np.random.default_rng(7).bytes(3000),
    "text": b"this is not an image\n" * 20,
    "truncated-jpeg": encode(face_image(0, 0))[:1200],
    "bomb": png_bomb(),
}

APP_SCHEMA = """
CREATE TABLE photo (id INTEGER PRIMARY KEY, path TEXT NOT NULL, taken_at TEXT);
CREATE TABLE person (id {pid} PRIMARY KEY, name TEXT);
CREATE TABLE face (
    id INTEGER PRIMARY KEY,
    photo_id INTEGER REFERENCES photo(id) ON DELETE CASCADE,
    face_crop_blob BLOB,
    person_id {pid}{verified}
);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
CREATE VIEW named_faces AS SELECT face.id, person.name FROM face JOIN person
    ON person.id = face.person_id;
CREATE TRIGGER photo_touch AFTER INSERT ON face BEGIN
    UPDATE photo SET taken_at = coalesce(taken_at, 'now') WHERE id = NEW.photo_id;
END;
INSERT INTO alembic_version VALUES ('app_rev_42');
"""


def person_value(person: int, text_ids: bool) -> Any:
    return f"p{person:02d}" if text_ids else person


def app_faces(
    people: int = 3,
    per_person: int = 4,
    *,
    with_verified: bool = True,
    text_ids: bool = False,
    unverified: int = 0,
    corrupt: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The face rows of the test app, in id order.

    Faces alternate JPEG and PNG. With a verified column, `unverified` extra faces
    have a person but verified false. Corrupt blobs belong to person 0, verified.
    """
    rows: list[dict[str, Any]] = []

    def add(blob: bytes, person: Any, is_verified: bool) -> None:
        row = {"photo_id": 1, "face_crop_blob": blob, "person_id": person}
        if with_verified:
            row["verified"] = is_verified
        rows.append(row)

    for p in range(people):
        for s in range(per_person):
            fmt = "JPEG" if s % 2 == 0 else "PNG"
            add(encode(face_image(p, s), fmt), person_value(p, text_ids), True)
    for u in range(unverified):
        add(encode(face_image(u % people, 50 + u)), person_value(u % people, text_ids), False)
    for name in corrupt:
        add(CORRUPT_BLOBS[name], person_value(0, text_ids), True)
    return rows


def make_app_db(
    path: Path,
    people: int = 3,
    per_person: int = 4,
    *,
    with_verified: bool = True,
    text_ids: bool = False,
    unverified: int = 0,
    corrupt: Sequence[str] = (),
) -> Path:
    """A plausible tagging-app SQLite database, written with plain sqlite3 (see app_faces)."""
    pid = "TEXT" if text_ids else "INTEGER"
    verified = ",\n    verified BOOLEAN NOT NULL DEFAULT 0" if with_verified else ""
    con = sqlite3.connect(path)
    con.executescript(APP_SCHEMA.format(pid=pid, verified=verified))
    con.execute("INSERT INTO photo (path) VALUES ('/photos/1.jpg')")
    for p in range(people):
        con.execute("INSERT INTO person VALUES (?, ?)", (person_value(p, text_ids), f"n{p}"))
    rows = app_faces(
        people,
        per_person,
        with_verified=with_verified,
        text_ids=text_ids,
        unverified=unverified,
        corrupt=corrupt,
    )
    for row in rows:
        con.execute(
            f"INSERT INTO face ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            [int(v) if isinstance(v, bool) else v for v in row.values()],
        )
    con.commit()
    con.close()
    return path


def app_snapshot(path: Path) -> tuple[list[Any], dict[str, list[Any]]]:
    """The app's schema objects and data, excluding facestore's own."""
    con = sqlite3.connect(path)
    master = con.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
    ).fetchall()
    data = {
        name: con.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
        for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    con.close()
    return master, data


class FakeBackbone:
    """Deterministic, torch-free backbone for tests where the backbone is beside the point."""

    dim = 512

    def __init__(self, name: str = "fake", salt: int = 0) -> None:
        self.name = name
        self.config = {"kind": "downsampled grey pixels", "salt": salt}
        self.calls = 0

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.calls += 1
        rows = []
        for image in images:
            grey = np.asarray(image.convert("L").resize((16, 32)), dtype=np.float32).ravel()
            grey = grey - grey.mean() + self.config["salt"]
            rows.append(grey / (np.linalg.norm(grey) or 1.0))
        return np.asarray(rows, dtype=np.float32).reshape(len(images), self.dim)


class KeyedBackbone:
    """A backbone whose vectors the test chooses: a crop made by `keyed_crop(key)` embeds
    to `vectors[key]`. For checks where the geometry matters but the model does not."""

    def __init__(self, vectors: dict[int, np.ndarray], name: str = "keyed") -> None:
        self.vectors = vectors
        self.name = name
        self.dim = len(next(iter(vectors.values())))
        self.config = {"kind": "vectors chosen by the test", "dim": self.dim}

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        keys = [
            int.from_bytes(bytes(image.convert("RGB").getpixel((0, 0))), "big") for image in images
        ]
        return np.asarray([self.vectors[k] for k in keys], dtype=np.float32).reshape(-1, self.dim)


def keyed_crop(key: int) -> bytes:
    """A PNG crop whose first pixel carries key (< 2**24) for KeyedBackbone."""
    image = Image.new("RGB", (8, 8), (40, 40, 40))
    image.putpixel((0, 0), tuple(key.to_bytes(3, "big")))
    return encode(image, "PNG")


def sqlite_rows(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def sqlite_exec(path: Path, sql: str, *params: Any, foreign_keys: bool = False) -> None:
    """A write from the 'app': plain sqlite3 with default settings."""
    con = sqlite3.connect(path)
    try:
        con.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()

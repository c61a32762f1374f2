"""Low-quality faces through the daemon and the commands: a blurred, tiny or coarsely
compressed crop gets no suggestion and joins no group; status counts it, `failures --low-quality` lists it,
/metrics exports it, `predict --json` says why. The fake backbone is beside the point
here: it even maps a blurred copy close to the sharp face, which is what makes the
gate the only thing between such a crop and a name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from facestore import db as database
from tests.support.helpers import (
    drawn_face,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.types import Cli
from tests.unit.test_daemon import FakeClock, make_daemon


def add(db: Path, blob: bytes) -> int:
    sqlite_exec(
        db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, NULL, 0)",
        blob,
    )
    return int(sqlite_rows(db, "SELECT max(id) FROM face")[0][0])


def test_a_blurred_tiny_or_coarsely_compressed_crop_gets_no_name_and_no_group(
    tmp_path: Path, cli: Cli, fake_registered: None
) -> None:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=5)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    # min_confidence 0: without the gate, every face would be named someone
    daemon = make_daemon(db, tmp_path, FakeClock(), min_confidence=0.0, cluster_distance=0.05)
    daemon.reconcile()  # embeds, trains a model with a quality gate
    sharp = face_image(1, 60).convert("RGB")
    blurred = face_image(2, 61).convert("RGB").filter(ImageFilter.GaussianBlur(5))
    tiny = face_image(0, 62).convert("RGB").resize((20, 24))
    coarse = encode(face_image(1, 63).convert("RGB"), quality=5)  # verified: quality 75
    ids = {
        "sharp": add(db, encode(sharp)),
        "blurred": add(db, encode(blurred)),
        "blurred again": add(db, encode(blurred)),
        "tiny": add(db, encode(tiny)),
        "coarse": add(db, coarse),
    }
    daemon.reconcile(scan=False)
    suggested = {f for (f,) in sqlite_rows(db, "SELECT face_id FROM face_suggestion")}
    assert ids["sharp"] in suggested
    gated = {ids["blurred"], ids["blurred again"], ids["tiny"], ids["coarse"]}
    assert not gated & suggested
    grouped = {f for (f,) in sqlite_rows(db, "SELECT face_id FROM face_cluster_member")}
    assert not gated & grouped  # the two identical blurred crops would group otherwise
    verdicts = dict(
        sqlite_rows(db, "SELECT face_id, quality_reason FROM embedding WHERE quality IS NOT NULL")
    )
    assert verdicts.keys() == gated
    assert verdicts[ids["blurred"]] == verdicts[ids["blurred again"]] == "sharpness"
    assert verdicts[ids["tiny"]] in ("size", "sharpness")  # upscaled, it is blurred too
    assert verdicts[ids["coarse"]] == "compression"  # its 8x8 blocks look sharp
    metric = daemon.telemetry.registry.get_sample_value("facestore_low_quality_faces")
    assert metric == 4

    status = json.loads(
        cli("--db", db, "--model-dir", tmp_path / "model", "status", "--json").stdout
    )
    assert status["low_quality"] == 4
    assert "low quality:  4 unverified faces" in cli("--db", db, "status").stdout
    listed = json.loads(cli("--db", db, "failures", "--low-quality", "--json").stdout)
    assert {row["face_id"] for row in listed} == gated
    assert all(row["quality"] < 1.0 for row in listed)
    sides = {row["face_id"]: row["side"] for row in listed}
    assert sides[ids["tiny"]] == 20 and sides[ids["blurred"]] == 92
    jpeg = {row["face_id"]: row["jpeg_quality"] for row in listed}
    assert round(jpeg[ids["coarse"]]) == 5 and round(jpeg[ids["blurred"]]) == 75
    assert "JPEG quality 5," in cli("--db", db, "failures", "--low-quality").stdout

    files = {name: tmp_path / f"{name}.png" for name in ("sharp", "blurred")}
    files["sharp"].write_bytes(encode(sharp, "PNG"))
    files["blurred"].write_bytes(encode(blurred, "PNG"))
    files["coarse"] = tmp_path / "coarse.jpg"
    files["coarse"].write_bytes(coarse)
    args = ("--db", db, "--model-dir", tmp_path / "model", "predict", "--min-confidence", "0")
    rows = json.loads(cli(*args, files["sharp"], files["blurred"], "--json").stdout)
    assert rows[0]["gated"] is False and rows[0]["person_id"] is not None
    assert rows[0]["quality"] >= 1.0
    assert rows[1]["gated"] is True and rows[1]["person_id"] is None
    assert rows[1]["low_quality"] == "sharpness" and rows[1]["quality"] < 1.0
    assert rows[1]["top_k"]  # the best guesses stay
    assert "low quality (sharpness)" in cli(*args, files["blurred"]).stdout
    assert "low quality (compression)" in cli(*args, files["coarse"]).stdout
    off = json.loads(cli(*args, files["blurred"], "--json", "--min-quality", "0").stdout)
    assert off[0]["gated"] is False and off[0]["person_id"] is not None

    # a sharp crop put in place of the blurred one is judged again, and named
    sqlite_exec(db, "UPDATE face SET face_crop_blob = ? WHERE id = ?", encode(sharp), ids["tiny"])
    daemon.reconcile(scan=False)
    assert sqlite_rows(db, "SELECT quality FROM embedding WHERE face_id = ?", ids["tiny"]) == [
        (None,)
    ]
    assert ids["tiny"] in {f for (f,) in sqlite_rows(db, "SELECT face_id FROM face_suggestion")}


def test_a_crop_that_is_no_face_gets_no_name_and_no_group(
    tmp_path: Path, cli: Cli, fake_registered: None
) -> None:
    """Detector false positives (a wall, a sleeve): sharp, large, a JPEG like the rest,
    so only the face score (MTCNN's output network, the real one) tells them apart."""
    db = make_app_db(tmp_path / "app.db", people=0)
    for person in range(3):
        sqlite_exec(db, "INSERT INTO person VALUES (?, ?)", person, f"n{person}")
        for sample in range(5):
            sqlite_exec(
                db,
                "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
                "VALUES (1, ?, ?, 1)",
                encode(drawn_face(person, sample)),
                person,
            )
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    daemon = make_daemon(db, tmp_path, FakeClock(), min_confidence=0.0, cluster_distance=0.05)
    daemon.reconcile()
    rng = np.random.default_rng(0)
    wall = Image.fromarray(rng.integers(0, 256, (112, 92), dtype=np.uint8))
    ids = {
        "face": add(db, encode(drawn_face(1, 60))),
        "wall": add(db, encode(wall.filter(ImageFilter.GaussianBlur(1)))),
        "wall again": add(db, encode(wall.filter(ImageFilter.GaussianBlur(1)))),
    }
    daemon.reconcile(scan=False)
    suggested = {f for (f,) in sqlite_rows(db, "SELECT face_id FROM face_suggestion")}
    grouped = {f for (f,) in sqlite_rows(db, "SELECT face_id FROM face_cluster_member")}
    assert ids["face"] in suggested
    walls = {ids["wall"], ids["wall again"]}
    assert not walls & suggested and not walls & grouped  # the two would group otherwise
    verdicts = dict(
        sqlite_rows(db, "SELECT face_id, quality_reason FROM embedding WHERE quality IS NOT NULL")
    )
    assert verdicts == {ids["wall"]: "face score", ids["wall again"]: "face score"}
    listed = json.loads(cli("--db", db, "failures", "--low-quality", "--json").stdout)
    assert all(row["face_score"] < 0.1 for row in listed) and len(listed) == 2
    assert "low face score" in cli("--db", db, "failures", "--low-quality").stdout

    files = {"face": tmp_path / "face.jpg", "wall": tmp_path / "wall.jpg"}
    files["face"].write_bytes(encode(drawn_face(2, 61)))
    files["wall"].write_bytes(encode(wall))
    args = ("--db", db, "--model-dir", tmp_path / "model", "predict", "--min-confidence", "0")
    rows = json.loads(cli(*args, files["face"], files["wall"], "--json").stdout)
    assert rows[0]["gated"] is False and rows[0]["person_id"] is not None
    assert rows[1]["gated"] is True and rows[1]["low_quality"] == "face score"

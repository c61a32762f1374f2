"""facestore.quality: the signals of a crop and the gate calibrated on verified faces, and
the retrain that leaves low-quality verified faces out. Synthetic crops and vectors:
plumbing only; the floors and the training decision were chosen on real faces
(docs/accuracy.md)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facestore import db as database
from facestore.embedding import embed_pending
from facestore.faceness import face_scores, scored
from facestore.quality import (
    LOSSLESS,
    QualityGate,
    SignalArrays,
    calibrate_gate,
    compression_quality,
    image_signals,
)
from facestore.retrain import retrain
from facestore.store import Store
from tests.support.helpers import (
    FakeBackbone,
    drawn_face,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
)


def test_a_blurred_tiny_or_coarsely_compressed_crop_measures_so() -> None:
    face = face_image(3, 1).convert("RGB")
    sharp = image_signals(face, encode(face, "PNG"))
    assert sharp.side == 92  # the shorter side of 92 x 112
    assert sharp.jpeg_quality == LOSSLESS  # a PNG
    blurred = image_signals(face.filter(ImageFilter.GaussianBlur(4)), b"")
    assert blurred.side == 92 and blurred.sharpness < sharp.sharpness / 4
    tiny = image_signals(face.resize((16, 19)), b"")
    assert tiny.side == 16 and tiny.sharpness < sharp.sharpness
    # contrast does not make a crop sharper: the same crop, dimmer
    dim = image_signals(face.point(lambda v: v // 3), b"")
    assert dim.sharpness == pytest.approx(sharp.sharpness, rel=0.25)
    coarse = encode(face, quality=10)
    assert image_signals(Image.open(io.BytesIO(coarse)), coarse).jpeg_quality < 11


@pytest.mark.parametrize("quality", [1, 5, 10, 25, 50, 75, 90, 95, 100])
def test_the_jpeg_quality_is_read_from_the_quantisation_table(quality: int) -> None:
    face = face_image(1, 2).convert("RGB")
    assert compression_quality(encode(face, quality=quality)) == pytest.approx(quality, abs=1)
    grey = encode(face.convert("L"), quality=quality, progressive=True, exif=b"Exif\0\0" * 50)
    assert compression_quality(grey) == pytest.approx(quality, abs=1)


def test_lossless_crops_measure_lossless_and_unknown_bytes_measure_nothing() -> None:
    face = face_image(2, 3).convert("RGB")
    assert compression_quality(encode(face, "PNG")) == LOSSLESS
    assert compression_quality(encode(face)) == pytest.approx(75, abs=1)  # the tests' JPEGs
    lossless, lossy = io.BytesIO(), io.BytesIO()
    face.save(lossless, "WEBP", lossless=True)
    face.save(lossy, "WEBP", quality=30)
    assert compression_quality(lossless.getvalue()) == LOSSLESS
    whole = encode(face, quality=30)
    no_tables = whole[:2] + whole[whole.index(b"\xff\xda") :]  # SOI, then the scan
    for blob in (lossy.getvalue(), b"", b"\xff\xd8\xff", whole[:30], no_tables, b"GIF89a"):
        assert np.isnan(compression_quality(blob))


def verified(n: int = 60, seed: int = 0) -> SignalArrays:
    rng = np.random.default_rng(seed)
    return SignalArrays(
        rng.uniform(80, 200, n),
        rng.uniform(0.02, 0.06, n),
        rng.uniform(70, 95, n),
        rng.uniform(0.9, 1.0, n),
    )


def probes(*rows: tuple[float, float, float, float]) -> SignalArrays:
    return SignalArrays(*(np.array(column, dtype=np.float64) for column in zip(*rows, strict=True)))


def test_the_gate_puts_a_floor_under_each_signal_from_the_verified_faces() -> None:
    signals = verified()
    gate = calibrate_gate(signals)
    assert gate is not None and gate.faces == 60
    assert gate.side_floor == pytest.approx(0.3 * np.median(signals.sides))
    assert gate.sharpness_floor == pytest.approx(0.3 * np.median(signals.sharpness))
    assert gate.jpeg_quality_floor == pytest.approx(0.3 * np.median(signals.jpeg_quality))
    assert gate.face_score_floor == pytest.approx(0.3 * np.median(signals.face_score))
    good = gate.judge(signals, 60)
    assert (good.quality >= 1.0).all() and set(good.reasons) == {""}
    nan = np.nan
    judged = gate.judge(
        probes(
            (20.0, 0.04, 90.0, 0.99),
            (150.0, 0.001, 90.0, 0.99),
            (nan, nan, nan, nan),
            (150.0, 0.04, nan, nan),
            (150.0, 0.04, 10.0, 0.99),
            (150.0, 0.04, 90.0, 0.01),
        ),
        6,
    )
    assert judged.reasons == ["size", "sharpness", "", "", "compression", "face score"]
    assert judged.quality[0] == pytest.approx(20.0 / gate.side_floor)
    assert (judged.quality[[2, 3]] >= 1.0).all()  # not measured: not judged on it
    assert (judged.quality[[0, 1, 4, 5]] < 1.0).all()
    assert (gate.judge(None, 3).quality >= 1.0).all()  # no signals at all


def test_the_gate_needs_enough_faces_and_survives_a_round_trip() -> None:
    assert calibrate_gate(verified(9)) is None
    signals = verified()
    unmeasured = SignalArrays(
        signals.sides * np.nan, signals.sharpness * np.nan, signals.sides, signals.sides * np.nan
    )
    gate = calibrate_gate(unmeasured)
    assert gate is not None and gate.side_floor == 0.0 and gate.sharpness_floor == 0.0
    assert gate.face_score_floor == 0.0
    # a floor of 0 gates nothing, not even a score of 0 (a face score underflows to 0.0)
    assert gate.judge(probes((150.0, 0.04, 90.0, 0.0)), 1).reasons == [""]
    again = QualityGate.from_bytes(gate.to_bytes())
    assert again.describe() == gate.describe() and again.jpeg_quality_floor > 0
    with pytest.raises(ValueError, match="unknown quality gate"):
        QualityGate.from_bytes(b'{"kind": "other"}')


def test_a_gate_published_before_is_read_without_typicality_or_a_jpeg_floor() -> None:
    """A v1 gate (before the JPEG signal) floored typicality, which gated whole people
    who look unlike those named (docs/accuracy.md): read now, that floor is ignored."""
    v1 = {
        "kind": "quality-floors/v1",
        "side_floor_px": 30.0,
        "sharpness_floor": 0.01,
        "typicality_floor": 0.99,  # every face below it, were it still read
        "direction": [1.0, 0.0],
        "faces": 50,
    }
    older = QualityGate.from_bytes(json.dumps(v1).encode())
    assert (older.side_floor, older.jpeg_quality_floor, older.faces) == (30.0, 0.0, 50)
    assert older.face_score_floor == 0.0
    judged = older.judge(probes((150.0, 0.04, 1.0, 0.0), (10.0, 0.04, 90.0, 0.9)), 2)
    assert judged.quality[0] >= 1.0 and judged.reasons == ["", "size"]


def test_blurred_faces_the_user_verified_do_not_lower_the_floor() -> None:
    signals = verified(90)
    clean = calibrate_gate(signals)
    blurred = signals.sharpness.copy()
    blurred[::3] = 0.001  # a third of the verified faces blurred
    with_blurred = SignalArrays(signals.sides, blurred, signals.jpeg_quality, signals.face_score)
    gate = calibrate_gate(with_blurred)
    assert clean is not None and gate is not None
    assert gate.sharpness_floor > 0.5 * clean.sharpness_floor
    third = np.arange(0, 90, 3)
    thirds = SignalArrays(
        signals.sides[third], blurred[third], signals.jpeg_quality[third], signals.face_score[third]
    )
    assert (gate.judge(thirds, 30).quality < 1.0).all()


def test_blurred_verified_faces_do_not_train_but_stay_in_the_training_set(
    tmp_path: Path,
) -> None:
    """The quality gate's floors come from the verified faces' median, so a few blurred
    ones do not lower them; those are left out of the fit, and still listed as the pairs
    the model saw (the daemon's retrain policy would retrain forever otherwise)."""
    db = make_app_db(tmp_path / "app.db", people=3, per_person=6)
    blurred = encode(face_image(0, 40).convert("RGB").filter(ImageFilter.GaussianBlur(5)))
    sqlite_exec(
        db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 0, 1)",
        blurred,
    )
    engine = database.create_engine(f"sqlite:///{db}")
    database.upgrade(engine)
    store = Store(engine)
    embed_pending(store, FakeBackbone())
    report = retrain(store, tmp_path / "model")
    assert report.low_quality_left_out == 1
    assert report.n_train + report.n_val == 18
    trained = json.loads((tmp_path / "model" / "training_set.json").read_text())
    assert len(trained) == 19


def test_the_face_score_tells_a_face_from_a_wall_or_half_a_face() -> None:
    """The real network (its weights ship with facenet-pytorch). A drawing stands in for
    a face here; on ORL's real faces: docs/accuracy.md."""
    face = drawn_face(1, 3).convert("RGB")
    width, height = face.size
    wall = Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 92, 3), np.uint8))
    crops = [
        face,
        face.resize((23, 28)),  # small, but a face
        wall,
        face.crop((0, 0, width, height // 2)),  # the top half
    ]
    signals = scored([image_signals(crop, encode(crop)) for crop in crops] + [None])
    scores = [s.face_score for s in signals if s is not None]
    assert scores[0] > 0.8 and scores[1] > 0.5
    assert max(scores[2:]) < 0.2
    assert all(s is None or s.thumbnail is None for s in signals)  # let go of once scored
    assert signals[-1] is None and len(face_scores([])) == 0


def test_the_face_score_gets_no_floor_where_the_verified_crops_are_no_faces_to_it() -> None:
    """Crops the detector does not take for faces (framed oddly, or test patterns): a
    floor under their face score would gate at random."""
    signals = verified()
    patterns = SignalArrays(
        signals.sides, signals.sharpness, signals.jpeg_quality, signals.face_score * 1e-3
    )
    gate = calibrate_gate(patterns)
    assert gate is not None and gate.face_score_floor == 0.0 and gate.sharpness_floor > 0

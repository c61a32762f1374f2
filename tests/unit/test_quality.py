"""facestore.quality: the signals of a crop and the gate calibrated on verified faces, and
the retrain that leaves low-quality verified faces out. Synthetic crops and vectors:
plumbing only; the floors and the training decision were chosen on real faces
(docs/accuracy.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import ImageFilter

from facestore import db as database
from facestore.embedding import embed_pending
from facestore.quality import QualityGate, calibrate_gate, image_signals
from facestore.retrain import retrain
from facestore.store import Store
from tests.support.helpers import FakeBackbone, encode, face_image, make_app_db, sqlite_exec


def test_a_blurred_or_tiny_crop_measures_less_sharp_and_smaller() -> None:
    face = face_image(3, 1).convert("RGB")
    sharp = image_signals(face)
    assert sharp.side == 92  # the shorter side of 92 x 112
    blurred = image_signals(face.filter(ImageFilter.GaussianBlur(4)))
    assert blurred.side == 92 and blurred.sharpness < sharp.sharpness / 4
    tiny = image_signals(face.resize((16, 19)))
    assert tiny.side == 16 and tiny.sharpness < sharp.sharpness
    # contrast does not make a crop sharper: the same crop, dimmer
    dim = image_signals(face.point(lambda v: v // 3))
    assert dim.sharpness == pytest.approx(sharp.sharpness, rel=0.25)


def verified(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    typical = rng.normal(size=32)
    vectors = typical + 0.5 * rng.normal(size=(n, 32))
    return vectors, rng.uniform(80, 200, n), rng.uniform(0.02, 0.06, n)


def test_the_gate_puts_a_floor_under_each_signal_from_the_verified_faces() -> None:
    vectors, sides, sharpness = verified()
    gate = calibrate_gate(vectors, sides, sharpness)
    assert gate is not None and gate.faces == 60
    assert gate.side_floor == pytest.approx(0.3 * np.median(sides))
    assert gate.sharpness_floor == pytest.approx(0.3 * np.median(sharpness))
    good = gate.judge(vectors, sides, sharpness)
    assert (good.quality >= 1.0).all() and set(good.reasons) == {""}
    probe = np.repeat(vectors[:1], 4, axis=0)
    probe[3] = -probe[3]  # a vector unlike any face's
    judged = gate.judge(
        probe,
        np.array([20.0, 150.0, np.nan, 150.0]),
        np.array([0.04, 0.001, np.nan, 0.04]),
    )
    assert judged.reasons == ["size", "sharpness", "", "typicality"]
    assert judged.quality[0] == pytest.approx(20.0 / gate.side_floor)
    assert judged.quality[2] >= 1.0  # not measured (embedded before): judged on its vector
    assert (judged.quality[[0, 1, 3]] < 1.0).all()


def test_the_gate_needs_enough_faces_and_survives_a_round_trip() -> None:
    vectors, sides, sharpness = verified(9)
    assert calibrate_gate(vectors, sides, sharpness) is None
    vectors, sides, sharpness = verified()
    gate = calibrate_gate(vectors, None, sharpness * np.nan)
    assert gate is not None and gate.side_floor == 0.0 and gate.sharpness_floor == 0.0
    again = QualityGate.from_bytes(gate.to_bytes())
    assert again.describe() == gate.describe()
    assert np.allclose(again.direction, gate.direction, atol=1e-6)
    with pytest.raises(ValueError, match="unknown quality gate"):
        QualityGate.from_bytes(b'{"kind": "other"}')


def test_a_large_library_is_calibrated_on_a_seeded_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    from facestore import quality

    monkeypatch.setattr(quality, "MAX_FACES", 50)
    vectors, sides, sharpness = verified(500)
    gate = calibrate_gate(vectors, sides, sharpness)
    assert gate is not None and gate.faces == 500
    assert gate.describe() == calibrate_gate(vectors, sides, sharpness).describe()  # seeded


def test_blurred_faces_the_user_verified_do_not_lower_the_floor() -> None:
    vectors, sides, sharpness = verified(90)
    clean = calibrate_gate(vectors, sides, sharpness)
    blurred = sharpness.copy()
    blurred[::3] = 0.001  # a third of the verified faces blurred
    gate = calibrate_gate(vectors, sides, blurred)
    assert clean is not None and gate is not None
    assert gate.sharpness_floor > 0.5 * clean.sharpness_floor
    assert (gate.judge(vectors[::3], sides[::3], blurred[::3]).quality < 1.0).all()


def test_a_backbone_whose_faces_all_look_alike_gates_none_of_them() -> None:
    vectors = np.ones((20, 8), dtype=np.float32) + 1e-7 * np.arange(160).reshape(20, 8)
    gate = calibrate_gate(vectors)
    assert gate is not None and (gate.judge(vectors).quality >= 1.0).all()


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

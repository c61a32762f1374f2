"""The built-in `dlib` backbone: dlib's pretrained ResNet, run for real on generated crops."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from facestore.backbones import build_backbone, dlib_resnet, space_of
from facestore.config import BackboneSettings
from facestore.errors import BackboneError
from tests.support.helpers import encode
from tests.support.types import Cli

SKINS = ((224, 172, 140), (120, 80, 60), (250, 220, 200))
BACKGROUNDS = ((30, 60, 160), (200, 200, 60), (40, 140, 40))
FACE_WIDTHS, EYE_GAPS, EYE_SIZES, MOUTHS = (60, 90, 72), (12, 20, 16), (4, 7, 5), (10, 18, 14)


def drawn_face(person: int, sample: int) -> Image.Image:
    """A colour crop with a face-like drawing: per-person look, per-sample jitter.

    dlib's model tells these three apart (mean distance between unit vectors 0.12
    within a person, 0.36 across), which is all the plumbing tests need.
    """
    rng = np.random.default_rng(person * 1000 + sample)

    def jitter() -> int:
        return int(rng.integers(-2, 3))

    image = Image.new("RGB", (120, 140), BACKGROUNDS[person])
    draw = ImageDraw.Draw(image)
    width = FACE_WIDTHS[person] + jitter()
    draw.ellipse((60 - width // 2, 15 + jitter(), 60 + width // 2, 128), fill=SKINS[person])
    size = EYE_SIZES[person]
    for x in (60 - EYE_GAPS[person], 60 + EYE_GAPS[person]):
        draw.ellipse((x - size + jitter(), 58, x + size, 58 + size + jitter()), fill=(40, 30, 30))
    draw.line((60, 66, 60, 88 + 2 * person), fill=(150, 100, 90), width=3)
    mouth = MOUTHS[person]
    draw.line((60 - mouth, 104 + jitter(), 60 + mouth, 104), fill=(120, 40, 40), width=4)
    if person % 2:
        draw.rectangle((60 - width // 2, 15, 60 + width // 2, 35), fill=(30, 20, 10))
    return image


@pytest.fixture(scope="module")
def backbone() -> dlib_resnet.DlibBackbone:
    return dlib_resnet.DlibBackbone()


def test_embeds_128_d_vectors_that_are_not_unit_length(backbone) -> None:  # type: ignore[no-untyped-def]
    images = [drawn_face(p, s) for p in range(3) for s in range(2)]
    vectors = backbone.embed_images(images)
    assert vectors.shape == (6, 128) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    norms = np.linalg.norm(vectors, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)  # nothing may assume unit length
    assert np.array_equal(vectors, backbone.embed_images(images))  # deterministic (no jitter)
    assert not np.allclose(vectors[0], vectors[4])


def test_prepare_cuts_an_aligned_150_px_chip_from_any_crop(backbone) -> None:  # type: ignore[no-untyped-def]
    for image in (drawn_face(1, 0), drawn_face(1, 0).convert("L"), Image.new("RGB", (20, 30))):
        chip = backbone.prepare(image)
        assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    chips = np.stack([backbone.prepare(drawn_face(2, s)) for s in range(2)])
    direct = backbone.embed_images([drawn_face(2, s) for s in range(2)])
    assert np.array_equal(backbone.embed_prepared(chips), direct)


def test_the_space_records_both_model_files_and_the_preprocessing(backbone) -> None:  # type: ignore[no-untyped-def]
    folder = dlib_resnet.model_files_dir()
    config = dict(backbone.config)
    for key, name in (
        ("resnet_sha256", dlib_resnet.RESNET_FILE),
        ("landmarks_sha256", dlib_resnet.LANDMARKS_FILE),
    ):
        assert config[key] == hashlib.sha256((folder / name).read_bytes()).hexdigest()
    assert (config["chip_size"], config["chip_padding"], config["jitters"]) == (150, 0.25, 0)
    built = build_backbone(BackboneSettings(name="dlib"))
    assert space_of(built) == space_of(backbone) and space_of(built).backbone == "dlib"


def test_model_files_are_found_without_importing_pkg_resources() -> None:
    code = (
        "import sys; sys.modules['pkg_resources'] = None\n"
        "from facestore.backbones.dlib_resnet import DlibBackbone\n"
        "b = DlibBackbone(); print(b.embed_images([]).shape)\n"
        "assert 'face_recognition_models' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(0, 128)"


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dlib_resnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackboneError, match=r"pip install 'facestore\[dlib\]'"):
        dlib_resnet.model_files_dir()


@pytest.mark.slow
def test_import_train_predict_with_dlib_end_to_end(cli: Cli, tmp_path: Path) -> None:
    people = tmp_path / "people"
    for person in range(3):
        (people / f"person{person}").mkdir(parents=True)
        for sample in range(5):
            drawn_face(person, sample).save(people / f"person{person}" / f"{sample}.png")
    db = tmp_path / "photos.db"
    assert cli("--db", db, "import", people).exit_code == 0
    trained = cli("--db", db, "train", "--upgrade", "--backbone", "dlib", "--json")
    assert trained.exit_code == 0, trained.output
    summary = json.loads(trained.stdout)
    assert summary["embed"]["embedded"] == 15 and summary["classes_kept"] == 3
    assert summary["open_set"]["kind"] == "centroid-distance/v1"
    config = json.loads((tmp_path / "model" / "embedding_config.json").read_text())
    assert config["backbone"] == "dlib"
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(encode(drawn_face(1, 9)))
    result = cli("--db", db, "predict", crop, "--json")  # the backbone comes from the model
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert row["top_k"][0]["person_id"] == "person1"
    assert 0 <= row["confidence"] <= 1

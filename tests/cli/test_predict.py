"""`facestore predict`: files, face ids, unknown, integrity, another space."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import retrain_json
from tests.support.helpers import (
    encode,
    face_image,
    make_app_db,
)
from tests.support.types import Cli


def test_predict_files_and_face_ids(cli: Cli, embedded_db: Path, tmp_path: Path) -> None:
    retrain_json(cli, embedded_db)
    crop = tmp_path / "crop.png"
    crop.write_bytes(encode(face_image(1, 3), "PNG"))
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"nope")
    result = cli(
        "--db",
        embedded_db,
        "predict",
        crop,
        junk,
        "--face-id",
        "7",
        "--json",
        "--top-k",
        "2",
        "--min-confidence",
        "0",
    )
    assert result.exit_code == 1  # one input is not an image
    rows = json.loads(result.stdout)
    assert [r["input"] for r in rows] == ["face:7", str(crop), str(junk)]
    assert rows[1]["person_id"] == "p01"
    assert 0 <= rows[1]["confidence"] <= 1 and len(rows[1]["top_k"]) == 2
    assert rows[0]["person_id"] == "p01"  # face 7 is person 1's second face
    # any format Pillow reads is accepted from a file, so the error does not list three
    # (issue 37); a crop stored in the database is still "not a JPEG, PNG or WebP image"
    assert rows[2]["person_id"] is None and rows[2]["error"] == "not an image Pillow can read"


def test_predict_unknown_below_min_confidence(cli: Cli, embedded_db: Path, tmp_path: Path) -> None:
    retrain_json(cli, embedded_db)
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(encode(face_image(1, 3)))
    [row] = json.loads(cli("predict", crop, "--json", "--min-confidence", "1").stdout)
    assert row["person_id"] is None and row["top_k"][0]["person_id"] == "p01"


def test_predict_after_a_flipped_byte_exits_with_an_integrity_message(
    cli: Cli, embedded_db: Path, tmp_path: Path
) -> None:
    retrain_json(cli, embedded_db)
    pkl = Path("model/classifier.pkl")
    data = bytearray(pkl.read_bytes())
    data[100] ^= 0x01
    pkl.write_bytes(bytes(data))
    crop = tmp_path / "crop.png"
    crop.write_bytes(encode(face_image(1, 3), "PNG"))
    result = cli("predict", crop)
    assert result.exit_code == 1
    assert "Integrity check failed" in result.output and "Traceback" not in result.output


def test_predict_without_a_model(cli: Cli, tmp_path: Path) -> None:
    crop = tmp_path / "crop.png"
    crop.write_bytes(encode(face_image(1, 3), "PNG"))
    result = cli("predict", crop)
    assert result.exit_code == 1 and "No published model in model" in result.output


@pytest.mark.slow
def test_predict_refuses_a_model_of_another_space(
    cli: Cli, tmp_path: Path, weights_file: Path
) -> None:
    import torch

    db = make_app_db(tmp_path / "app.db", people=2, per_person=3)
    env = {"FACESTORE_WEIGHTS": str(weights_file)}
    assert cli("--db", db, "train", "--upgrade", env=env).exit_code == 0
    other = tmp_path / "other.pt"
    state = torch.load(weights_file, weights_only=True)
    state["last_bn.bias"] += 1
    torch.save(state, other)
    crop = tmp_path / "q.png"
    crop.write_bytes(encode(face_image(0, 9), "PNG"))
    result = cli("predict", crop, "--weights", other)
    assert result.exit_code == 2  # a space mismatch is a setup error, as the README says
    config = json.loads(Path("model/embedding_config.json").read_text())
    assert f"trained in embedding space {config['config_hash']}" in result.output
    assert "facestore reembed" in result.output


def test_predict_text_says_what_its_numbers_mean_and_gives_a_best_guess(
    cli: Cli, embedded_db: Path, tmp_path: Path
) -> None:
    retrain_json(cli, embedded_db)
    crop = tmp_path / "crop.jpg"
    crop.write_bytes(encode(face_image(1, 3)))
    named = cli("predict", crop, "--top-k", "2")
    header, line = named.stdout.splitlines()
    assert "confidence = estimated chance the name is right" in header
    assert "distance = to the person's faces, named within" in header
    assert line.startswith(f"{crop}: p01 (confidence ") and ", distance " in line
    assert line.count("(confidence") == 2  # --top-k 2: the name and the next guess
    unknown = cli("predict", crop, "--top-k", "1", "--min-confidence", "1").stdout.splitlines()[1]
    assert unknown.startswith(f"{crop}: unknown; best guess p01 (confidence ")
    assert ", distance " in unknown and unknown.count("(confidence") == 1


def test_predict_has_no_backbone_option_the_model_fixes_it(cli: Cli, tmp_path: Path) -> None:
    crop = tmp_path / "crop.png"
    crop.write_bytes(encode(face_image(1, 3), "PNG"))
    result = cli("predict", crop, "--backbone", "dlib")
    assert result.exit_code == 2 and "--backbone does nothing here" in result.output
    assert "see 'facestore model list'" in result.output  # the command that lists models
    assert "--backbone TEXT" not in cli("predict", "--help").stdout


def test_predict_text_lists_the_other_guesses_by_the_confidence_it_shows() -> None:
    from facestore.cli.predict import text_line
    from facestore.predict import Prediction

    guesses = [
        {"person_id": "s5", "confidence": 0.638, "distance": 0.21},
        {"person_id": "s21", "confidence": 0.136, "distance": 0.3404},
        {"person_id": "s18", "confidence": 0.170, "distance": 0.3346},
    ]
    named = text_line(Prediction("a.jpg", "s5", 0.638, guesses))
    assert named.index("s18 (") < named.index("s21 (")  # issue 37: they looked unsorted
    assert named.startswith("a.jpg: s5 (confidence 0.638")
    unknown = text_line(Prediction("b.jpg", None, 0.0, list(reversed(guesses))))
    assert unknown.index("s5 (") < unknown.index("s18 (") < unknown.index("s21 (")

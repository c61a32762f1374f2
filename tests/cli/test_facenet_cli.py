"""The real facenet path end to end through the CLI, with random weights in the official format."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facestore.backbones import build_backbone, space_of
from facestore.config import BackboneSettings
from facestore.errors import WeightsError
from tests.support.helpers import encode, face_image, make_app_db, sqlite_exec, sqlite_rows
from tests.support.types import Cli


@pytest.fixture
def facenet_db(tmp_path: Path, cli: Cli) -> Path:
    path = make_app_db(
        tmp_path / "app.db",
        people=2,
        per_person=4,
        unverified=2,
        corrupt=["empty", "random", "truncated-jpeg", "bomb", "text"],
    )
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    return path


def embed_json(cli: Cli, path: Path, weights: Path) -> dict:
    result = cli("--db", path, "embed", "--json", env={"FACESTORE_WEIGHTS": str(weights)})
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.slow
def test_embed_is_incremental_and_honest(cli: Cli, facenet_db: Path, weights_file: Path) -> None:
    first = embed_json(cli, facenet_db, weights_file)
    assert (first["embedded"], first["failed"], first["pending"]) == (8, 5, 0)
    assert first["seconds"] > 0
    assert embed_json(cli, facenet_db, weights_file)["embedded"] == 0

    sqlite_exec(
        facenet_db,
        "UPDATE face SET face_crop_blob = ? WHERE id = 2",
        encode(face_image(1, 77), "PNG"),
    )
    again = embed_json(cli, facenet_db, weights_file)
    assert (again["embedded"], again["failed"]) == (1, 0)

    sqlite_exec(facenet_db, "DELETE FROM face WHERE id = 3", foreign_keys=False)
    assert sqlite_rows(facenet_db, "SELECT count(*) FROM embedding WHERE face_id = 3") == [(0,)]

    vectors = sqlite_rows(facenet_db, "SELECT vector, space_hash FROM embedding")
    matrix = np.stack([np.frombuffer(v, dtype="<f4") for v, _ in vectors])
    assert matrix.shape == (7, 512)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-4)
    status = json.loads(cli("--db", facenet_db, "status", "--json").stdout)
    assert status["active_space"]["backbone"] == "vggface2"
    assert {h for _, h in vectors} == {status["active_space"]["config_hash"]}
    assert (status["embedded"], status["failed"], status["pending"]) == (7, 5, 0)


@pytest.mark.slow
def test_vectors_match_facenet_run_directly(facenet_db: Path, weights_file: Path, cli: Cli) -> None:
    """The stored vector is InceptionResnetV1's output for the documented preprocessing."""
    from facenet_pytorch import InceptionResnetV1

    embed_json(cli, facenet_db, weights_file)
    [(blob, vector)] = sqlite_rows(
        facenet_db,
        "SELECT face.face_crop_blob, embedding.vector FROM face JOIN embedding "
        "ON embedding.face_id = face.id WHERE face.id = 1",
    )
    model = InceptionResnetV1(classify=True, num_classes=8631)
    model.load_state_dict(torch.load(weights_file, weights_only=True))
    model.classify = False
    model.eval()

    image = Image.open(io.BytesIO(blob)).convert("RGB")  # 92x112 -> 131x160, padded
    scaled = image.resize((131, 160), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (160, 160))
    canvas.paste(scaled, (14, 0))
    x = (np.asarray(canvas, dtype=np.float32) - 127.5) / 128.0
    with torch.inference_mode():
        expected = model(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))[0].numpy()
    assert np.allclose(np.frombuffer(vector, dtype="<f4"), expected, atol=1e-4)


def test_no_weights_anywhere_is_a_clear_error(cli: Cli, facenet_db: Path) -> None:
    result = cli("--db", facenet_db, "embed")
    assert result.exit_code == 2
    assert "20180402-114759-vggface2.pt" in result.output
    assert "FACESTORE_WEIGHTS" in result.output
    assert "torch-home/checkpoints/20180402-114759-vggface2.pt" in result.output
    assert "Traceback" not in result.output
    assert sqlite_rows(facenet_db, "SELECT count(*) FROM embedding") == [(0,)]


def test_missing_weights_path_is_named(cli: Cli, facenet_db: Path, tmp_path: Path) -> None:
    result = cli("--db", facenet_db, "embed", "--weights", tmp_path / "nope.pt")
    assert result.exit_code == 2
    expected = f"Weights file {tmp_path / 'nope.pt'} (from --weights / FACESTORE_WEIGHTS)"
    assert f"{expected} does not exist" in result.output


def test_weights_from_the_hub_cache(weights_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "torch-home" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "20180402-114759-vggface2.pt").symlink_to(weights_file)
    backbone = build_backbone(BackboneSettings(device="cpu"))
    assert backbone.config["weights_sha256"] == space_of(backbone).config["weights_sha256"]
    vectors = backbone.embed_images([face_image(0, 0).convert("RGB")])
    assert vectors.shape == (1, 512) and vectors.dtype == np.float32


def test_weights_of_the_other_variant_are_refused(tmp_path: Path) -> None:
    from facenet_pytorch import InceptionResnetV1

    path = tmp_path / "casia.pt"
    torch.save(InceptionResnetV1(classify=True, num_classes=10575).state_dict(), path)
    with pytest.raises(WeightsError) as raised:
        build_backbone(BackboneSettings(weights=path, device="cpu"))
    assert "pass BackboneSettings(name='casia-webface')" in str(raised.value)  # Python
    assert "pass --backbone casia-webface" in raised.value.for_command_line
    casia = build_backbone(BackboneSettings(name="casia-webface", weights=path, device="cpu"))
    assert casia.name == "casia-webface"


def test_a_non_checkpoint_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="is not a readable PyTorch state_dict"):
        build_backbone(BackboneSettings(weights=path, device="cpu"))


def test_unknown_backbone_lists_the_choices(cli: Cli, facenet_db: Path) -> None:
    result = cli("--db", facenet_db, "embed", "--backbone", "nope")
    assert result.exit_code == 2
    assert "Unknown backbone 'nope'. Choose one of: casia-webface, dlib, vggface2" in result.output


def test_space_hash_changes_with_the_weights(weights_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    state = torch.load(weights_file, weights_only=True)
    state["last_bn.bias"] = state["last_bn.bias"] + 1
    torch.save(state, other)
    a = space_of(build_backbone(BackboneSettings(weights=weights_file, device="cpu")))
    b = space_of(build_backbone(BackboneSettings(weights=other, device="cpu")))
    assert a.backbone == b.backbone and a.config_hash != b.config_hash


def test_upgrade_installs_exactly_our_triggers_beside_the_apps(facenet_db: Path) -> None:
    con = sqlite3.connect(facenet_db)
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
    con.close()
    assert {
        "photo_touch",
        "facestore_face_delete",
        "facestore_face_insert",
        "facestore_face_update_crop",
        "facestore_face_verified",
        "facestore_face_log_insert",
        "facestore_face_log_delete",
        "facestore_face_log_update",
    } == names


def test_without_weights_the_error_offers_the_offline_dlib_backbone(
    cli: Cli, facenet_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facestore.backbones import weights

    def offline(url: str, target: Path) -> Path:
        raise OSError("no network")

    monkeypatch.setattr(weights, "_download", offline)
    monkeypatch.delenv("FACESTORE_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    result = cli("--db", facenet_db, "train", "--upgrade")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "20180402-114759-vggface2.pt" in result.output
    assert "--backbone dlib" in result.output
    with pytest.raises(WeightsError) as raised:  # from Python: parameters, not flags
        build_backbone(BackboneSettings())
    assert "BackboneSettings(name='dlib')" in str(raised.value)
    assert "--backbone" not in str(raised.value) and "--weights" not in str(raised.value)

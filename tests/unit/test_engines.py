"""The CPU engines (facestore.backbones.engines): the same vectors as torch, the same
space, the export cache, and the choice `auto` makes. The real facenet code path,
random weights in the official format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from facestore.backbones import build_backbone, space_of
from facestore.backbones.engines import choose_engine, graph_path, installed
from facestore.config import BackboneSettings
from facestore.errors import ConfigurationError
from tests.support.helpers import encode, face_image, make_app_db, sqlite_exec
from tests.support.types import Cli

CPU_ENGINES = [e for e in ("onnxruntime", "openvino") if installed(e)]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("torch-home")  # one export for the module's tests


@pytest.fixture(autouse=True)
def torch_home(shared_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(shared_cache))


def faces() -> list:
    return [face_image(person, sample).convert("RGB") for person in range(5) for sample in (0, 7)]


def backbone(weights: Path, engine: str) -> object:
    return build_backbone(BackboneSettings(weights=weights, device="cpu", engine=engine))


@pytest.mark.parametrize("engine", CPU_ENGINES)
def test_an_engine_gives_torchs_vectors_in_torchs_space(weights_file: Path, engine: str) -> None:
    torch_model = backbone(weights_file, "torch")
    other = backbone(weights_file, engine)
    assert other.engine == engine and other.model is None  # type: ignore[attr-defined]
    expected = torch_model.embed_images(faces())  # type: ignore[attr-defined]
    got = other.embed_images(faces())  # type: ignore[attr-defined]
    assert got.shape == expected.shape and got.dtype == np.float32
    cosines = (
        (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    )
    assert cosines.min() >= 0.99999, cosines.min()
    assert space_of(other).config_hash == space_of(torch_model).config_hash  # no reembed
    assert other.device_info["engine"] == engine  # type: ignore[attr-defined]
    assert len(other.embed_prepared(np.zeros((0, 3, 160, 160), np.float32))) == 0  # type: ignore[attr-defined]


@pytest.mark.skipif("onnxruntime" not in CPU_ENGINES, reason="the [onnx] extra is not installed")
def test_a_damaged_or_stale_cached_graph_is_exported_again(
    weights_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = backbone(weights_file, "onnxruntime")
    path = graph_path("vggface2", first.config["weights_sha256"])  # type: ignore[attr-defined]
    sidecar = path.with_suffix(".json")
    assert (
        path.is_file()
        and json.loads(sidecar.read_text())["weights_sha256"]
        == (
            first.config["weights_sha256"]  # type: ignore[attr-defined]
        )
    )
    assert path.stat().st_mode & 0o777 == 0o644  # readable by a service's own user too
    expected = first.embed_images(faces())  # type: ignore[attr-defined]
    for damage in (
        lambda: path.write_bytes(path.read_bytes()[:1000]),  # a torn file
        lambda: sidecar.write_text("{}"),  # another exporter's, or none
        lambda: path.unlink(),  # the graph gone, its sidecar left
    ):
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="facestore"):
            again = backbone(weights_file, "onnxruntime")
        assert "exporting it again" in caplog.text
        np.testing.assert_allclose(again.embed_images(faces()), expected, atol=1e-6)  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="facestore"):
        backbone(weights_file, "onnxruntime")
    assert "Exporting" not in caplog.text  # whole again: loaded, not exported


def test_auto_picks_a_cpu_engine_only_where_it_can_run() -> None:
    best = CPU_ENGINES[0] if CPU_ENGINES else "torch"
    assert choose_engine("auto", "cpu", "float32", False) == best
    assert choose_engine("auto", "cuda", "float32", False) == "torch"
    assert choose_engine("auto", "cpu", "bfloat16", False) == "torch"
    assert choose_engine("auto", "cpu", "float32", True) == "torch"
    assert choose_engine("torch", "cuda", "float16", True) == "torch"
    with pytest.raises(ConfigurationError, match="runs on the CPU"):
        choose_engine("onnxruntime", "cuda", "float32", False)
    with pytest.raises(ConfigurationError, match="float32, uncompiled"):
        choose_engine("openvino", "cpu", "float16", False)
    with pytest.raises(ConfigurationError, match="Unknown engine 'tensorrt'"):
        choose_engine("tensorrt", "cpu", "float32", False)


def test_an_engine_that_is_not_installed_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from facestore.backbones import engines

    monkeypatch.setattr(engines, "installed", lambda engine: engine == "torch")
    with pytest.raises(ConfigurationError, match=r"pip install 'facestore\[onnx\]'"):
        choose_engine("onnxruntime", "cpu", "float32", False)
    assert choose_engine("auto", "cpu", "float32", False) == "torch"


@pytest.mark.skipif("onnxruntime" not in CPU_ENGINES, reason="the [onnx] extra is not installed")
def test_the_commands_run_on_the_engine_and_keep_the_space(
    cli: Cli, tmp_path: Path, weights_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """embed with torch, then train and predict with onnxruntime (auto): one space, no
    reembed, and the model records the engine that made its vectors."""
    db = make_app_db(tmp_path / "app.db", people=3, per_person=3)
    monkeypatch.setenv("FACESTORE_WEIGHTS", str(weights_file))
    assert cli("--db", db, "db", "upgrade").exit_code == 0
    assert cli("--db", db, "embed", "--engine", "torch").exit_code == 0
    sqlite_exec(
        db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
        encode(face_image(1, 40)),
    )
    monkeypatch.delenv("FACESTORE_ENGINE")  # auto: onnxruntime on this CPU
    trained = cli("-v", "--db", db, "train", "--json")
    assert trained.exit_code == 0, trained.output
    assert "(engine onnxruntime)" in trained.stderr
    assert json.loads(trained.stdout)["embed"]["embedded"] == 1  # the same space: one new face
    image = tmp_path / "face.png"
    image.write_bytes(encode(face_image(2, 1), "PNG"))
    for engine in ("torch", "onnxruntime"):
        result = cli("predict", image, "--json", "--engine", engine)
        assert result.exit_code == 0, result.output
    torch_row, onnx_row = (
        json.loads(cli("predict", image, "--json", "--engine", e).stdout)[0]
        for e in ("torch", "onnxruntime")
    )
    assert torch_row["person_id"] == onnx_row["person_id"]
    assert abs(torch_row["confidence"] - onnx_row["confidence"]) < 1e-3

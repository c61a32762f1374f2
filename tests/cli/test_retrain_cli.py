"""retrain, predict, model list / rollback and train, through the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from facestore import backbones
from facestore.config import BackboneSettings
from tests.support.helpers import (
    ISO_UTC,
    FakeBackbone,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
)
from tests.support.types import Cli

JSON_KEYS = {
    "classifier",
    "open_set",
    "validation_open_set",
    "version",
    "accuracy",
    "n_train",
    "n_val",
    "classes_kept",
    "classes_dropped",
    "samples_dropped",
    "seconds",
}


@pytest.fixture
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(settings: BackboneSettings) -> FakeBackbone:
        return FakeBackbone()

    monkeypatch.setitem(backbones._REGISTRY, "fake", factory)


@pytest.fixture
def embedded_db(tmp_path: Path, cli: Cli, fake_registered: None) -> Path:
    path = make_app_db(
        tmp_path / "app.db", people=4, per_person=6, text_ids=True, corrupt=["random"]
    )
    # one person with a single verified face: must be dropped
    sqlite_exec(
        path,
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)",
        encode(face_image(9, 0)),
        "solo",
    )
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--backbone", "fake").exit_code == 0
    return path


def retrain_json(cli: Cli, db: Path, *args: str) -> dict:
    result = cli("--db", db, "retrain", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_retrain_json_artifacts_and_determinism(
    cli: Cli, embedded_db: Path, tmp_path: Path
) -> None:
    first = retrain_json(cli, embedded_db)
    assert set(first) == JSON_KEYS
    assert first["classes_dropped"] == ["solo"] and first["samples_dropped"] == 1
    assert first["classes_kept"] == 4 and first["n_train"] + first["n_val"] == 24
    assert 0 <= first["accuracy"] <= 1
    model = tmp_path / "model"
    for name in (
        "classifier.pkl",
        "person_id_mapping.json",
        "embedding_config.json",
        "metrics.json",
        "version.txt",
        "manifest.json",
        "open_set.npz",
    ):
        assert (model / name).is_file(), name
    before = {
        n: sha(model / n)
        for n in (
            "classifier.pkl",
            "person_id_mapping.json",
            "embedding_config.json",
            "open_set.npz",
        )
    }
    second = retrain_json(cli, embedded_db)
    assert second["version"] != first["version"]
    assert {n: sha(model / n) for n in before} == before
    config = json.loads((model / "embedding_config.json").read_text())
    status = json.loads(cli("--db", embedded_db, "status", "--json").stdout)
    assert config["config_hash"] == status["active_space"]["config_hash"]
    assert status["model"] == {"version": second["version"], "accuracy": second["accuracy"]}
    assert json.loads((model / "person_id_mapping.json").read_text()) == [
        "p00",
        "p01",
        "p02",
        "p03",
    ]


def test_dropped_class_is_named_in_the_warning(cli: Cli, embedded_db: Path) -> None:
    result = cli("--db", embedded_db, "retrain")
    assert result.exit_code == 0
    assert "Dropping 1 class(es) with fewer than 2 samples: solo" in result.output
    assert "dropped: solo (1 faces)" in result.stdout


@pytest.mark.parametrize("classifier", ["logreg", "knn"])
def test_fast_classifiers(cli: Cli, embedded_db: Path, classifier: str) -> None:
    report = retrain_json(cli, embedded_db, "--classifier", classifier, "--val-fraction", "0.5")
    assert report["n_val"] == 12
    metrics = json.loads(Path("model/metrics.json").read_text())
    assert metrics["classifier"] == classifier


def test_refusal_leaves_the_published_model_untouched(cli: Cli, embedded_db: Path) -> None:
    version = retrain_json(cli, embedded_db)["version"]
    sqlite_exec(embedded_db, "UPDATE face SET verified = 0 WHERE person_id != 'p00'")
    result = cli("--db", embedded_db, "retrain")
    assert result.exit_code == 1
    assert "Need at least 2 people" in result.output and "Traceback" not in result.output
    assert Path("model/version.txt").read_text().startswith(version)


def test_retrain_without_vectors_is_refused(cli: Cli, app_db: Path) -> None:
    cli("--db", app_db, "db", "upgrade")
    result = cli("--db", app_db, "retrain")
    assert result.exit_code == 1
    assert "No embedding space is active yet" in result.output
    assert not Path("model").exists()


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
    assert rows[2]["person_id"] is None and "not a JPEG, PNG or WebP" in rows[2]["error"]


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


def test_model_list_and_rollback_show_in_status(cli: Cli, embedded_db: Path) -> None:
    first = retrain_json(cli, embedded_db)["version"]
    second = retrain_json(cli, embedded_db, "--classifier", "logreg")["version"]
    listed = json.loads(cli("model", "list", "--json").stdout)
    assert [r["version"] for r in listed] == [second, first]
    assert all(ISO_UTC.fullmatch(r["created_at"]) for r in listed)
    assert [r["current"] for r in listed] == [True, False]
    assert listed[0]["classifier"] == "logreg"
    assert cli("model", "rollback").stdout.strip() == f"current model is now {first}"
    status = json.loads(cli("--db", embedded_db, "status", "--json").stdout)
    assert status["model"]["version"] == first
    assert cli("model", "rollback", second).exit_code == 0
    assert (
        json.loads(cli("--db", embedded_db, "status", "--json").stdout)["model"]["version"]
        == second
    )


def people_folder(root: Path) -> Path:
    for p in range(3):
        (root / f"person{p}").mkdir(parents=True)
        for s in range(4):
            (root / f"person{p}" / f"{s}.jpg").write_bytes(encode(face_image(p, s)))
    return root


@pytest.mark.slow
def test_import_then_train_upgrade_on_a_fresh_database(
    cli: Cli, tmp_path: Path, weights_file: Path, empty_database: str
) -> None:
    people = people_folder(tmp_path / "people")
    db = empty_database
    assert cli("--db", db, "import", people).exit_code == 0
    refused = cli("--db", db, "train", env={"FACESTORE_WEIGHTS": str(weights_file)})
    assert refused.exit_code == 2 and "Or pass --upgrade" in refused.output
    result = cli("--db", db, "train", "--upgrade", env={"FACESTORE_WEIGHTS": str(weights_file)})
    assert result.exit_code == 0, result.output
    assert "embedded 12 new faces" in result.stdout
    assert "classes kept: 3; dropped: none" in result.stdout
    crop = tmp_path / "query.png"
    crop.write_bytes(encode(face_image(2, 9), "PNG"))
    predicted = cli("predict", crop, "--json", env={"FACESTORE_WEIGHTS": str(weights_file)})
    assert predicted.exit_code == 0, predicted.output
    [row] = json.loads(predicted.stdout)
    assert 0 <= row["confidence"] <= 1
    assert row["top_k"][0]["person_id"] in {"person0", "person1", "person2"}


@pytest.mark.slow
def test_every_command_step_by_step(
    cli: Cli, tmp_path: Path, weights_file: Path, empty_database: str
) -> None:
    env = {"FACESTORE_DB": empty_database, "FACESTORE_WEIGHTS": str(weights_file)}

    def run(*args: object) -> str:
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("import", people_folder(tmp_path / "people"))
    run("db", "upgrade")
    assert "(at head)" in run("db", "current")
    assert json.loads(run("embed", "--json"))["embedded"] == 12
    report = json.loads(run("retrain", "--json"))
    assert report["n_train"] + report["n_val"] == 12
    face_ids = json.loads(run("predict", "--face-id", "1", "--face-id", "5", "--json"))
    assert [row["person_id"] for row in face_ids] == ["person0", "person1"]
    status = json.loads(run("status", "--json"))
    assert (status["faces"], status["embedded"], status["pending"]) == (12, 12, 0)
    assert status["model"]["version"] == report["version"]


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


def test_evaluate_json_and_plot(cli: Cli, embedded_db: Path, tmp_path: Path) -> None:
    from PIL import Image

    plot = tmp_path / "eval.png"
    result = cli("--db", embedded_db, "evaluate", "--json", "--plot", plot, "--seeds", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report["closed_set"]) == {"auto", "svc", "lda", "logreg", "knn", "centroid"}
    assert report["faces"] == 24 and report["people"] == 4  # the one-face person is dropped
    assert all(0 <= r["accuracy"] <= 1 for r in report["closed_set"].values())
    open_set = report["open_set"]
    assert open_set["classifier"] == "auto" and open_set["strangers_per_seed"] == 1
    curve = open_set["curve"]
    rejected = [p["strangers_rejected"] for p in curve]
    named = [p["named_right"] + p["named_wrong"] for p in curve]
    assert rejected == sorted(rejected, reverse=True) and named == sorted(named)
    for p in curve:
        assert p["named_right"] + p["named_wrong"] + p["unknown"] == pytest.approx(1, abs=1e-3)
    assert open_set["calibrated"]["far_target"] == 0.03
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size == (1200, 500)


def test_evaluate_needs_three_people(cli: Cli, tmp_path: Path, fake_registered: None) -> None:
    path = make_app_db(tmp_path / "two.db", people=2, per_person=4)
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--backbone", "fake").exit_code == 0
    result = cli("--db", path, "evaluate")
    assert result.exit_code == 1
    assert "needs at least 3 people" in result.output and "Verify more people" in result.output

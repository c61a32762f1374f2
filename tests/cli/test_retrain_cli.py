"""`facestore retrain` and `facestore train`, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import retrain_json, sha
from tests.support.helpers import (
    encode,
    face_image,
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
    "low_quality_left_out",
    "settings",
}


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
    assert (status["model"]["version"], status["model"]["accuracy"]) == (
        second["version"],
        second["accuracy"],
    )
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
    assert "dropped: solo (1 face)" in result.stdout


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


def test_a_models_training_settings_stick_until_given_again(
    cli: Cli, embedded_db: Path, tmp_path: Path
) -> None:
    given = ["--classifier", "centroid", "--false-accept", "0.05", "--seed", "3"]
    first = retrain_json(cli, embedded_db, *given, "--val-fraction", "0.3", "--keep-versions", "2")
    chosen = {"classifier": "centroid", "far": 0.05, "val_fraction": 0.3, "seed": 3, "keep": 2}
    assert first["settings"] == chosen
    assert first["open_set"]["far_target"] == 0.05 and first["classifier"] == "centroid"
    again = retrain_json(cli, embedded_db)  # nothing given: all of them again
    assert again["settings"] == chosen and again["classifier"] == "centroid"
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["settings"] == chosen and metrics["open_set"]["far_target"] == 0.05
    changed = retrain_json(cli, embedded_db, "--seed", "4")  # only what is given changes
    assert changed["settings"] == {**chosen, "seed": 4}
    assert len(list((tmp_path / "model" / "history").iterdir())) == 2  # versions kept: 2

    shown = cli("--db", embedded_db, "model", "show")
    assert shown.exit_code == 0, shown.output
    assert f"version:     {changed['version']} (current)" in shown.stdout
    assert (
        "settings:    classifier centroid, false-accept target 0.05, validation share 0.3, "
        "seed 4, versions kept 2" in shown.stdout
    )
    assert json.loads(cli("model", "show", again["version"], "--json").stdout)["settings"] == (
        chosen
    )
    status = cli("--db", embedded_db, "status").stdout
    assert "training:     classifier centroid, false-accept target 0.05" in status
    missing = cli("model", "show", "20990101T000000Z")
    assert missing.exit_code == 1 and "'facestore model list' shows the kept versions" in (
        missing.output
    )


def test_a_model_from_before_settings_were_recorded_lends_what_its_metrics_imply(
    cli: Cli, embedded_db: Path, tmp_path: Path
) -> None:
    retrain_json(cli, embedded_db, "--classifier", "logreg", "--false-accept", "0.02")
    path = tmp_path / "model" / "metrics.json"
    metrics = json.loads(path.read_text())
    del metrics["settings"]
    path.write_text(json.dumps(metrics))
    again = retrain_json(cli, embedded_db)
    assert again["settings"]["classifier"] == "logreg" and again["settings"]["far"] == 0.02


def test_train_and_embed_follow_the_librarys_backbone_unless_one_is_given(
    cli: Cli, embedded_db: Path
) -> None:
    """embedded_db was embedded with --backbone fake; without --backbone, train and embed
    keep to it (vggface2, whose weights are not here, would fail); a given one wins."""
    sqlite_exec(
        embedded_db,
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)",
        encode(face_image(1, 50)),
        "p01",
    )
    embedded = cli("--db", embedded_db, "embed", "--json")
    assert embedded.exit_code == 0, embedded.output
    assert json.loads(embedded.stdout)["embedded"] == 1
    trained = cli("--db", embedded_db, "train", "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["embed"]["embedded"] == 0
    given = cli("--db", embedded_db, "embed", env={"FACESTORE_BACKBONE": "no-such-backbone"})
    assert given.exit_code != 0 and "no-such-backbone" in given.output
    for command in ("train", "embed", "watch", "reembed", "doctor"):
        text = " ".join(cli(command, "--help").stdout.split())
        assert "the backbone of the library's vectors" in text, command

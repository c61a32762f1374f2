"""`facestore doctor`: passes on a healthy install and, for each broken part, fails naming
the problem and the fix (the fix applied makes it pass again). The real facenet path
(random weights in the official format) on SQLite; both databases for a healthy install."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from facestore.artifacts import CLASSIFIER_FILE
from tests.support.backends import AppDatabase
from tests.support.helpers import encode, face_image, make_app_db, sqlite_exec
from tests.support.types import Cli

pytestmark = pytest.mark.slow


def doctor(cli: Cli, db: Path | str, weights: Path, *extra: str) -> tuple[int, dict[str, dict]]:
    result = cli("--db", db, "doctor", "--json", *extra, env={"FACESTORE_WEIGHTS": str(weights)})
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, {c["check"]: c for c in json.loads(result.stdout)}


def failing(checks: dict[str, dict]) -> list[str]:
    return [name for name, c in checks.items() if c["status"] == "fail"]


@pytest.fixture
def installed(tmp_path: Path, cli: Cli, weights_file: Path) -> Path:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=3, corrupt=["random"])
    result = cli("--db", db, "train", "--upgrade", env={"FACESTORE_WEIGHTS": str(weights_file)})
    assert result.exit_code == 0, result.output
    return db


def test_a_healthy_install_passes_and_each_problem_is_named_with_its_fix(
    installed: Path, cli: Cli, weights_file: Path, tmp_path: Path
) -> None:
    db = installed
    code, checks = doctor(cli, db, weights_file)
    assert code == 0, checks
    assert list(checks) == [
        "database", "disk", "face table", "schema", "triggers", "weights", "model",
        "queue", "failures", "leases", "last retrain", "vacuum",
    ]  # fmt: skip
    assert checks["vacuum"] == {
        "check": "vacuum", "status": "ok", "detail": "not needed on SQLite", "fix": ""
    }  # fmt: skip
    assert "journal_mode=" in checks["database"]["detail"]
    assert "firing" in checks["triggers"]["detail"]
    assert checks["failures"]["status"] == "warn"  # the corrupt crop: a warning, not a failure
    text = cli("--db", db, "doctor", env={"FACESTORE_WEIGHTS": str(weights_file)}).stdout
    assert text.count("\n") >= 9 and "fix: fix or replace those crops" in text

    # schema behind
    assert cli("--db", db, "db", "downgrade", "0004").exit_code == 0
    code, checks = doctor(cli, db, weights_file)
    assert code == 1 and failing(checks) == ["schema"]
    assert "behind" in checks["schema"]["detail"]
    assert checks["schema"]["fix"] == "facestore db upgrade"
    assert checks["triggers"]["status"] == "skip"
    assert cli("--db", db, "db", "upgrade").exit_code == 0

    # triggers dropped
    sqlite_exec(db, "DROP TRIGGER facestore_face_insert")
    code, checks = doctor(cli, db, weights_file)
    assert code == 1 and failing(checks) == ["triggers"]
    assert "missing: facestore_face_insert" in checks["triggers"]["detail"]
    assert "facestore db downgrade 0004" in checks["triggers"]["fix"]
    assert cli("--db", db, "db", "downgrade", "0004").exit_code == 0  # the fix, as it says
    assert cli("--db", db, "db", "upgrade").exit_code == 0
    assert doctor(cli, db, weights_file)[0] == 0

    # a trigger there by name that does nothing
    sqlite_exec(db, "DROP TRIGGER facestore_face_update_crop")
    sqlite_exec(
        db, "CREATE TRIGGER facestore_face_update_crop AFTER UPDATE ON face BEGIN SELECT 1; END"
    )
    code, checks = doctor(cli, db, weights_file)
    assert code == 1 and failing(checks) == ["triggers"]
    assert "installed but not working" in checks["triggers"]["detail"]
    assert cli("--db", db, "db", "downgrade", "0004").exit_code == 0
    assert cli("--db", db, "db", "upgrade").exit_code == 0

    # wrong weights
    other = tmp_path / "other-vggface2.pt"
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(2)
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), other)
    code, checks = doctor(cli, db, other)
    assert code == 1 and failing(checks) == ["weights"]
    assert "sha256" in checks["weights"]["detail"] and "reembed" in checks["weights"]["fix"]

    # tampered model
    model = tmp_path / "model" / "current"
    classifier = model.resolve() / CLASSIFIER_FILE
    original = classifier.read_bytes()
    classifier.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    code, checks = doctor(cli, db, weights_file, "--model-dir", str(tmp_path / "model"))
    assert code == 1 and failing(checks) == ["model"]
    assert "does not load" in checks["model"]["detail"] and "rollback" in checks["model"]["fix"]
    classifier.write_bytes(original)

    # a stuck queue: a face queued two hours ago, and no vector written since
    sqlite_exec(
        db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
        encode(face_image(1, 50)),
    )
    assert doctor(cli, db, weights_file)[0] == 0  # just queued: not stuck
    sqlite_exec(db, "UPDATE embedding_job SET enqueued_at = enqueued_at - 7200")
    sqlite_exec(db, "UPDATE embedding SET created_at = created_at - 7200")
    code, checks = doctor(cli, db, weights_file)
    assert code == 1 and failing(checks) == ["queue"]
    assert "stuck" in checks["queue"]["detail"] and "facestore watch" in checks["queue"]["fix"]
    assert cli("--db", db, "embed", env={"FACESTORE_WEIGHTS": str(weights_file)}).exit_code == 0
    assert doctor(cli, db, weights_file)[0] == 0


def test_doctor_checks_triggers_fire_on_both_databases(
    make_app: Callable[..., AppDatabase], cli: Cli, fake_registered: None, weights_file: Path
) -> None:
    app = make_app(people=3, per_person=3)
    assert cli("--db", app.url, "train", "--backbone", "fake").exit_code == 0
    before = app.rows("SELECT id, face_crop_blob FROM face ORDER BY id")
    code, checks = doctor(cli, app.url, weights_file, "--backbone", "fake")
    assert code == 0, checks
    assert "firing" in checks["triggers"]["detail"]
    assert app.rows("SELECT id, face_crop_blob FROM face ORDER BY id") == before  # rolled back
    assert app.rows("SELECT count(*) FROM embedding_job") == [(0,)]
    if app.dialect == "postgresql":  # this project's server runs with autovacuum off
        autovacuum = app.rows("SHOW autovacuum")[0][0]
        assert checks["vacuum"]["status"] == ("ok" if autovacuum == "on" else "warn")
        assert f"autovacuum is {autovacuum}" in checks["vacuum"]["detail"]

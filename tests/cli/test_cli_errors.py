"""What a new user hits: clear messages and the documented exit codes, never a traceback.

Exit codes (README): 1 a problem with the data or the request, 2 a setup problem
that retrying cannot fix. Subprocess runs check the whole stderr has no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from facestore.embedding import embed_pending
from tests.support.backends import ADMIN_URL
from tests.support.helpers import (
    ISO_UTC,
    FakeBackbone,
    encode,
    face_image,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.types import StoreFor

Cli = Callable[..., Result]


def run(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "facestore", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture
def not_a_database(tmp_path: Path) -> Path:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n")
    (tmp_path / "people" / "1").mkdir(parents=True)  # for import (the cwd is tmp_path)
    (tmp_path / "people" / "1" / "a.png").write_bytes(encode(face_image(0, 0), "PNG"))
    return path


@pytest.mark.parametrize(
    "command",
    [["status"], ["db", "upgrade"], ["import", "people"], ["watch", "--poll"], ["embed"]],
)
def test_a_file_that_is_not_a_database(cli: Cli, not_a_database: Path, command: list[str]):
    result = cli("--db", not_a_database, *command)
    assert result.exit_code == 2, result.output
    assert "is not a SQLite database" in result.output and "Check --db" in result.output


def test_no_traceback_in_a_real_process(not_a_database: Path) -> None:
    proc = run("--db", not_a_database, "status")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not a SQLite database" in proc.stderr


@pytest.mark.parametrize(
    "args", [["db", "downgrade", "bogus"], ["db", "upgrade", "9999"], ["db", "upgrade", "0011"]]
)
def test_an_unknown_revision_names_the_known_ones(cli: Cli, upgraded_db: Path, args: list[str]):
    result = cli("--db", upgraded_db, *args)
    assert result.exit_code == 2, result.output
    assert (
        "Known revisions: base, 0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009, 0010 (head)"
        in result.output
    )


def test_a_bad_environment_value_is_reported_like_a_bad_option(cli: Cli, upgraded_db: Path):
    result = cli("--db", upgraded_db, "embed", env={"FACESTORE_BATCH_SIZE": "abc"})
    assert result.exit_code == 2
    assert "FACESTORE_BATCH_SIZE" in result.output and "'abc'" in result.output


@pytest.mark.parametrize(
    ("command", "variables"),
    [
        (
            ["embed"],
            [
                "FACESTORE_DB",
                "FACESTORE_MODEL_DIR",
                "FACESTORE_WEIGHTS",
                "FACESTORE_BACKBONE",
                "FACESTORE_DEVICE",
                "FACESTORE_BATCH_SIZE",
            ],
        ),
        (["status"], ["FACESTORE_DB", "FACESTORE_MODEL_DIR"]),
        (["model", "list"], ["FACESTORE_MODEL_DIR"]),
        ([], ["FACESTORE_WORKER_HOST", "TORCH_HOME", "FACESTORE_BATCH_SIZE"]),
    ],
)
def test_help_shows_the_environment_variables(cli: Cli, command: list[str], variables: list[str]):
    shown = cli(*command, "--help").output
    assert [v for v in variables if v not in shown] == []


def test_a_missing_database_file_is_never_created(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for command in (["status"], ["db", "upgrade"], ["db", "current"], ["embed"], ["retrain"]):
        result = cli("--db", missing, *command)
        assert result.exit_code == 2, (command, result.output)
        assert f"The database file {missing} does not exist" in result.output
        assert not missing.exists()


def test_a_database_without_a_face_table_says_so_not_to_upgrade(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite_exec(other, "CREATE TABLE photo (id INTEGER PRIMARY KEY)")
    for command in (["status"], ["db", "upgrade"]):  # status said 'db upgrade', which refused
        result = cli("--db", other, *command)
        assert result.exit_code == 2, (command, result.output)
        assert "This database has no 'face' table" in result.output  # issue 37
        assert "Run 'facestore db upgrade'" not in result.output


def test_import_may_create_the_database(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "people" / "7").mkdir(parents=True)
    (tmp_path / "people" / "7" / "a.png").write_bytes(encode(face_image(0, 0), "PNG"))
    result = cli("--db", tmp_path / "new.db", "import", tmp_path / "people")
    assert result.exit_code == 0 and "imported 1 face of 1 person" in result.output


def test_global_options_after_the_command(cli: Cli, upgraded_db: Path) -> None:
    for args in (["-v"], ["--log-format", "json"], ["-vv", "--log-format", "text"]):
        result = cli("status", "--db", upgraded_db, *args)
        assert result.exit_code == 0, result.output


def test_json_logs_and_status_times_are_iso_utc(upgraded_db: Path, store_for: StoreFor) -> None:
    embed_pending(store_for(upgraded_db), FakeBackbone())
    proc = run("status", "--json", "--db", upgraded_db, "-vv", "--log-format", "json")
    assert proc.returncode == 0, proc.stderr
    spaces = json.loads(proc.stdout)["spaces"]
    assert ISO_UTC.fullmatch(spaces[0]["created_at"])
    assert ISO_UTC.fullmatch(spaces[0]["activated_at"])
    proc = run(
        "retrain", "--db", upgraded_db, "--classifier", "logreg", "-v", "--log-format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    assert any("Published model" in line["message"] for line in lines)
    assert all(ISO_UTC.fullmatch(line["time"]) for line in lines)


def test_a_flat_folder_says_why_nothing_was_imported(cli: Cli, tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("a.png", "b.png"):
        (flat / name).write_bytes(encode(face_image(0, 0), "PNG"))
    result = cli("--db", tmp_path / "new.db", "import", flat)
    assert result.exit_code == 1
    assert "holds 2 files directly (a.png, b.png) and no person folder" in result.output
    assert not (tmp_path / "new.db").exists()


def test_skipped_files_are_listed_once_with_their_reason(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "people"
    (root / "3").mkdir(parents=True)
    (root / "3" / "a.png").write_bytes(encode(face_image(0, 0), "PNG"))
    (root / "3" / "notes.txt").write_text("not an image")
    (root / "3" / "cut.jpg").write_bytes(encode(face_image(0, 2))[:200])
    (root / "loose.png").write_bytes(encode(face_image(0, 1), "PNG"))
    result = cli("--db", tmp_path / "new.db", "import", root)
    assert result.exit_code == 0
    assert "imported 1 face of 1 person, skipped 3 files:" in result.stdout
    assert f"{root / '3' / 'notes.txt'}: not an image Pillow can read" in result.stdout
    assert f"{root / '3' / 'cut.jpg'}: corrupt or truncated JPEG image" in result.stdout
    assert f"{root / 'loose.png'}: not in a person folder" in result.stdout
    assert result.output.count("notes.txt") == 1  # not again in a log line


def test_a_folder_with_nothing_importable_fails_and_creates_no_database(
    cli: Cli, tmp_path: Path
) -> None:
    root = tmp_path / "people"
    (root / "3").mkdir(parents=True)
    (root / "3" / "notes.txt").write_text("not an image")
    (root / "3" / "cut.jpg").write_bytes(encode(face_image(0, 2))[:200])
    result = cli("--db", tmp_path / "new.db", "import", root)
    assert result.exit_code == 1
    assert "Nothing imported from" in result.output and "none of its 2 files" in result.output
    assert not (tmp_path / "new.db").exists()


def test_failures_lists_each_failed_face_with_its_reason(
    cli: Cli, tmp_path: Path, store_for: StoreFor
) -> None:
    from tests.support.processes import app_db

    db = app_db(tmp_path / "app.db", corrupt=["random", "empty"])
    assert cli("--db", db, "failures").stdout.strip() == "no failed faces (nothing embedded yet)"
    embed_pending(store_for(db), FakeBackbone())
    rows = json.loads(cli("--db", db, "failures", "--json").stdout)
    assert [(r["face_id"], r["attempts"]) for r in sorted(rows, key=lambda r: r["face_id"])] == [
        (13, 1),
        (14, 1),
    ]
    assert all(ISO_UTC.fullmatch(r["failed_at"]) for r in rows)
    text = cli("--db", db, "failures").stdout
    assert "face 14 (person 0): empty crop (0 bytes) [1 attempt, last " in text
    assert len(json.loads(cli("--db", db, "failures", "--json", "--limit", "1").stdout)) == 1


def test_a_postgresql_database_that_does_not_exist_is_a_setup_error(cli: Cli) -> None:
    url = ADMIN_URL.rsplit("/", 1)[0] + "/facestore_no_such_database"
    result = cli("--db", url, "status")
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and "createdb" in result.output


def test_model_list_and_status_say_n_a_without_validation(
    cli: Cli, upgraded_db: Path, store_for: StoreFor
) -> None:
    embed_pending(store_for(upgraded_db), FakeBackbone())
    result = cli("--db", upgraded_db, "retrain", "--val-fraction", "0", "--classifier", "logreg")
    assert result.exit_code == 0, result.output
    assert "accuracy n/a" in cli("model", "list").stdout
    assert "accuracy n/a" in cli("--db", upgraded_db, "status").stdout
    assert "None" not in cli("model", "list").stdout


def test_a_server_that_refuses_is_named_in_one_sentence(cli: Cli) -> None:
    result = cli("--db", "postgresql+psycopg://postgres@127.0.0.1:1/test", "status")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "Connection refused" in result.output
    assert "connections? Check that the server is up" in " ".join(result.output.split())
    assert "?." not in result.output


def test_a_missing_extra_is_named_before_any_work(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 37: psycopg (PostgreSQL) and dlib are checked before anything is read,
    embedded or created, and the error names the extra that installs them."""
    folder = tmp_path / "people" / "p1"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(encode(face_image(1, 0), "PNG"))
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if not installed
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    for command in (["import", str(tmp_path / "people")], ["status"], ["embed"]):
        result = cli("--db", url, *command)
        assert result.exit_code == 2, result.output
        assert "pip install 'facestore[postgres]'" in result.output
        assert "imported" not in result.output and "Traceback" not in result.output

    db = tmp_path / "app.db"
    assert cli("--db", db, "import", str(tmp_path / "people")).exit_code == 0
    assert cli("--db", db, "db", "upgrade").exit_code == 0
    monkeypatch.setitem(sys.modules, "dlib", None)
    result = cli("--db", db, "train", "--backbone", "dlib")
    assert result.exit_code == 2, result.output
    assert "pip install 'facestore[dlib]'" in result.output
    assert sqlite_rows(db, "SELECT count(*) FROM embedding") == [(0,)]  # nothing embedded

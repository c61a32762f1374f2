from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from facestore import db as database
from facestore.errors import FaceTableError, SchemaNotAtHeadError
from facestore.schema import OWN_TABLES
from tests.support.helpers import app_snapshot, sqlite_exec, sqlite_rows
from tests.support.types import Cli, MakeApp


def engine_for(path: Path):  # type: ignore[no-untyped-def]
    return database.create_engine(f"sqlite:///{path}")


@pytest.mark.parametrize("with_verified", [True, False])
def test_upgrade_then_downgrade_leaves_the_app_identical(make_app: MakeApp, with_verified: bool):  # type: ignore[no-untyped-def]
    app = make_app(upgrade=False, with_verified=with_verified)
    before = app.snapshot()
    engine = database.create_engine(app.url)

    database.upgrade(engine)
    objects, data = app.snapshot()
    assert [m for m in objects if m in before[0]] == before[0]
    assert {k: v for k, v in data.items() if k in before[1]} == before[1]
    assert set(OWN_TABLES) <= set(data)
    assert app.rows("SELECT version_num FROM alembic_version") == [("app_rev_42",)]

    database.downgrade(engine, "base")
    engine.dispose()
    assert app.snapshot() == before


def test_upgrade_twice_is_a_no_op(upgraded_db: Path) -> None:
    before = app_snapshot(upgraded_db)
    database.upgrade(engine_for(upgraded_db))
    assert app_snapshot(upgraded_db) == before
    assert database.current_revision(engine_for(upgraded_db)) == database.head_revision()


def test_app_writes_work_after_downgrade(upgraded_db: Path) -> None:
    database.downgrade(engine_for(upgraded_db), "base")
    left = sqlite_rows(
        upgraded_db,
        "SELECT name FROM sqlite_master WHERE name LIKE 'facestore%' OR name LIKE 'embedding%'",
    )
    assert left == []  # no table, index or trigger of facestore's: the app's writes are its own
    sqlite_exec(upgraded_db, "DELETE FROM face WHERE id = 1")
    sqlite_exec(upgraded_db, "INSERT OR REPLACE INTO face (id, face_crop_blob) VALUES (2, x'00')")
    sqlite_exec(upgraded_db, "UPDATE face SET face_crop_blob = x'01' WHERE id = 3")
    rows = dict(sqlite_rows(upgraded_db, "SELECT id, face_crop_blob FROM face WHERE id <= 3"))
    assert rows == {2: b"\x00", 3: b"\x01"}


def test_no_face_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE photo (id INTEGER PRIMARY KEY)").connection.close()
    with pytest.raises(FaceTableError, match="This database has no 'face' table"):
        database.upgrade(engine_for(path))
    assert sqlite_rows(path, "SELECT name FROM sqlite_master") == [("photo",)]


def test_face_table_without_required_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE face (id INTEGER PRIMARY KEY, person_id INTEGER)")
    con.close()
    with pytest.raises(FaceTableError, match="lacks the column\\(s\\) face_crop_blob"):
        database.upgrade(engine_for(path))


def test_require_head_names_both_revisions(app_db: Path) -> None:
    engine = engine_for(app_db)
    with pytest.raises(SchemaNotAtHeadError) as info:
        database.require_head(engine)
    assert str(info.value) == (
        "Database schema is at none (facestore is not installed in this database), "
        f"expected {database.head_revision()}. Run 'facestore db upgrade'."
    )
    database.upgrade(engine)
    database.require_head(engine)


def test_cli_db_commands(cli: Cli, app_db: Path) -> None:
    head = database.head_revision()
    assert cli("--db", app_db, "db", "current").stdout.strip() == f"none (behind, head is {head})"
    result = cli("db", "upgrade", "--db", app_db)
    assert result.exit_code == 0 and f"at {head}" in result.stdout
    assert cli("--db", app_db, "db", "current").stdout.strip() == f"{head} (at head)"
    assert cli("--db", app_db, "db", "downgrade", "base").exit_code == 0
    assert cli("--db", app_db, "db", "current").stdout.startswith("none")


def test_other_commands_refuse_an_old_schema(cli: Cli, app_db: Path) -> None:
    result = cli("--db", app_db, "status")
    assert result.exit_code == 2
    assert "Database schema is at none" in result.output
    assert "Run 'facestore db upgrade'." in result.output
    assert "Traceback" not in result.output


def test_missing_database_option_is_explained(cli: Cli) -> None:
    result = cli("status")
    assert result.exit_code == 2
    assert "No database given. Give --db / FACESTORE_DB: a SQLite file path" in result.output


def test_an_old_sqlite_library_is_named(
    cli: Cli, app_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database.sqlite3, "sqlite_version_info", (3, 34, 1))
    monkeypatch.setattr(database.sqlite3, "sqlite_version", "3.34.1")
    result = cli("--db", app_db, "status")
    assert result.exit_code == 2
    assert "needs SQLite 3.35 or newer" in result.output and "3.34.1" in result.output


def test_a_postgresql_server_that_does_not_answer_is_worth_a_retry(cli: Cli) -> None:
    result = cli("--db", "postgresql+psycopg://postgres@127.0.0.1:1/none", "status")
    assert result.exit_code == 1  # not 2: systemd restarts the daemon
    assert "Cannot reach the database" in result.output
    assert "Check that the server is up" in result.output


def test_downgrade_one_step_restores_the_previous_triggers(upgraded_db: Path) -> None:
    def our_triggers() -> set[str]:
        rows = sqlite_rows(upgraded_db, "SELECT name FROM sqlite_master WHERE type = 'trigger'")
        return {name for (name,) in rows if name.startswith("facestore_")}

    assert "facestore_face_verified" in our_triggers()
    database.downgrade(engine_for(upgraded_db), "0001")
    assert our_triggers() == {
        "facestore_face_delete",
        "facestore_face_insert",
        "facestore_face_update_crop",
    }
    assert (
        sqlite_rows(upgraded_db, "SELECT name FROM sqlite_master WHERE name = 'face_suggestion'")
        == []
    )
    sqlite_exec(upgraded_db, "DELETE FROM face WHERE id = 1")  # v1 triggers work without the table
    database.upgrade(engine_for(upgraded_db))
    assert "facestore_face_verified" in our_triggers()


def test_the_schema_head_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from facestore import db as database

    script = ScriptDirectory.from_config(database.alembic_config())
    assert script.get_current_head() == database.SCHEMA_HEAD
    assert database.known_revisions()[-1] == database.SCHEMA_HEAD

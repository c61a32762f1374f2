from __future__ import annotations

import json
import re
import sqlite3
import zipfile
from pathlib import Path

import click
import pytest

from facestore import backbones
from facestore.cli.main import main
from facestore.config import BackboneSettings
from tests.support.helpers import FakeBackbone, encode, face_image, sqlite_rows
from tests.support.types import Cli

README = Path(__file__).resolve().parents[2] / "README.md"


def people_folder(root: Path, people: dict[str, int], fmt: str = "PNG") -> Path:
    for p, (name, count) in enumerate(people.items()):
        (root / name).mkdir(parents=True)
        for s in range(count):
            suffix = {"PNG": "png", "JPEG": "jpg", "PPM": "pgm"}[fmt]
            (root / name / f"{s}.{suffix}").write_bytes(encode(face_image(p, s), fmt))
    return root


def test_import_creates_a_minimal_face_table(cli: Cli, tmp_path: Path) -> None:
    folder = people_folder(tmp_path / "people", {"alice": 3, "bob": 2}, fmt="PPM")
    (folder / "alice" / "notes.txt").write_text("not an image")
    db = tmp_path / "new.db"
    result = cli("--db", db, "import", folder, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["faces"], report["people"], report["created_table"]) == (5, 2, True)
    [skipped] = report["skipped"]
    assert skipped["path"] == str(folder / "alice" / "notes.txt")
    assert skipped["reason"] == "not an image Pillow can read"
    rows = sqlite_rows(db, "SELECT person_id, verified, substr(face_crop_blob, 2, 3) FROM face")
    assert sorted(rows) == [("alice", 1, b"PNG")] * 3 + [("bob", 1, b"PNG")] * 2
    assert cli("--db", db, "db", "upgrade").exit_code == 0


def test_import_into_a_directory_says_it_is_one(cli: Cli, tmp_path: Path) -> None:
    folder = people_folder(tmp_path / "people", {"alice": 1})
    (tmp_path / "adir").mkdir()
    result = cli("--db", tmp_path / "adir", "import", folder)
    assert result.exit_code == 2, result.output
    # as every other command says it (issue 37): not "Cannot open the database sqlite:///..."
    assert f"{tmp_path / 'adir'} is a directory, not a database file." in result.output
    assert "--db" in result.output


def test_import_into_an_integer_person_id_table(cli: Cli, app_db: Path, tmp_path: Path) -> None:
    folder = people_folder(tmp_path / "people", {"7": 2}, fmt="JPEG")
    assert cli("--db", app_db, "import", folder).exit_code == 0
    assert sqlite_rows(app_db, "SELECT person_id, verified FROM face WHERE id > 12") == [(7, 1)] * 2
    bad = people_folder(tmp_path / "bad", {"carol": 1})
    result = cli("--db", app_db, "import", bad)
    assert result.exit_code == 1 and "Folder 'carol' is not an integer" in result.output


def test_plugin_backbone_through_the_cli(
    cli: Cli, app_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def factory(settings: BackboneSettings) -> FakeBackbone:
        return FakeBackbone(name="fake-plugin")

    monkeypatch.setitem(backbones._REGISTRY, "fake-plugin", factory)
    assert cli("--db", app_db, "db", "upgrade").exit_code == 0
    result = cli("--db", app_db, "embed", "--backbone", "fake-plugin", "--json")
    assert json.loads(result.stdout)["embedded"] == 12
    status = json.loads(cli("--db", app_db, "status", "--json").stdout)
    assert status["active_space"]["backbone"] == "fake-plugin"
    assert status["model"] is None and status["stale"] == 0


def all_commands(group: click.Group, prefix: str = "") -> list[str]:
    """Every command, the lazily loaded ones included."""
    ctx = click.Context(group)
    names = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        names.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            names.extend(all_commands(command, f"{prefix}{name} "))
    return names


def test_every_command_is_listed() -> None:
    assert {"watch", "doctor", "model list", "db current"} <= set(all_commands(main))


@pytest.mark.parametrize("command", all_commands(main))
def test_every_command_is_in_the_readme_and_has_help(cli: Cli, command: str) -> None:
    assert re.search(rf"facestore (\S+ )*{re.escape(command)}\b", README.read_text()), command
    result = cli(*command.split(), "--help")
    assert result.exit_code == 0 and len(result.stdout) > 200


def test_missing_face_table_is_explained(cli: Cli, tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    result = cli("--db", db, "db", "upgrade")
    assert result.exit_code == 2
    assert "This database has no 'face' table" in result.output


@pytest.mark.slow
def test_wheel_has_no_top_level_cli_or_migrations(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = README.parent
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("facestore-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert "facestore" in tops
    assert all(t.endswith(".dist-info") for t in tops - {"facestore"}), tops
    assert "facestore/cli/main.py" in names
    for packaged in (
        "facestore/store/queue.py",
        "facestore/daemon/loop.py",
        "facestore/doctor/checks.py",
        "facestore/py.typed",
    ):
        assert packaged in names, packaged
    assert "facestore/migrations/env.py" in names
    assert any(n.startswith("facestore/migrations/versions/0001") for n in names)
    assert "facestore/migrations/script.py.mako" in names


def test_status_says_what_each_count_counts(cli: Cli, embedded_db: Path) -> None:
    text = cli("--db", embedded_db, "status").stdout
    # issue 37: "pending: 0" beside "work queue: 300 faces", and "embedded" beside
    # "vectors", read as contradictions
    assert "verified faces with a vector in the active space" in text
    assert "verified faces still to embed (no vector, no failure)" in text
    assert "in the active space (verified or not)" in text

"""Migrations on an app database with its own alembic_version, tables, view and trigger."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facestore import db as database
from tests.support.helpers import app_snapshot, sqlite_exec, sqlite_rows
from tests.support.types import Figures

pytestmark = pytest.mark.slow

APP = """
CREATE TABLE photo (id INTEGER PRIMARY KEY, path TEXT NOT NULL);
CREATE TABLE album (id INTEGER PRIMARY KEY, title TEXT);
CREATE TABLE face (id INTEGER PRIMARY KEY, photo_id INTEGER REFERENCES photo(id),
                   face_crop_blob BLOB, person_id INTEGER, verified BOOLEAN DEFAULT 0);
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
INSERT INTO alembic_version VALUES ('app_9f1c');
CREATE VIEW photo_faces AS SELECT photo.path, face.id FROM photo JOIN face ON face.photo_id = photo.id;
CREATE TRIGGER album_title AFTER INSERT ON album BEGIN
    UPDATE album SET title = upper(title) WHERE id = NEW.id;
END;
INSERT INTO photo (path) VALUES ('a.jpg');
INSERT INTO album (title) VALUES ('summer');
INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, x'ffd8', 1, 1);
"""

CYCLE = """
import sys
from facestore import db
engine = db.create_engine(f"sqlite:///{sys.argv[1]}")
while True:
    db.upgrade(engine)
    db.downgrade(engine, "base")
"""


def test_migrations_survive_being_killed(tmp_path: Path, figures: Figures) -> None:
    path = tmp_path / "app.db"
    con = sqlite3.connect(path)
    con.executescript(APP)
    con.close()
    before = app_snapshot(path)
    engine = database.create_engine(f"sqlite:///{path}")

    database.upgrade(engine)
    upgraded = app_snapshot(path)
    database.upgrade(engine)  # twice is a no-op
    assert app_snapshot(path) == upgraded

    rng = random.Random(5)
    revisions_at_kill = []
    for _ in range(10):
        proc = subprocess.Popen([sys.executable, "-c", CYCLE, str(path)])
        time.sleep(rng.uniform(1.5, 3.0))  # past start-up, into the upgrade/downgrade loop
        proc.kill()
        proc.wait()
        revisions_at_kill.append(database.current_revision(engine) or "base")
        assert sqlite_rows(path, "PRAGMA integrity_check") == [("ok",)]
        database.upgrade(engine)  # rerun after the kill reaches head
        assert database.current_revision(engine) == database.head_revision()
        assert app_snapshot(path)[0] == upgraded[0]

    database.downgrade(engine, "base")
    assert app_snapshot(path) == before
    # no dangling triggers: the app's writes all work
    sqlite_exec(path, "INSERT INTO album (title) VALUES ('winter')")
    sqlite_exec(path, "UPDATE face SET face_crop_blob = x'00' WHERE id = 1")
    sqlite_exec(path, "INSERT OR REPLACE INTO face (id, face_crop_blob) VALUES (1, x'01')")
    sqlite_exec(path, "DELETE FROM face")
    assert sqlite_rows(path, "SELECT title FROM album ORDER BY id") == [("SUMMER",), ("WINTER",)]
    figures(
        f"10 kill -9 during upgrade/downgrade cycles (revision seen after each kill: "
        f"{revisions_at_kill}); each rerun reached head, app objects identical after "
        f"downgrade base, app writes work"
    )

"""Whatever value the app stores in face_crop_blob, that face fails alone: the rest embed.

Values SQLite accepts in a BLOB column: NULL, TEXT (valid UTF-8 or not), INTEGER,
REAL, base64 text of a JPEG, zero-length BLOB. PostgreSQL's bytea holds only NULL
or bytes. Checked through `facestore embed` and the real `facestore watch` daemon.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from click.testing import Result

from facestore.embedding import embed_pending
from facestore.store import FailureResult, VectorResult, crop_from
from facestore.store.base import Database
from facestore.store.cache import Cache
from tests.support.backends import AppDatabase
from tests.support.helpers import FakeBackbone, encode, face_image
from tests.support.processes import Watcher, wait_for

JPEG = encode(face_image(0, 9))

# name -> SQL expression for face_crop_blob, as an app might write it
SQLITE_BAD = {
    "NULL": "NULL",
    "text": "'hello'",
    "text, invalid UTF-8": "CAST(x'ffd8ff00e0' AS TEXT)",
    "JPEG bytes stored as text": "(SELECT face_crop_blob FROM face WHERE id = 1) || x'00'",
    "integer": "42",
    "real": "3.25",
    "base64 text of a JPEG": f"'{base64.b64encode(JPEG).decode()}'",
    "zero-length blob": "x''",
}
POSTGRES_BAD = {"NULL": "NULL", "zero-length blob": "''::bytea"}
REASONS = {
    "NULL": "is NULL",
    "text": "holds text",
    "text, invalid UTF-8": "holds text",
    "JPEG bytes stored as text": "holds text",
    "integer": "holds integer",
    "real": "holds real",
    "base64 text of a JPEG": "looks like base64",
    "zero-length blob": "empty crop",
}


def add_bad_faces(app: AppDatabase) -> dict[int, str]:
    """Insert one verified face per bad value; face_id -> name. Good faces are 1..12."""
    bad = SQLITE_BAD if app.dialect == "sqlite" else POSTGRES_BAD
    added = {}
    for name, value in bad.items():
        app.exec(
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
            f"VALUES (1, {value}, 0, true)"
        )
        (face_id,) = app.rows("SELECT max(id) FROM face")[0]
        added[int(face_id)] = name
    if app.dialect == "sqlite":
        types = dict(app.rows("SELECT id, typeof(face_crop_blob) FROM face WHERE id > 12"))
        assert types[min(added)] == "null" and "text" in types.values()
    return added


def failures(app: AppDatabase) -> dict[int, str]:
    return dict(app.rows("SELECT face_id, error FROM embedding_failure"))  # type: ignore[arg-type]


def assert_each_bad_face_failed_alone(app: AppDatabase, bad: dict[int, str]) -> None:
    good = {i for i in app.ids("face", "id") if i not in bad}
    assert app.ids("embedding") == good
    recorded = failures(app)
    assert set(recorded) == set(bad)
    for face_id, name in bad.items():
        assert REASONS[name] in recorded[face_id], (name, recorded[face_id])


def test_crop_from_every_value_type() -> None:
    assert crop_from(1, b"\xff\xd8").error is None
    assert crop_from(1, memoryview(b"ab")).blob == b"ab"
    assert "NULL" in (crop_from(1, None).error or "")
    assert "holds text" in (crop_from(1, b"hi", "text").error or "")
    assert "holds text" in (crop_from(1, "hi").error or "")
    assert "holds int" in (crop_from(1, 42).error or "")
    assert "base64" in (crop_from(1, base64.b64encode(JPEG), "text").error or "")
    assert "base64" not in (crop_from(1, b"hello world", "text").error or "")


def test_embed_records_each_bad_value_and_embeds_the_rest(
    make_app: Callable[..., AppDatabase],
    cli: Callable[..., Result],
    weights_file: Path,
) -> None:
    app = make_app()
    bad = add_bad_faces(app)
    result = cli("--db", app.url, "embed", "--json", env={"FACESTORE_WEIGHTS": str(weights_file)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["embedded"] == 12 and report["failed"] == len(bad)
    assert_each_bad_face_failed_alone(app, bad)
    again = json.loads(
        cli("--db", app.url, "embed", "--json", env={"FACESTORE_WEIGHTS": str(weights_file)}).stdout
    )
    assert again["embedded"] == 0 and again["failed"] == 0 and again["pending"] == 0


@pytest.mark.slow
def test_watch_records_each_bad_value_and_embeds_the_rest(
    make_app: Callable[..., AppDatabase],
    tmp_path: Path,
    weights_file: Path,
    watchers: list[Watcher],
) -> None:
    app = make_app()
    bad = add_bad_faces(app)
    watcher = Watcher(app.url, tmp_path, weights_file, "--no-suggestions", "--batch-size", "4")
    watchers.append(watcher)
    wait_for(
        lambda: len(app.ids("embedding")) + len(failures(app)) == 12 + len(bad),
        timeout=120,
        what=f"every face embedded or failed\n{watcher.output()}",
    )
    assert_each_bad_face_failed_alone(app, bad)
    assert watcher.stop() == 0
    assert "Traceback" not in watcher.output()


def test_a_row_the_database_refuses_to_store_fails_alone(
    make_app: Callable[..., AppDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-row isolation on write: a batch the database refuses is written row by row."""
    app = make_app()
    store = app.store()
    refused = 5
    real = Cache._write_batch

    def refuse_face_5(self: Cache, space: str, vectors, failures, owner=None):  # type: ignore[no-untyped-def]
        if any(r.face_id == refused for r in vectors):
            raise sa.exc.DataError("INSERT ...", {}, ValueError("value out of range"))
        return real(self, space, vectors, failures, owner)

    monkeypatch.setattr(Cache, "_write_batch", refuse_face_5)
    report = embed_pending(store, FakeBackbone(), batch_size=32)
    assert (report.embedded, report.failed) == (11, 1)
    assert app.ids("embedding") == set(range(1, 13)) - {refused}
    assert "could not be stored: value out of range" in failures(app)[refused]
    assert app.ids("embedding_job") == set()


def test_a_row_that_cannot_be_read_fails_alone(
    make_app: Callable[..., AppDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-row isolation on read: a batch read that fails (at the claim, and again at the
    write's check of the current crop) is done row by row; the row fails alone."""
    app = make_app()
    store = app.store()
    real = Database.crop_rows

    def unreadable_face_7(self: Database, conn, face_ids, lock=False):  # type: ignore[no-untyped-def]
        if 7 in face_ids:
            raise sa.exc.DataError("SELECT ...", {}, ValueError("cannot decode"))
        return real(self, conn, face_ids, lock)

    monkeypatch.setattr(Database, "crop_rows", unreadable_face_7)
    report = embed_pending(store, FakeBackbone(), batch_size=32)
    assert (report.embedded, report.failed) == (11, 1)
    assert "cannot decode" in failures(app)[7]
    assert app.ids("embedding_job") == set()


def test_a_face_the_model_fails_on_fails_alone(make_app: Callable[..., AppDatabase]) -> None:
    class FailsOnDarkFaces(FakeBackbone):
        def embed_images(self, images):  # type: ignore[no-untyped-def]
            if any(image.convert("L").getextrema()[1] == 0 for image in images):
                raise ValueError("no face found")
            return super().embed_images(images)

    app = make_app()
    black = encode(face_image(0, 0).point(lambda _: 0), "PNG")
    app.exec(
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
        "VALUES (1, :blob, 0, true)",
        blob=black,
    )
    report = embed_pending(app.store(), FailsOnDarkFaces(), batch_size=32)
    assert (report.embedded, report.failed) == (12, 1)
    assert "backbone failed on this face: no face found" in failures(app)[13]


def test_a_lone_face_the_model_fails_on_fails_alone(make_app: Callable[..., AppDatabase]) -> None:
    """A chunk of one face (or of bad faces only): the model is probed on a plain image;
    it works, so the faces are at fault and are recorded, not retried forever."""

    class FailsOnFace13(FakeBackbone):
        def embed_images(self, images):  # type: ignore[no-untyped-def]
            if any(image.size == (61, 61) for image in images):
                raise ValueError("no face found")
            return super().embed_images(images)

    app = make_app()
    store = app.store()
    embed_pending(store, FakeBackbone(), batch_size=32)
    app.exec(
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
        "VALUES (1, :blob, 0, true)",
        blob=encode(face_image(0, 0, size=(61, 61)), "PNG"),
    )
    report = embed_pending(store, FailsOnFace13(), batch_size=32)
    assert (report.embedded, report.failed) == (0, 1)
    assert "no face found" in failures(app)[13]


def test_a_model_that_fails_on_every_face_raises_and_records_nothing(
    make_app: Callable[..., AppDatabase],
) -> None:
    class Broken(FakeBackbone):
        def embed_images(self, images):  # type: ignore[no-untyped-def]
            raise RuntimeError("CUDA out of memory")

    app = make_app()
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_pending(app.store(), Broken(), batch_size=32)
    assert failures(app) == {} and app.ids("embedding") == set()
    # nothing stays leased: the next run takes the faces at once
    assert app.rows("SELECT count(*) FROM embedding_job WHERE lease_owner IS NOT NULL") == [(0,)]


def test_results_are_stored_with_a_printable_error(
    make_app: Callable[..., AppDatabase],
) -> None:
    app = make_app()
    store = app.store()
    embed_pending(store, FakeBackbone(), batch_size=32)
    (space,) = app.rows("SELECT config_hash FROM embedding_space")[0]
    (sha,) = app.rows("SELECT crop_sha256 FROM embedding WHERE face_id = 1")[0]
    app.exec("DELETE FROM embedding WHERE face_id = 1")
    outcome = store.cache.write_results(
        space, [], [FailureResult(1, sha, "bad \x00 byte" + "x" * 900)]
    )
    assert outcome.failed == 1
    error = failures(app)[1]
    assert "\x00" not in error and "bad \\x00 byte" in error and len(error) <= 500
    vector = VectorResult(1, sha, np.zeros(FakeBackbone.dim, np.float32))
    assert store.cache.write_results(space, [vector], []).embedded == 1
    assert failures(app) == {}

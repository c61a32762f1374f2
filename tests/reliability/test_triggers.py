"""The triggers keep the cache honest whatever the app does, with plain sqlite3."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestore.backbones import space_of
from facestore.embedding import embed_pending
from tests.helpers import FakeBackbone, encode, face_image, sqlite_exec, sqlite_rows


@pytest.fixture
def embedded_db(upgraded_db: Path, store_for) -> Path:  # type: ignore[no-untyped-def]
    report = embed_pending(store_for(upgraded_db), FakeBackbone())
    assert report.embedded == 12
    return upgraded_db


def vector_ids(path: Path) -> set[int]:
    return {row[0] for row in sqlite_rows(path, "SELECT face_id FROM embedding")}


NEW_CROP = encode(face_image(9, 9), "PNG")


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("DELETE FROM face WHERE id = 3", ()),
        ("UPDATE face SET face_crop_blob = ? WHERE id = 3", (NEW_CROP,)),
        (
            "INSERT OR REPLACE INTO face (id, photo_id, face_crop_blob, person_id, verified) "
            "VALUES (3, 1, ?, 0, 1)",
            (NEW_CROP,),
        ),
        (
            "INSERT INTO face (id, photo_id, face_crop_blob, person_id, verified) "
            "VALUES (3, 1, ?, 0, 1) "
            "ON CONFLICT(id) DO UPDATE SET face_crop_blob = excluded.face_crop_blob",
            (NEW_CROP,),
        ),
        ("UPDATE face SET id = 99 WHERE id = 3", ()),
    ],
    ids=["delete", "update-crop", "insert-or-replace", "upsert", "change-id"],
)
def test_app_writes_invalidate_the_cache(embedded_db: Path, sql: str, params: tuple) -> None:
    sqlite_exec(embedded_db, sql, *params)
    assert 3 not in vector_ids(embedded_db)
    assert len(vector_ids(embedded_db)) == 11


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE face SET person_id = 2 WHERE id = 3",
        "UPDATE face SET verified = 0 WHERE id = 3",
        "UPDATE face SET face_crop_blob = face_crop_blob WHERE id = 3",
    ],
)
def test_relabel_and_no_op_updates_keep_the_vector(embedded_db: Path, sql: str) -> None:
    sqlite_exec(embedded_db, sql)
    assert len(vector_ids(embedded_db)) == 12


def test_delete_with_foreign_keys_off_removes_vectors_and_failures(
    upgraded_db: Path, store_for
) -> None:  # type: ignore[no-untyped-def]
    sqlite_exec(upgraded_db, "UPDATE face SET face_crop_blob = x'00ff' WHERE id = 5")
    embed_pending(store_for(upgraded_db), FakeBackbone())
    assert sqlite_rows(upgraded_db, "SELECT face_id FROM embedding_failure") == [(5,)]
    sqlite_exec(upgraded_db, "DELETE FROM face WHERE id IN (4, 5)", foreign_keys=False)
    assert {4, 5}.isdisjoint(vector_ids(upgraded_db))
    assert sqlite_rows(upgraded_db, "SELECT face_id FROM embedding_failure") == []


def test_app_writes_never_fail_with_facestore_installed(embedded_db: Path) -> None:
    sqlite_exec(embedded_db, "DELETE FROM face")
    sqlite_exec(embedded_db, "INSERT INTO face (face_crop_blob, person_id) VALUES (NULL, NULL)")
    assert vector_ids(embedded_db) == set()


def test_orphans_left_without_triggers_are_swept(embedded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    # Simulate a delete that bypassed the triggers (e.g. made before facestore was installed).
    sqlite_exec(embedded_db, "DROP TRIGGER facestore_face_delete")
    sqlite_exec(embedded_db, "DELETE FROM face WHERE id IN (1, 2)")
    assert {1, 2} <= vector_ids(embedded_db)
    assert store_for(embedded_db).sweep_orphans() == 2
    assert {1, 2}.isdisjoint(vector_ids(embedded_db))


def test_space_of_fake_backbone_is_stable() -> None:
    assert space_of(FakeBackbone()).config_hash == space_of(FakeBackbone()).config_hash
    assert space_of(FakeBackbone(salt=1)).config_hash != space_of(FakeBackbone()).config_hash

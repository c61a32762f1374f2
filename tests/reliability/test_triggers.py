"""The triggers keep the cache honest whatever the app does, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from facestore.backbones import space_of
from facestore.embedding import QUEUE, embed_pending
from tests.support.backends import AppDatabase, app_database
from tests.support.helpers import FakeBackbone, encode, face_image, sqlite_exec, sqlite_rows
from tests.support.processes import app_db
from tests.support.types import StoreFor

MakeApp = Callable[..., AppDatabase]
NEW_CROP = encode(face_image(9, 9), "PNG")
SPACE = space_of(FakeBackbone()).config_hash
OWN_ROWS = (
    "embedding",
    "embedding_failure",
    "embedding_job",
    "face_suggestion",
    "face_rejection",
    "face_cluster_member",
)


@pytest.fixture
def embedded(make_app: MakeApp) -> AppDatabase:
    app = make_app()
    report = embed_pending(app.store(), FakeBackbone())
    assert report.embedded == 12
    app.exec("INSERT INTO face_rejection (face_id, person_id) VALUES (3, 1), (4, 2)")
    return app


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM face WHERE id = 3",
        "UPDATE face SET face_crop_blob = :crop WHERE id = 3",
        "INSERT INTO face (id, photo_id, face_crop_blob, person_id, verified) "
        "VALUES (3, 1, :crop, 0, :yes) "
        "ON CONFLICT(id) DO UPDATE SET face_crop_blob = excluded.face_crop_blob",
        "UPDATE face SET id = 99 WHERE id = 3",
    ],
    ids=["delete", "update-crop", "upsert", "change-id"],
)
def test_app_writes_invalidate_the_cache(embedded: AppDatabase, sql: str) -> None:
    embedded.exec(sql, crop=NEW_CROP, yes=True)
    assert 3 not in embedded.ids("embedding")
    assert len(embedded.ids("embedding")) == 11
    assert embedded.ids("face_rejection") == {4}  # "not X" was said of the old crop


def test_insert_or_replace_invalidates_the_cache(tmp_path: Path) -> None:
    """SQLite's REPLACE deletes without firing DELETE triggers; the INSERT trigger covers it."""
    path = app_db(tmp_path / "app.db")
    app = AppDatabase(f"sqlite:///{path}")
    embed_pending(app.store(), FakeBackbone())
    sqlite_exec(
        path,
        "INSERT OR REPLACE INTO face (id, photo_id, face_crop_blob, person_id, verified) "
        "VALUES (3, 1, ?, 0, 1)",
        NEW_CROP,
    )
    assert 3 not in app.ids("embedding")
    app.close()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE face SET person_id = 2 WHERE id = 3",
        "UPDATE face SET verified = :no WHERE id = 3",
        "UPDATE face SET face_crop_blob = face_crop_blob WHERE id = 3",
    ],
)
def test_relabel_and_no_op_updates_keep_the_vector(embedded: AppDatabase, sql: str) -> None:
    embedded.exec(sql, no=False)
    assert len(embedded.ids("embedding")) == 12
    assert embedded.ids("face_rejection") == {3, 4}


def test_emptying_the_face_table_leaves_nothing_behind(make_app: MakeApp) -> None:
    """TRUNCATE on PostgreSQL (a statement trigger); DELETE without WHERE on SQLite."""
    app = make_app(unverified=2, corrupt=["text"])
    store = app.store()
    embed_pending(store, FakeBackbone())
    embed_pending(store, FakeBackbone(), verified=False)
    store.suggestions.write("v1", [], [(13, 0, 0.9)])
    app.exec("INSERT INTO face_rejection (face_id, person_id) VALUES (13, 1)")
    app.exec("INSERT INTO face_cluster_member (face_id, cluster_id, joined_at) VALUES (14, 1, 0)")
    store.queue.enqueue_pending(space_of(FakeBackbone(salt=1)).config_hash)
    assert all(app.ids(table) for table in OWN_ROWS)
    app.exec("TRUNCATE face" if app.dialect == "postgresql" else "DELETE FROM face")
    assert {table: app.ids(table) for table in OWN_ROWS} == dict.fromkeys(OWN_ROWS, set())
    app.exec("INSERT INTO face (face_crop_blob, person_id) VALUES (NULL, NULL)")


def test_verifying_a_face_drops_its_suggestion(make_app: MakeApp) -> None:
    app = make_app(unverified=2)
    app.store().suggestions.write("v1", [], [(13, 0, 0.9), (14, 1, 0.8)])
    app.exec("UPDATE face SET verified = :yes WHERE id = 13", yes=True)
    assert app.ids("face_suggestion") == {14}


def test_naming_deleting_or_recropping_a_face_takes_it_out_of_its_cluster(
    make_app: MakeApp,
) -> None:
    app = make_app(unverified=4)
    app.exec_many(
        "INSERT INTO face_cluster_member (face_id, cluster_id, joined_at) VALUES (:f, 1, 0)",
        [{"f": f} for f in (13, 14, 15, 16)],
    )
    app.exec("UPDATE face SET verified = :yes WHERE id = 13", yes=True)
    app.exec("DELETE FROM face WHERE id = 14")
    app.exec("UPDATE face SET face_crop_blob = :crop WHERE id = 15", crop=NEW_CROP)
    assert app.ids("face_cluster_member") == {16}


def test_delete_with_foreign_keys_off_removes_vectors_and_failures(
    upgraded_db: Path, store_for: StoreFor
) -> None:
    sqlite_exec(upgraded_db, "UPDATE face SET face_crop_blob = x'00ff' WHERE id = 5")
    embed_pending(store_for(upgraded_db), FakeBackbone())
    assert sqlite_rows(upgraded_db, "SELECT face_id FROM embedding_failure") == [(5,)]
    sqlite_exec(upgraded_db, "DELETE FROM face WHERE id IN (4, 5)", foreign_keys=False)
    ids = {row[0] for row in sqlite_rows(upgraded_db, "SELECT face_id FROM embedding")}
    assert {4, 5}.isdisjoint(ids)
    assert sqlite_rows(upgraded_db, "SELECT face_id FROM embedding_failure") == []


def test_orphans_left_without_triggers_are_swept(embedded: AppDatabase) -> None:
    # Simulate a delete that bypassed the triggers (e.g. made before facestore was installed).
    on_face = " ON face" if embedded.dialect == "postgresql" else ""
    embedded.exec(f"DROP TRIGGER facestore_face_delete{on_face}")
    embedded.exec("DELETE FROM face WHERE id IN (1, 2)")
    assert {1, 2} <= embedded.ids("embedding")
    assert embedded.store().cache.sweep_orphans() == 2
    assert {1, 2}.isdisjoint(embedded.ids("embedding"))


def test_space_of_fake_backbone_is_stable() -> None:
    assert space_of(FakeBackbone()).config_hash == space_of(FakeBackbone()).config_hash
    assert space_of(FakeBackbone(salt=1)).config_hash != space_of(FakeBackbone()).config_hash


def queued(app: AppDatabase) -> dict[int, int]:
    return {int(f): int(p) for f, p in app.rows("SELECT face_id, priority FROM embedding_job")}


def test_the_triggers_queue_new_and_changed_faces_of_the_active_space(
    embedded: AppDatabase,
) -> None:
    app = embedded
    assert queued(app) == {}
    app.exec(
        "INSERT INTO face (id, face_crop_blob, person_id, verified) VALUES (20, :c, 1, :yes)",
        c=NEW_CROP,
        yes=True,
    )
    app.exec(
        "INSERT INTO face (id, face_crop_blob, person_id, verified) VALUES (21, :c, 1, :no)",
        c=NEW_CROP,
        no=False,
    )
    app.exec("UPDATE face SET face_crop_blob = :c WHERE id = 4", c=NEW_CROP)
    assert queued(app) == {20: 0, 21: 1, 4: 0}
    app.exec("UPDATE face SET verified = :yes WHERE id = 21", yes=True)  # to the front
    app.exec("UPDATE face SET verified = :no WHERE id = 5", no=False)
    app.exec("UPDATE face SET verified = :yes WHERE id = 5", yes=True)  # has its vector
    assert queued(app) == {20: 0, 21: 0, 4: 0}

    report = embed_pending(app.store(), FakeBackbone(), kind=QUEUE)
    assert (report.embedded, report.pending) == (3, None)
    assert queued(app) == {} and len(app.ids("embedding")) == 14


def test_queueing_triggers_never_fail_the_apps_conflict_policies(tmp_path: Path) -> None:
    """SQLite lets the outer statement's OR ROLLBACK / OR FAIL override a trigger's own."""
    path = app_db(tmp_path / "app.db", unverified=1)
    app = AppDatabase(f"sqlite:///{path}")
    embed_pending(app.store(), FakeBackbone(), verified=False)
    sqlite_exec(path, "UPDATE face SET face_crop_blob = ? WHERE id = 13", NEW_CROP)
    for sql in (
        "INSERT OR ROLLBACK INTO face (id, face_crop_blob, person_id, verified) "
        "VALUES (30, x'00', 1, 1)",
        "UPDATE OR FAIL face SET verified = 1 WHERE id = 13",
        "INSERT OR ABORT INTO face (id, face_crop_blob, person_id, verified) "
        "VALUES (31, x'00', NULL, 0)",
        "UPDATE OR ROLLBACK face SET face_crop_blob = x'01' WHERE id = 30",
    ):
        sqlite_exec(path, sql)
    assert queued(app) == {13: 0, 30: 0, 31: 1}
    app.close()


def test_a_queue_scan_never_waits_long_on_the_apps_open_transaction(tmp_path: Path) -> None:
    """PostgreSQL: the scan gives up after its 0.5 s lock timeout; the app's write goes on."""
    with app_database("postgresql", tmp_path, unverified=1) as app:
        app.upgrade()
        store = app.store()
        embed_pending(store, FakeBackbone())  # the active space exists; face 13 not queued
        assert queued(app) == {}
        with app.engine.connect() as conn:  # the app, mid-transaction
            conn.exec_driver_sql("BEGIN")
            conn.exec_driver_sql("UPDATE face SET verified = true WHERE id = 13")
            started = time.monotonic()
            assert store.queue.enqueue_pending(SPACE, verified=False) == 0
            waited = time.monotonic() - started
            conn.exec_driver_sql("COMMIT")
        assert 0.4 < waited < 3
        assert queued(app) == {13: 0}

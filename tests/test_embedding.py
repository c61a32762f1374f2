"""The incremental pipeline and the cache, with a fake backbone (beside the point here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facestore import db as database
from facestore.backbones import space_of
from facestore.embedding import embed_pending
from facestore.errors import SpaceMismatchError
from facestore.status import collect_status
from facestore.store import Crop, Store, VectorResult, crop_sha256
from tests.helpers import FakeBackbone, encode, face_image, make_app_db, sqlite_exec, sqlite_rows


def test_embeds_verified_faces_once(tmp_path: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    path = make_app_db(tmp_path / "app.db", unverified=3, corrupt=["empty", "random", "bomb"])
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    store = store_for(path)
    backbone = FakeBackbone()

    first = embed_pending(store, backbone, batch_size=5)
    assert (first.embedded, first.failed, first.pending) == (12, 3, 0)
    second = embed_pending(store, backbone, batch_size=5)
    assert (second.embedded, second.failed, second.pending) == (0, 0, 0)
    # unverified faces (verified=0) are not embedded
    assert sqlite_rows(path, "SELECT count(*) FROM embedding") == [(12,)]


def test_failures_are_not_retried_until_the_crop_changes(tmp_path: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    path = make_app_db(tmp_path / "app.db", corrupt=["text"])
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    store = store_for(path)
    backbone = FakeBackbone()
    assert embed_pending(store, backbone).failed == 1
    calls = backbone.calls
    assert embed_pending(store, backbone).failed == 0
    assert backbone.calls == calls
    [(face_id, attempts, error)] = sqlite_rows(
        path, "SELECT face_id, attempts, error FROM embedding_failure"
    )
    assert (attempts, error) == (1, "not a JPEG, PNG or WebP image")

    sqlite_exec(
        path, "UPDATE face SET face_crop_blob = ? WHERE id = ?", encode(face_image(0, 7)), face_id
    )
    report = embed_pending(store, backbone)
    assert (report.embedded, report.failed) == (1, 0)
    assert sqlite_rows(path, "SELECT count(*) FROM embedding_failure") == [(0,)]


def test_edited_crop_is_embedded_again_from_the_new_bytes(upgraded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    store = store_for(upgraded_db)
    embed_pending(store, FakeBackbone())
    new_crop = encode(face_image(2, 40), "PNG")
    sqlite_exec(upgraded_db, "UPDATE face SET face_crop_blob = ? WHERE id = 1", new_crop)
    assert embed_pending(store, FakeBackbone()).embedded == 1
    assert sqlite_rows(upgraded_db, "SELECT crop_sha256 FROM embedding WHERE face_id = 1") == [
        (crop_sha256(new_crop),)
    ]


def test_a_vector_computed_from_an_old_crop_is_not_written(upgraded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    store = store_for(upgraded_db)
    space = space_of(FakeBackbone())
    [batch] = list(store.iter_pending(space.config_hash, 100))
    old = batch[0]
    sqlite_exec(upgraded_db, "UPDATE face SET face_crop_blob = x'0102' WHERE id = ?", old.face_id)
    outcome = store.write_results(
        space.config_hash,
        [VectorResult(c.face_id, crop_sha256(c.blob), np.ones(512, np.float32)) for c in batch],
        [],
    )
    assert (outcome.embedded, outcome.changed) == (len(batch) - 1, 1)
    assert sqlite_rows(upgraded_db, "SELECT 1 FROM embedding WHERE face_id = ?", old.face_id) == []


def test_finding_changes_reads_no_crop_of_an_unchanged_face(upgraded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    store = store_for(upgraded_db)
    embed_pending(store, FakeBackbone())
    sqlite_exec(
        upgraded_db, "UPDATE face SET face_crop_blob = ? WHERE id = 7", encode(face_image(1, 30))
    )
    space = space_of(FakeBackbone())
    batches = list(store.iter_pending(space.config_hash, 100))
    assert [[c.face_id for c in b] for b in batches] == [[7]]


def test_a_different_space_is_refused(upgraded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    store = store_for(upgraded_db)
    embed_pending(store, FakeBackbone())
    with pytest.raises(SpaceMismatchError, match="run 'facestore reembed'"):
        embed_pending(store, FakeBackbone(salt=1))


@pytest.mark.parametrize("text_ids", [False, True])
def test_person_id_keeps_its_type(tmp_path: Path, store_for, text_ids: bool) -> None:  # type: ignore[no-untyped-def]
    path = make_app_db(tmp_path / "app.db", text_ids=text_ids)
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    store: Store = store_for(path)
    embed_pending(store, FakeBackbone())
    rows = store.training_rows(space_of(FakeBackbone()).config_hash)
    assert len(rows.person_ids) == 12
    assert {type(p) for p in rows.person_ids} == {str if text_ids else int}
    assert rows.vectors.shape == (12, 512)


@pytest.mark.parametrize("with_verified", [True, False])
def test_status_counts(tmp_path: Path, store_for, with_verified: bool) -> None:  # type: ignore[no-untyped-def]
    path = make_app_db(tmp_path / "app.db", with_verified=with_verified, corrupt=["empty"])
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    sqlite_exec(path, "INSERT INTO face (face_crop_blob, person_id) VALUES (x'00', NULL)")
    store = store_for(path)
    before = collect_status(store, None)
    assert before["active_space"] is None and before["pending"] == 13
    embed_pending(store, FakeBackbone())
    after = collect_status(store, None)
    counts = ("faces", "verified", "embedded", "pending", "failed", "stale")
    assert [after[k] for k in counts] == [14, 13, 12, 0, 1, 0]
    assert after["active_space"]["backbone"] == "fake"


def test_iter_pending_pages_by_id(upgraded_db: Path, store_for) -> None:  # type: ignore[no-untyped-def]
    store = store_for(upgraded_db)
    batches = list(store.iter_pending("no-such-space", 5))
    assert [len(b) for b in batches] == [5, 5, 2]
    ids = [c.face_id for b in batches for c in b]
    assert ids == sorted(ids) and len(set(ids)) == 12
    assert all(isinstance(c, Crop) and c.blob for b in batches for c in b)

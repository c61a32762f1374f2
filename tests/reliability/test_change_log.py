"""The change log: every write that can change a training pair names its face, so the
daemon's retrain policy follows the changes instead of reading every face."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from facestore.backbones import space_of
from facestore.daemon.pairs import TrainingPairs
from facestore.daemon.policy import count_changes
from facestore.embedding import embed_pending
from facestore.store import IdRanges
from tests.support.backends import AppDatabase
from tests.support.helpers import FakeBackbone, encode, face_image

MakeApp = Callable[..., AppDatabase]
NEW_CROP = encode(face_image(9, 9), "PNG")
SPACE = space_of(FakeBackbone()).config_hash


@pytest.fixture
def embedded(make_app: MakeApp) -> AppDatabase:
    app = make_app(unverified=2)
    assert embed_pending(app.store(), FakeBackbone()).embedded == 12
    app.exec("DELETE FROM face_change")
    return app


def logged(app: AppDatabase) -> set[int | None]:
    return {r[0] for r in app.rows("SELECT face_id FROM face_change")}


@pytest.mark.parametrize(
    ("sql", "faces"),
    [
        ("UPDATE face SET person_id = 2 WHERE id = 3", {3}),
        ("UPDATE face SET verified = :no WHERE id = 3", {3}),
        ("UPDATE face SET verified = :yes WHERE id = 13", {13}),
        ("UPDATE face SET face_crop_blob = :crop WHERE id = 3", {3}),
        ("UPDATE face SET id = 99 WHERE id = 3", {3, 99}),
        ("DELETE FROM face WHERE id = 3", {3}),
        (
            "INSERT INTO face (id, photo_id, face_crop_blob, person_id) VALUES (50, 1, :crop, 1)",
            {50},
        ),
        ("UPDATE face SET person_id = person_id, face_crop_blob = face_crop_blob", set()),
        ("UPDATE face SET photo_id = photo_id WHERE id = 3", set()),
    ],
    ids=[
        "relabel",
        "unverify",
        "verify",
        "new-crop",
        "new-id",
        "delete",
        "insert",
        "same-values",
        "other-column",
    ],
)
def test_app_writes_that_can_change_a_pair_are_logged(
    embedded: AppDatabase, sql: str, faces: set[int]
) -> None:
    embedded.exec(sql, crop=NEW_CROP, yes=True, no=False)
    assert logged(embedded) == faces


def test_vectors_facestore_stores_are_logged(make_app: MakeApp) -> None:
    app = make_app(unverified=2)
    app.exec("DELETE FROM face_change")
    embed_pending(app.store(), FakeBackbone(), verified=False)
    assert logged(app) == {13, 14}


def test_a_truncated_face_table_logs_every_face(make_app: MakeApp) -> None:
    app = make_app()
    app.exec("DELETE FROM face_change")
    if app.dialect == "postgresql":
        app.exec("TRUNCATE face")
        assert logged(app) == {None}
    else:  # SQLite has no TRUNCATE: a DELETE without WHERE fires the row triggers
        app.exec("DELETE FROM face")
        assert logged(app) == set(range(1, 13))


def test_tracked_pairs_follow_every_kind_of_write_without_reading_all(
    embedded: AppDatabase,
) -> None:
    store = embedded.store()
    pairs = TrainingPairs(store)
    assert pairs.current(SPACE) == store.library.training_pairs(SPACE)
    trained = dict(pairs.current(SPACE))  # the model's
    assert pairs.differences(trained) == 0
    embedded.exec("UPDATE face SET person_id = 2 WHERE id = 1")
    embedded.exec("UPDATE face SET verified = :no WHERE id = 2", no=False)
    embedded.exec("DELETE FROM face WHERE id = 3")
    embedded.exec("UPDATE face SET face_crop_blob = :crop WHERE id = 4", crop=NEW_CROP)
    embedded.exec("UPDATE face SET verified = :yes WHERE id = 13", yes=True)
    embedded.exec(
        "INSERT INTO face (id, photo_id, face_crop_blob, person_id) VALUES (50, 1, :crop, 1)",
        crop=NEW_CROP,
    )
    embedded.exec("UPDATE face SET verified = :yes WHERE id = 50", yes=True)
    assert pairs.current(SPACE) == store.library.training_pairs(SPACE)
    assert pairs.differences(trained) == count_changes(trained, pairs.current(SPACE)) == 4
    embed_pending(store, FakeBackbone())  # 4, 13 and 50 get vectors: new pairs
    current = pairs.current(SPACE)
    assert current == store.library.training_pairs(SPACE)
    assert {1, 4, 13, 50} <= current.keys() and not {2, 3} & current.keys()
    assert current[1] == 2
    assert pairs.differences(trained) == count_changes(trained, current) == 5  # 4 is back
    embedded.exec("UPDATE face SET person_id = 0 WHERE id = 1")  # back to the model's label
    assert pairs.current(SPACE)[1] == 0 and pairs.differences(trained) == 4
    assert pairs.full_reads == 1


def test_a_reader_behind_a_pruned_log_or_too_many_changes_reads_everything(
    embedded: AppDatabase,
) -> None:
    store = embedded.store()
    pairs = TrainingPairs(store, max_changes=3)
    pairs.current(SPACE)
    embedded.exec("UPDATE face SET person_id = 2 WHERE id IN (1, 2, 3, 5)")  # 4 > 3 changes
    assert pairs.current(SPACE)[5] == 2 and pairs.full_reads == 2
    for face_id in (6, 7, 8):
        embedded.exec("UPDATE face SET person_id = 2 WHERE id = :id", id=face_id)
    assert store.changes.prune(keep=1) == 6  # the 4 + 3 rows but the last
    assert logged(embedded) == {8}
    assert pairs.current(SPACE)[7] == 2 and pairs.full_reads == 3  # 6 was pruned unread
    assert pairs.current(SPACE) == store.library.training_pairs(SPACE)
    assert store.changes.prune(keep=1) == 0  # not before a tenth more than it keeps


def test_the_rolling_recheck_catches_a_change_the_log_reader_passed_over(
    embedded: AppDatabase,
) -> None:
    """What a PostgreSQL transaction that commits its log row late looks like to a reader."""
    store = embedded.store()
    pairs = TrainingPairs(store)
    trained = dict(pairs.current(SPACE))
    assert pairs.differences(trained) == 0
    embedded.exec("UPDATE face SET person_id = 2 WHERE id = 1")
    embedded.exec("DELETE FROM face WHERE id = 9")
    embedded.exec("DELETE FROM face_change")
    assert pairs.current(SPACE)[1] == 0 and 9 in pairs.current(SPACE)  # not seen
    pairs.recheck(SPACE, IdRanges(((5, 10),)))
    assert 9 not in pairs.current(SPACE) and pairs.current(SPACE)[1] == 0  # outside the slice
    pairs.recheck(SPACE, IdRanges(((0, 5), (10, None))))
    assert pairs.current(SPACE) == store.library.training_pairs(SPACE)
    assert pairs.differences(trained) == 2  # 1 relabelled, 9 gone
    assert pairs.full_reads == 1


def test_embed_keeps_the_log_bounded_where_no_daemon_runs(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facestore.store import changes

    monkeypatch.setattr(changes, "KEEP_CHANGES", 5)
    app = make_app()
    embed_pending(app.store(), FakeBackbone())  # 12 inserted + 12 embedded: 24 rows
    embed_pending(app.store(), FakeBackbone())
    assert len(app.rows("SELECT seq FROM face_change")) == 5

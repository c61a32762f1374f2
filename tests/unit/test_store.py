"""The store's own contracts: one transaction API, the lease owner's format, typed counts."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from facestore.backbones import Space, space_of
from facestore.embedding import embed_pending
from facestore.store import (
    CacheCounts,
    LeaseOwner,
    QueueCounts,
    SpaceSummary,
    encode_vector,
    library,
    records,
)
from facestore.store.records import VectorMatrix
from tests.support.helpers import FakeBackbone
from tests.support.types import MakeApp

FAKE_SPACE = space_of(FakeBackbone()).config_hash

SPACE = Space("synthetic", "s" * 64, {})


def test_a_nested_transaction_commits_with_the_outer_one(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    with pytest.raises(RuntimeError), store.transaction():
        store.spaces.activate(SPACE)  # its own transaction() nests as a savepoint
        raise RuntimeError("the outer transaction fails")
    assert store.spaces.active() is None  # rolled back with the outer one
    with store.transaction():
        store.spaces.activate(SPACE)
    assert store.spaces.active() == SPACE


def test_a_failed_savepoint_leaves_the_outer_transaction_usable(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    with store.transaction() as conn:
        with pytest.raises(sa.exc.IntegrityError), store.transaction() as inner:
            inner.execute(sa.text("INSERT INTO embedding_space (config_hash) VALUES (NULL)"))
        store.spaces.record(SPACE)
        assert conn is not None
    assert [s.config_hash for s in store.spaces.summaries()] == [SPACE.config_hash]


def test_the_lease_owner_is_built_and_parsed_in_one_place() -> None:
    owner = LeaseOwner.new("host-a/4026531836")
    assert LeaseOwner.parse(str(owner)) == owner
    assert str(owner).startswith("host-a/4026531836:")
    assert LeaseOwner.parse("no pid here") is None


def test_counts_and_summaries_are_typed(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    store.spaces.activate(SPACE)
    counts = store.library.counts(SPACE.config_hash)
    assert isinstance(counts, CacheCounts) and counts.pending == counts.verified == 12
    assert store.queue.count_queued(SPACE.config_hash) == QueueCounts(queued=0, leased=0)
    [summary] = store.spaces.summaries()
    assert isinstance(summary, SpaceSummary) and summary.active and summary.missing == 12
    assert summary.as_json()["config_hash"] == SPACE.config_hash


def test_vector_matrix_fills_one_matrix_grows_past_its_estimate_and_gives_back_the_rest() -> None:

    rows = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    blobs = [encode_vector(r) for r in rows]
    for capacity in (2, 7, 50):  # below, at and above the real count
        matrix = VectorMatrix(capacity)
        for start in range(0, 7, 3):
            matrix.extend(blobs[start : start + 3])
        result = matrix.finish()
        assert result.dtype == np.float32 and result.flags.owndata
        assert np.array_equal(result, rows)
    assert VectorMatrix(5).finish().shape == (0, 0)


def test_a_float16_vector_matrix_turns_float32_for_a_vector_float16_cannot_hold() -> None:
    rows = np.array([[0.1, -0.25, 3.0], [1.0, 2.0, -7.5]], dtype=np.float32)
    half = VectorMatrix(4, np.float16)
    half.extend([encode_vector(r) for r in rows])
    result = half.finish()
    assert result.dtype == np.float16 and np.array_equal(result, rows.astype(np.float16))
    huge = np.array([1e5, 0.1, 0.0], dtype=np.float32)  # float16 ends at 65,504
    half.extend([encode_vector(huge)])
    result = half.finish()
    assert result.dtype == np.float32
    assert np.array_equal(result, np.vstack([rows.astype(np.float16), huge]))


def test_training_rows_read_in_chunks_are_the_rows(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(library, "TRAINING_READ_CHUNK", 5)
    app = make_app(unverified=2)
    store = app.store()
    embed_pending(store, FakeBackbone())
    embed_pending(store, FakeBackbone(), verified=False)
    rows = store.library.training_rows(FAKE_SPACE)
    assert rows.face_ids == list(range(1, 13))  # verified only, in id order
    assert rows.vectors.shape == (12, FakeBackbone().dim)
    stored = store.library.vectors_of(FAKE_SPACE, rows.face_ids)
    expected = np.stack([np.frombuffer(stored[f], dtype="<f4") for f in rows.face_ids])
    assert np.array_equal(rows.vectors, expected)
    half = store.library.training_rows(FAKE_SPACE, np.float16)
    assert half.vectors.dtype == np.float16
    assert np.array_equal(half.vectors, expected.astype(np.float16))


def test_long_id_lists_are_sent_in_chunks(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg binds at most 65,535 parameters (100k suggestions failed at 1M faces)."""
    monkeypatch.setattr(records, "ID_CHUNK", 2)
    app = make_app(unverified=5)
    store = app.store()
    embed_pending(store, FakeBackbone(), verified=False)
    space = FAKE_SPACE
    unverified = [13, 14, 15, 16, 17]
    app.exec("UPDATE face SET verified = :yes WHERE id = 16", yes=True)
    written = store.suggestions.write("v1", [], [(f, 1, 0.5) for f in [*unverified, 99]])
    assert written == 4  # 16 is verified now, 99 is no face
    assert app.ids("face_suggestion") == {13, 14, 15, 17}
    store.suggestions.write("v1", [13, 14, 15], [(14, 2, 0.5)])
    assert app.ids("face_suggestion") == {14, 17}
    assert set(store.library.vectors_of(space, unverified)) == set(unverified)
    assert store.clusters.still_unknown(space, unverified) == {13, 15}  # no suggestion


def test_the_queue_depth_has_the_active_space_even_when_nothing_is_queued(
    make_app: MakeApp,
) -> None:
    app = make_app()
    store = app.store()
    assert list(store.queue.depth_by_space()) == []  # no space yet
    store.spaces.activate(SPACE)
    label = f"synthetic/{'s' * 12}"
    assert list(store.queue.depth_by_space()) == [(label, 0, 0)]
    store.queue.enqueue_pending(SPACE.config_hash)
    store.queue.claim(SPACE.config_hash, 5, "host:1:x", 60.0, True)
    assert list(store.queue.depth_by_space()) == [(label, 12, 5)]

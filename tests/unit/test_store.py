"""The store's own contracts: one transaction API, the lease owner's format, typed counts."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from facestore.backbones import Space
from facestore.store import CacheCounts, LeaseOwner, QueueCounts, SpaceSummary
from tests.support.types import MakeApp

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

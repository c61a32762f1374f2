"""The incremental pipeline, the cache and the work queue, on SQLite and PostgreSQL.

A fake backbone: the backbone is beside the point here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
import pytest

from facestore.backbones import space_of
from facestore.embed_batch import Chunker
from facestore.embedding import claimed_batches, embed_pending
from facestore.errors import SpaceMismatchError
from facestore.status import collect_status
from facestore.store import Crop, Store, VectorResult, crop_sha256, worker_host
from tests.support.backends import AppDatabase
from tests.support.helpers import FakeBackbone, encode, face_image
from tests.support.processes import wait_for

MakeApp = Callable[..., AppDatabase]
SPACE = space_of(FakeBackbone()).config_hash


def test_embeds_verified_faces_once(make_app: MakeApp) -> None:
    app = make_app(unverified=3, corrupt=["empty", "random", "bomb"])
    store = app.store()
    backbone = FakeBackbone()

    first = embed_pending(store, backbone, batch_size=5)
    assert (first.embedded, first.failed, first.pending) == (12, 3, 0)
    second = embed_pending(store, backbone, batch_size=5)
    assert (second.embedded, second.failed, second.pending) == (0, 0, 0)
    # unverified faces (verified false) are not embedded; the queue is empty again
    assert app.rows("SELECT count(*) FROM embedding") == [(12,)]
    assert app.rows("SELECT count(*) FROM embedding_job") == [(0,)]


def test_failures_are_not_retried_until_the_crop_changes(make_app: MakeApp) -> None:
    app = make_app(corrupt=["text"])
    store = app.store()
    backbone = FakeBackbone()
    assert embed_pending(store, backbone).failed == 1
    calls = backbone.calls
    assert embed_pending(store, backbone).failed == 0
    assert backbone.calls == calls
    [(face_id, attempts, error)] = app.rows(
        "SELECT face_id, attempts, error FROM embedding_failure"
    )
    assert (attempts, error) == (1, "not a JPEG, PNG or WebP image")

    app.exec(
        "UPDATE face SET face_crop_blob = :crop WHERE id = :id",
        crop=encode(face_image(0, 7)),
        id=face_id,
    )
    report = embed_pending(store, backbone)
    assert (report.embedded, report.failed) == (1, 0)
    assert app.rows("SELECT count(*) FROM embedding_failure") == [(0,)]


def test_edited_crop_is_embedded_again_from_the_new_bytes(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    embed_pending(store, FakeBackbone())
    new_crop = encode(face_image(2, 40), "PNG")
    app.exec("UPDATE face SET face_crop_blob = :crop WHERE id = 1", crop=new_crop)
    assert embed_pending(store, FakeBackbone()).embedded == 1
    assert app.rows("SELECT crop_sha256 FROM embedding WHERE face_id = 1") == [
        (crop_sha256(new_crop),)
    ]


def claim_all(store: Store, owner: str, lease: float = 60, limit: int = 100) -> list[Crop]:
    store.queue.enqueue_pending(SPACE)
    return store.queue.claim(SPACE, limit, owner, lease)


def ones(batch: list[Crop]) -> list[VectorResult]:
    return [VectorResult(c.face_id, crop_sha256(c.blob), np.ones(512, np.float32)) for c in batch]


def test_a_vector_computed_from_an_old_crop_is_not_written(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    batch = claim_all(store, "me")
    old = batch[0]
    app.exec("UPDATE face SET face_crop_blob = :b WHERE id = :id", b=b"\x01\x02", id=old.face_id)
    outcome = store.cache.write_results(SPACE, ones(batch), [], "me")
    assert (outcome.embedded, outcome.changed) == (len(batch) - 1, 1)
    assert app.rows("SELECT 1 FROM embedding WHERE face_id = :id", id=old.face_id) == []
    # the changed face is queued again and embedded from its new bytes
    assert [c.face_id for c in claim_all(store, "me")] == [old.face_id]


def test_finding_changes_reads_no_crop_of_an_unchanged_face(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    embed_pending(store, FakeBackbone())
    app.exec("UPDATE face SET face_crop_blob = :b WHERE id = 7", b=encode(face_image(1, 30)))
    batches = list(claimed_batches(store, SPACE, 100, "me", 60))
    assert [[c.face_id for c in b] for b in batches] == [[7]]


def test_claims_page_by_id_and_never_overlap(make_app: MakeApp) -> None:
    app = make_app()
    one, two = app.store(), app.store()  # two workers, two engines
    one.queue.enqueue_pending(SPACE)
    got = [one.queue.claim(SPACE, 5, "one", 60), two.queue.claim(SPACE, 5, "two", 60)]
    got.append(one.queue.claim(SPACE, 5, "one", 60))
    assert [len(b) for b in got] == [5, 5, 2]
    ids = [c.face_id for b in got for c in b]
    assert ids == sorted(ids) and len(set(ids)) == 12
    assert all(isinstance(c, Crop) and c.blob for b in got for c in b)
    assert two.queue.claim(SPACE, 5, "two", 60) == []  # all leased
    owners = dict(app.rows("SELECT face_id, lease_owner FROM embedding_job"))
    assert {owners[c.face_id] for c in got[1]} == {"two"}


def test_an_expired_lease_is_claimed_again_and_the_late_write_is_dropped(
    make_app: MakeApp,
) -> None:
    app = make_app()
    slow, other = app.store(), app.store()
    batch = claim_all(slow, "elsewhere:1:slow", lease=2)
    assert len(batch) == 12 and other.queue.claim(SPACE, 100, "other", 60) == []
    taken: list[Crop] = []
    wait_for(
        lambda: bool(taken.extend(other.queue.claim(SPACE, 100, "other", 60)) or taken),
        10,
        "expiry",
    )
    assert [c.face_id for c in taken] == [c.face_id for c in batch]
    late = slow.cache.write_results(SPACE, ones(batch), [], "elsewhere:1:slow")
    assert (late.embedded, late.changed) == (0, 12)
    assert app.rows("SELECT count(*) FROM embedding") == [(0,)]
    assert other.cache.write_results(SPACE, ones(taken), [], "other").embedded == 12
    assert app.rows("SELECT count(*) FROM embedding_job") == [(0,)]


def test_leases_of_a_dead_worker_on_this_host_are_freed_at_once(make_app: MakeApp) -> None:
    app = make_app()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    owner = f"{worker_host()}:{int(dead.stdout)}:x"
    assert len(claim_all(app.store(), owner, lease=3600)) == 12
    alive = f"{worker_host()}:{os.getpid()}:y"
    assert claim_all(app.store(), alive) == []  # a live owner's lease is respected
    batches = list(claimed_batches(app.store(), SPACE, 100, "next", 60))
    assert sum(len(b) for b in batches) == 12


def test_a_stopped_run_gives_its_leases_back(make_app: MakeApp) -> None:
    app = make_app()
    store = app.store()
    backbone = FakeBackbone()
    real = backbone.embed_images

    def embed_then_fail(images):  # type: ignore[no-untyped-def]
        real(images)
        raise RuntimeError("GPU fell off")

    backbone.embed_images = embed_then_fail  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="GPU fell off"):
        embed_pending(store, backbone, batch_size=4)
    assert app.rows("SELECT count(*) FROM embedding_job WHERE lease_owner IS NOT NULL") == [(0,)]
    assert embed_pending(app.store(), FakeBackbone()).embedded == 12


def test_a_stop_is_seen_between_chunks_of_a_batch(make_app: MakeApp) -> None:
    """SIGTERM mid-batch: the batch is abandoned after the model chunk in progress, its
    faces go back to the queue, and the next run embeds them."""
    app = make_app()
    stop = threading.Event()
    backbone = FakeBackbone()
    real = backbone.embed_images
    chunks: list[int] = []

    def embed_then_stop(images):  # type: ignore[no-untyped-def]
        chunks.append(len(images))
        stop.set()  # the signal arrives while the model works on the first chunk
        return real(images)

    backbone.embed_images = embed_then_stop  # type: ignore[method-assign]
    report = embed_pending(app.store(), backbone, batch_size=12, stop=stop)
    assert chunks == [8] and report.embedded == 0  # 8 of the 12: the first chunk only
    assert app.ids("embedding") == set()
    assert app.rows("SELECT count(*) FROM embedding_job WHERE lease_owner IS NOT NULL") == [(0,)]
    assert embed_pending(app.store(), FakeBackbone()).embedded == 12


def test_a_deadline_ends_the_run_after_the_batch_in_progress(make_app: MakeApp) -> None:
    app = make_app()
    report = embed_pending(app.store(), FakeBackbone(), batch_size=5, deadline=0.0)
    assert (report.embedded, report.more) == (5, True)
    rest = embed_pending(app.store(), FakeBackbone(), batch_size=5)
    assert (rest.embedded, rest.more, rest.pending) == (7, False, 0)


def test_a_different_space_is_refused(make_app: MakeApp) -> None:
    store = make_app().store()
    embed_pending(store, FakeBackbone())
    with pytest.raises(SpaceMismatchError, match="run 'facestore reembed'"):
        embed_pending(store, FakeBackbone(salt=1))


@pytest.mark.parametrize("text_ids", [False, True])
def test_person_id_keeps_its_type(make_app: MakeApp, text_ids: bool) -> None:
    store = make_app(text_ids=text_ids).store()
    embed_pending(store, FakeBackbone())
    rows = store.library.training_rows(SPACE)
    assert len(rows.person_ids) == 12
    assert {type(p) for p in rows.person_ids} == {str if text_ids else int}
    assert rows.vectors.shape == (12, 512)


@pytest.mark.parametrize("with_verified", [True, False])
def test_status_counts(make_app: MakeApp, with_verified: bool) -> None:
    app = make_app(with_verified=with_verified, corrupt=["empty"])
    app.exec("INSERT INTO face (face_crop_blob, person_id) VALUES (:b, NULL)", b=b"\x00")
    store = app.store()
    before = collect_status(store, None)
    assert before["active_space"] is None and before["pending"] == 13
    embed_pending(store, FakeBackbone())
    after = collect_status(store, None)
    counts = ("faces", "verified", "embedded", "pending", "failed", "stale")
    assert [after[k] for k in counts] == [14, 13, 12, 0, 1, 0]
    assert after["active_space"]["backbone"] == "fake"


def test_concurrent_claimers_take_every_face_exactly_once(make_app: MakeApp) -> None:
    app = make_app(people=10, per_person=20)
    app.store().queue.enqueue_pending(SPACE)
    taken: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        store = app.store()
        mine = taken.setdefault(name, [])
        while batch := store.queue.claim(SPACE, 3, name, 60):
            mine += [c.face_id for c in batch]

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [face_id for ids in taken.values() for face_id in ids]
    assert sorted(every) == list(range(1, 201))  # none twice, none missed
    assert sum(1 for ids in taken.values() if ids) > 1  # they really shared the work


def test_chunk_sizes_double_halve_and_stay_few() -> None:
    """Chunk sizes are FIRST_CHUNK times powers of two: few batch shapes for the model."""
    chunker = Chunker(32)
    assert chunker.size == 8
    assert chunker.next_size(fits=100.0) == 16  # one doubling at a time
    chunker.size = 16
    assert chunker.next_size(fits=20.0) == 16  # twice would not fit
    assert chunker.next_size(fits=5.0) == 4  # halved until it fits
    chunker.size = 32
    assert chunker.next_size(fits=1000.0) == 32  # never beyond the batch
    assert chunker.next_size(fits=0.1) == 1

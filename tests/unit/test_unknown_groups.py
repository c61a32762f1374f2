"""Clusters of unknown faces in the database: the daemon groups them, a new face joins
or founds a cluster in the next reconcile, a named face leaves, `facestore clusters`
lists them and --rebuild keeps the ids. The fake backbone: identical crops give
identical vectors, which is all these checks need."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facestore import db as database
from facestore import grouping, unknown_groups
from facestore.daemon import grouper
from facestore.daemon.loop import Daemon
from facestore.daemon.options import WatchOptions
from facestore.embedding import embed_pending
from facestore.store import Store
from facestore.unknown_groups import cluster_params, recluster
from tests.support.backends import AppDatabase
from tests.support.helpers import (
    FakeBackbone,
    KeyedBackbone,
    encode,
    face_image,
    keyed_crop,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.processes import wait_for
from tests.support.types import Cli
from tests.unit.test_daemon import FakeClock, make_daemon

MakeApp = Callable[..., AppDatabase]
CROPS = {
    name: encode(face_image(person, 0)) for name, person in zip("ABCD", (7, 8, 9, 5), strict=True)
}


def add_unverified(db: Path, name: str, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        sqlite_exec(
            db,
            "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, NULL, 0)",
            CROPS[name],
        )
        ids.append(sqlite_rows(db, "SELECT max(id) FROM face")[0][0])
    return ids


def clusters_of(db: Path) -> dict[int, set[int]]:
    found: dict[int, set[int]] = {}
    for cluster_id, face_id in sqlite_rows(
        db, "SELECT cluster_id, face_id FROM face_cluster_member"
    ):
        found.setdefault(cluster_id, set()).add(face_id)
    return found


@pytest.mark.parametrize("waiting", ["exact", "indexed"])
def test_the_daemon_keeps_clusters_of_unknown_faces(
    tmp_path: Path, cli: Cli, waiting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if waiting == "indexed":  # the waiting faces in faiss's inverted file, as in a large library
        monkeypatch.setattr(grouper, "EXACT_LIMIT", 0)
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a, b, c = add_unverified(db, "A", 3), add_unverified(db, "B", 3), add_unverified(db, "C", 1)
    apps_rows = sqlite_rows(db, "SELECT id, person_id, verified FROM face ORDER BY id")
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False, cluster_distance=0.05)
    daemon.reconcile()  # no model: every unverified face is unknown
    first = clusters_of(db)
    assert sorted(first.values(), key=min) == [set(a), set(b)]  # the loner is in none
    id_a = next(cid for cid, faces in first.items() if faces == set(a))

    more_a = add_unverified(db, "A", 2)
    d = add_unverified(db, "D", 2)
    daemon.reconcile()  # joins, without a full re-cluster; two faces found no cluster
    second = clusters_of(db)
    assert second[id_a] == set(a + more_a)
    assert set().union(*second.values()).isdisjoint(d + c)
    assert sqlite_rows(db, "SELECT size FROM face_cluster WHERE cluster_id = ?", id_a) == [(5,)]
    d += add_unverified(db, "D", 1)
    daemon.reconcile()  # a third face of D: the waiting two and it found one
    second = clusters_of(db)
    assert set(d) in second.values() and c[0] not in set().union(*second.values())

    sqlite_exec(db, "UPDATE face SET person_id = 2, verified = 1 WHERE id = ?", a[0])
    assert a[0] not in clusters_of(db)[id_a]  # named: it leaves its cluster (trigger)
    assert sqlite_rows(
        db, "SELECT id, person_id, verified FROM face WHERE id != ? ORDER BY id", a[0]
    ) == [r for r in apps_rows if r[0] != a[0]] + [
        (f, None, 0) for f in more_a + d
    ]  # facestore changed no name

    listed = json.loads(cli("--db", db, "clusters", "--json").stdout)
    assert [row["size"] for row in listed] == [4, 3, 3]
    assert listed[0]["cluster_id"] == id_a and listed[0]["representative_face_id"] in a + more_a
    rebuilt = json.loads(
        cli("--db", db, "clusters", "--rebuild", "--cluster-distance", "0.05", "--json").stdout
    )
    assert rebuilt["rebuild"]["clusters"] == 3 and rebuilt["rebuild"]["distance_from"] == "given"
    assert {row["cluster_id"] for row in rebuilt["clusters"]} == set(second)  # ids kept
    assert cli("--db", db, "clusters", "--min-size", "4").stdout.count("cluster ") == 1


def test_without_a_known_distance_the_daemon_says_so_and_goes_on(tmp_path: Path) -> None:
    db = make_app_db(tmp_path / "app.db", people=1, per_person=2)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    add_unverified(db, "A", 2)
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False)
    daemon.reconcile()
    daemon.reconcile()
    assert clusters_of(db) == {}
    assert sqlite_rows(db, "SELECT count(*) FROM embedding") == [(4,)]
    assert WatchOptions().clusters


@pytest.mark.parametrize("path", ["exact", "indexed"])
def test_a_rebuild_on_both_databases_keeps_ids_and_names(
    make_app: MakeApp, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "indexed":  # as above 20,000 faces: float16 vectors, faiss's neighbours
        monkeypatch.setattr(unknown_groups, "EXACT_LIMIT", 0)
        monkeypatch.setattr(grouping, "EXACT_LIMIT", 0)
    app = make_app(people=2, per_person=3)
    rows = [{"crop": CROPS[name], "no": False} for name in "AAABBBC"]
    app.exec_many(
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
        "VALUES (1, :crop, NULL, :no)",
        rows,
    )
    store = app.store()
    embed_pending(store, FakeBackbone(), verified=False)
    space = store.spaces.active()
    assert space is not None
    before = app.rows("SELECT id, person_id, verified FROM face ORDER BY id")
    params, source = cluster_params(store, space, distance=0.05)
    first = recluster(store, space, params, source)
    assert (first.unknown, first.clustered, first.clusters) == (7, 6, 2)
    ids = store.clusters.members(space.config_hash)
    again = recluster(store, space, params, source)
    assert again.clusters == 2 and store.clusters.members(space.config_hash) == ids
    assert app.rows("SELECT id, person_id, verified FROM face ORDER BY id") == before


def test_the_distance_is_calibrated_on_a_sample_above_the_cap(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facestore import grouping

    store = make_app(people=4, per_person=5).store()  # 20 verified faces
    embed_pending(store, FakeBackbone())
    space = store.spaces.active()
    assert space is not None
    monkeypatch.setattr(grouping, "CALIBRATION_FACES", 10)
    monkeypatch.setattr(grouping, "CALIBRATION_PEOPLE", 3)
    monkeypatch.setattr(grouping, "CALIBRATION_PER_PERSON", 2)
    seen: list[list[object]] = []

    def calibrate(vectors: object, people: list[object]) -> grouping.Calibration:
        seen.append(people)
        return grouping.Calibration(0.07, 0.05, "empirical quantile", 6, 3)

    monkeypatch.setattr(unknown_groups, "calibrate", calibrate)
    params, source = cluster_params(store, space)
    assert (params.distance, params.link) == (0.07, 0.05)
    assert source == "calibrated on 6 verified faces (a sample of the 20) of 3 people; link 0.050"
    assert sorted(Counter(map(str, seen[0])).values()) == [2, 2, 2]


@pytest.mark.parametrize("with_model", [False, True])
def test_a_woken_pass_reads_only_the_new_faces(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, with_model: bool
) -> None:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a, b = add_unverified(db, "A", 3), add_unverified(db, "B", 3)
    # with a model that accepts nobody, every unverified face is unknown too (the fake
    # backbone's vectors of other people look like no face to the quality gate: off)
    daemon = make_daemon(
        db,
        tmp_path,
        FakeClock(),
        retrain=with_model,
        min_confidence=1.01,
        min_quality=0.0,
        cluster_distance=0.05,
    )
    daemon.reconcile()
    assert (daemon.predictor is not None) == with_model
    assert sorted(clusters_of(db).values(), key=min) == [set(a), set(b)]

    def whole_library(*args: object, **kwargs: object) -> None:
        raise AssertionError("a woken pass read every unknown face")

    reads_ids = daemon.store.suggestions.unverified_vectors
    monkeypatch.setattr(daemon.store.clusters, "unknown_vectors", whole_library)
    monkeypatch.setattr(daemon.store.clusters, "members", whole_library)
    monkeypatch.setattr(
        daemon.store.suggestions,
        "unverified_vectors",
        lambda space, face_ids=None, ids=None: (
            reads_ids(space, face_ids, ids) if face_ids is not None else whole_library()
        ),
    )
    more_a, d, c = (
        add_unverified(db, "A", 1),
        add_unverified(db, "D", 3),
        add_unverified(db, "C", 1),
    )
    daemon.reconcile(scan=False)  # woken by the change: the queue only
    now = clusters_of(db)
    id_a = next(cid for cid, faces in now.items() if set(a) <= faces)
    assert now[id_a] == set(a + more_a) and set(d) in now.values()
    assert c[0] not in set().union(*now.values())
    monkeypatch.undo()

    # a rebuild elsewhere with min size 4 drops D's three; the daemon reads that back,
    # and a fourth D face founds a cluster that exists
    cli(
        "--db", db, "clusters", "--rebuild", "--cluster-distance", "0.05", "--cluster-min-size", "4"
    )
    assert set(d) not in clusters_of(db).values()
    fourth = add_unverified(db, "D", 1)
    daemon.reconcile(scan=False)
    assert set(d + fourth) in clusters_of(db).values()
    assert sqlite_rows(
        db,
        "SELECT count(*) FROM face_cluster_member m "
        "WHERE NOT EXISTS (SELECT 1 FROM face_cluster c WHERE c.cluster_id = m.cluster_id)",
    ) == [(0,)]


def people_in_poses(seed: int) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """key -> vector, key -> person: 6 people, 3 poses each, 4 faces a pose, and 4 people
    seen once (dim 32). A person's poses are further apart than their faces, so the
    order faces arrive in decides what the joins alone make of them."""
    rng = np.random.default_rng(seed)
    vectors: dict[int, np.ndarray] = {}
    person_of: dict[int, int] = {}
    key = 1
    for person in range(10):
        centre = rng.normal(size=32)
        poses = 3 if person < 6 else 1
        for _ in range(poses):
            pose = centre + 0.3 * rng.normal(size=32)
            for _ in range(4 if person < 6 else 1):
                vectors[key] = (pose + 0.15 * rng.normal(size=32)).astype(np.float32)
                person_of[key] = person
                key += 1
    return vectors, person_of


def partition(groups: dict[int, set[int]]) -> set[frozenset[int]]:
    return {frozenset(faces) for faces in groups.values()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_daemons_groups_end_as_a_full_rebuild_whatever_the_order(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, person_of = people_in_poses(seed)
    keys = list(vectors)
    np.random.default_rng(seed).shuffle(keys)

    def arrive(name: str, spacing: float) -> tuple[dict[int, set[int]], Daemon, dict[int, int]]:
        monkeypatch.setattr(grouper, "RECLUSTER_SPACING", spacing)
        (tmp_path / name).mkdir()
        db = make_app_db(tmp_path / name / "app.db", people=0)
        database.upgrade(database.create_engine(f"sqlite:///{db}"))
        clock = FakeClock()
        daemon = Daemon(
            Store(database.create_engine(f"sqlite:///{db}")),
            db.parent / "model",
            # pairs may found clusters: more foundings for the full passes to undo
            WatchOptions(retrain=False, cluster_distance=0.12, cluster_min_size=2),
            KeyedBackbone(vectors),
            clock=clock,
        )
        daemon.reconcile()  # as `run()` starts: a timer pass
        face_of: dict[int, int] = {}
        for start in range(0, len(keys), 5):  # the app adds a few faces at a time
            for key in keys[start : start + 5]:
                sqlite_exec(
                    db,
                    "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
                    "VALUES (1, ?, NULL, 0)",
                    keyed_crop(key),
                )
                face_of[sqlite_rows(db, "SELECT max(id) FROM face")[0][0]] = key
            daemon.reconcile(scan=False)  # woken by the change
            clock.now += 60
        daemon.reconcile()  # the timer's pass: nothing new
        return clusters_of(db), daemon, face_of

    joins_only, _, _ = arrive("a", float("inf"))
    daemon_groups, daemon, face_of = arrive("b", 10.0)
    assert daemon.grouper.full_passes >= 2  # at start, and after arrivals

    db = tmp_path / "b" / "app.db"
    store = Store(database.create_engine(f"sqlite:///{db}"))
    space = store.spaces.active()
    assert space is not None
    recluster(store, space, *cluster_params(store, space, distance=0.12, min_size=2))
    rebuilt = clusters_of(db)
    assert rebuilt == daemon_groups  # the same groups, and the same ids
    for faces in rebuilt.values():  # pure, and nobody seen once is in a group
        assert len({person_of[face_of[f]] for f in faces}) == 1
        assert all(person_of[face_of[f]] < 6 for f in faces)
    assert partition(joins_only) != partition(daemon_groups)  # joins alone fall short


def test_a_merge_keeps_the_larger_clusters_id_and_the_app_can_follow_the_other(
    make_app: MakeApp,
) -> None:
    rng = np.random.default_rng(7)
    centre = rng.normal(size=16)
    near, far = centre + 0.2 * rng.normal(size=16), centre + 0.2 * rng.normal(size=16)
    vectors = {k: (near if k <= 5 else far) + 0.05 * rng.normal(size=16) for k in range(1, 9)}
    app = make_app(people=0)
    app.exec_many(
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
        "VALUES (1, :crop, NULL, :no)",
        [{"crop": keyed_crop(k), "no": False} for k in vectors],
    )
    store = app.store()
    embed_pending(store, KeyedBackbone(vectors), verified=False)
    space = store.spaces.active()
    assert space is not None
    units = {k: v / np.linalg.norm(v) for k, v in vectors.items()}
    apart = 1.0 - float(np.mean([units[a] @ units[b] for a in range(1, 6) for b in range(6, 9)]))
    recluster(store, space, *cluster_params(store, space, distance=apart * 0.8))
    before = store.clusters.members(space.config_hash)
    assert sorted(map(len, before.values())) == [3, 5]
    larger = next(cid for cid, faces in before.items() if len(faces) == 5)
    smaller = next(cid for cid in before if cid != larger)

    recluster(store, space, *cluster_params(store, space, distance=apart * 1.2))
    after = store.clusters.members(space.config_hash)
    assert list(after) == [larger] and len(after[larger]) == 8
    assert store.clusters.absorbed() == {smaller: larger}
    assert store.clusters.follow(smaller) == larger and store.clusters.follow(larger) == larger
    assert store.clusters.listing()[0].absorbed == [smaller]
    assert store.clusters.next_id() > max(larger, smaller)  # an absorbed id is never reused


def test_a_large_librarys_full_pass_runs_in_a_child_beside_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full pass in a child process (as above CHILD_ABOVE faces): the daemon goes on,
    faces that come meanwhile wait for the new groups and then join them, and the
    groups end as a rebuild's."""
    monkeypatch.setattr(grouper, "CHILD_ABOVE", 0)
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a, b = add_unverified(db, "A", 3), add_unverified(db, "B", 3)
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False, cluster_distance=0.05)
    daemon.reconcile()
    groups = daemon.grouper
    assert groups.full_pass is not None and groups.full_pass.running
    more_a = add_unverified(db, "A", 2)
    daemon.reconcile(scan=False)  # embeds them; they wait while the pass runs
    wait_for(
        lambda: daemon.reconcile(scan=False) is not None and groups.full_passes == 1,
        timeout=120,
        what="the child's full pass to end",
    )
    assert not groups.full_pass.running and groups.progress is None
    assert sorted(clusters_of(db).values(), key=min) == [set(a + more_a), set(b)]

    # a second pass: taken back with the vectors the daemon holds, faces moving between
    # the groups and the waiting ones
    c, more_b = add_unverified(db, "C", 3), add_unverified(db, "B", 1)
    daemon.reconcile(scan=False)
    space = daemon.space
    assert space is not None
    groups.update(space, full=True)
    wait_for(
        lambda: daemon.reconcile(scan=False) is not None and groups.full_passes == 2,
        timeout=120,
        what="the second full pass to end",
    )
    expected = [set(a + more_a), set(b + more_b), set(c)]
    assert sorted(clusters_of(db).values(), key=min) == expected
    d = add_unverified(db, "C", 1)
    daemon.reconcile(scan=False)  # joins from the state taken back
    assert sorted(clusters_of(db).values(), key=min)[2] == set(c + d)
    daemon.close()


def test_a_stop_during_a_child_pass_leaves_the_old_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a = add_unverified(db, "A", 3)
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False, cluster_distance=0.05)
    daemon.reconcile()  # here: few faces
    before = clusters_of(db)
    assert list(before.values()) == [set(a)]
    add_unverified(db, "B", 3)
    monkeypatch.setattr(grouper, "CHILD_ABOVE", 0)
    app = sqlite3.connect(db, timeout=60, isolation_level=None)
    app.execute("BEGIN IMMEDIATE")  # the app writes: the child's groups must wait
    try:
        daemon.grouper.update(daemon.space, full=True)  # type: ignore[arg-type]
        full_pass = daemon.grouper.full_pass
        assert full_pass is not None
        wait_for(
            lambda: (
                full_pass.stage is not None
                and full_pass.stage[0] == "write"
                or (full_pass.poll() is not None)
            ),
            timeout=120,
            what="the child to reach its write",
        )
        assert full_pass.running  # waiting for the app's lock
        started = time.monotonic()
        daemon.close()
        assert time.monotonic() - started < 10
        assert not full_pass.running
    finally:
        app.execute("ROLLBACK")
        app.close()
    assert clusters_of(db) == before


def test_a_child_pass_that_dies_fails_alone_and_the_old_groups_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import os
    import signal

    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    add_unverified(db, "A", 3)
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False, cluster_distance=0.05)
    daemon.reconcile()  # few faces: here
    before = clusters_of(db)
    groups, space = daemon.grouper, daemon.space
    assert space is not None and groups.full_pass is not None and len(before) == 1
    monkeypatch.setattr(grouper, "CHILD_ABOVE", 0)
    groups.update(space, full=True)
    passes = groups.full_passes
    full_pass = groups.full_pass
    os.kill(full_pass._child.pid, signal.SIGKILL)  # out of memory, say

    def noticed() -> bool:
        groups.update(space)
        return not full_pass.busy

    wait_for(noticed, timeout=60, what="the daemon to see the child gone")
    assert "The full re-cluster failed" in caplog.text and "died without a result" in caplog.text
    assert groups.full_passes == passes and clusters_of(db) == before
    daemon.close()

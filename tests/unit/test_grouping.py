"""Clusters of unknown faces in the database: the daemon groups them, a new face joins
or founds a cluster in the next reconcile, a named face leaves, `facestore clusters`
lists them and --rebuild keeps the ids. The fake backbone: identical crops give
identical vectors, which is all these checks need."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from facestore import db as database
from facestore.daemon import WatchOptions
from facestore.embedding import embed_pending
from facestore.grouping import cluster_params, recluster
from tests.support.backends import AppDatabase
from tests.support.helpers import (
    FakeBackbone,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
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


def test_the_daemon_keeps_clusters_of_unknown_faces(tmp_path: Path, cli: Cli) -> None:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a, b, c = add_unverified(db, "A", 3), add_unverified(db, "B", 3), add_unverified(db, "C", 1)
    apps_rows = sqlite_rows(db, "SELECT id, person_id, verified FROM face ORDER BY id")
    daemon = make_daemon(db, tmp_path, FakeClock(), retrain=False, cluster_distance=0.05)
    daemon.reconcile()  # no model: every unverified face is unknown
    first = clusters_of(db)
    assert sorted(first.values(), key=min) == [set(a), set(b)]  # the loner is in none
    id_a = next(cid for cid, faces in first.items() if faces == set(a))

    more_a = add_unverified(db, "A", 1)
    d = add_unverified(db, "D", 2)
    daemon.reconcile()  # joins and foundings, without a full re-cluster
    second = clusters_of(db)
    assert second[id_a] == set(a + more_a)
    assert set(d) in second.values() and c[0] not in set().union(*second.values())
    assert sqlite_rows(db, "SELECT size FROM face_cluster WHERE cluster_id = ?", id_a) == [(4,)]

    sqlite_exec(db, "UPDATE face SET person_id = 2, verified = 1 WHERE id = ?", a[0])
    assert a[0] not in clusters_of(db)[id_a]  # named: it leaves its cluster (trigger)
    assert sqlite_rows(
        db, "SELECT id, person_id, verified FROM face WHERE id != ? ORDER BY id", a[0]
    ) == [r for r in apps_rows if r[0] != a[0]] + [
        (f, None, 0) for f in more_a + d
    ]  # facestore changed no name

    listed = json.loads(cli("--db", db, "clusters", "--json").stdout)
    assert [row["size"] for row in listed] == [3, 3, 2]
    assert listed[0]["cluster_id"] == id_a and listed[0]["representative_face_id"] in a + more_a
    rebuilt = json.loads(
        cli("--db", db, "clusters", "--rebuild", "--cluster-distance", "0.05", "--json").stdout
    )
    assert rebuilt["rebuild"]["clusters"] == 3 and rebuilt["rebuild"]["distance_from"] == "given"
    assert {row["cluster_id"] for row in rebuilt["clusters"]} == set(second)  # ids kept
    assert cli("--db", db, "clusters", "--min-size", "3").stdout.count("cluster ") == 2


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


def test_a_rebuild_on_both_databases_keeps_ids_and_names(make_app: MakeApp) -> None:
    app = make_app(people=2, per_person=3)
    rows = [{"crop": CROPS[name], "no": False} for name in "AAABBC"]
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
    assert (first.unknown, first.clustered, first.clusters) == (6, 5, 2)
    ids = store.clusters.members(space.config_hash)
    again = recluster(store, space, params, source)
    assert again.clusters == 2 and store.clusters.members(space.config_hash) == ids
    assert app.rows("SELECT id, person_id, verified FROM face ORDER BY id") == before


def test_the_distance_is_calibrated_on_a_sample_above_the_cap(
    make_app: MakeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facestore import clustering, grouping

    store = make_app(people=4, per_person=5).store()  # 20 verified faces
    embed_pending(store, FakeBackbone())
    space = store.spaces.active()
    assert space is not None
    monkeypatch.setattr(clustering, "CALIBRATION_FACES", 10)
    monkeypatch.setattr(clustering, "CALIBRATION_PEOPLE", 3)
    monkeypatch.setattr(clustering, "CALIBRATION_PER_PERSON", 2)
    seen: list[list[object]] = []

    def calibrate(vectors: object, people: list[object]) -> float:
        seen.append(people)
        return 0.07

    monkeypatch.setattr(grouping, "calibrate_distance", calibrate)
    params, source = cluster_params(store, space)
    assert params.distance == 0.07
    assert source == "calibrated on 6 verified faces (a sample of the 20)"
    assert sorted(Counter(map(str, seen[0])).values()) == [2, 2, 2]


@pytest.mark.parametrize("with_model", [False, True])
def test_a_woken_pass_reads_only_the_new_faces(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, with_model: bool
) -> None:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{db}"))
    a, b = add_unverified(db, "A", 3), add_unverified(db, "B", 3)
    # with a model that accepts nobody, every unverified face is unknown too
    daemon = make_daemon(
        db, tmp_path, FakeClock(), retrain=with_model, min_confidence=1.01, cluster_distance=0.05
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
        add_unverified(db, "D", 2),
        add_unverified(db, "C", 1),
    )
    daemon.reconcile(scan=False)  # woken by the change: the queue only
    now = clusters_of(db)
    id_a = next(cid for cid, faces in now.items() if set(a) <= faces)
    assert now[id_a] == set(a + more_a) and set(d) in now.values()
    assert c[0] not in set().union(*now.values())
    monkeypatch.undo()

    # a rebuild elsewhere with min size 3 drops D's pair; the daemon reads that back,
    # and a third D face founds a cluster that exists
    cli(
        "--db", db, "clusters", "--rebuild", "--cluster-distance", "0.05", "--cluster-min-size", "3"
    )
    assert set(d) not in clusters_of(db).values()
    third = add_unverified(db, "D", 1)
    daemon.reconcile(scan=False)
    assert set(d + third) in clusters_of(db).values()
    assert sqlite_rows(
        db,
        "SELECT count(*) FROM face_cluster_member m "
        "WHERE NOT EXISTS (SELECT 1 FROM face_cluster c WHERE c.cluster_id = m.cluster_id)",
    ) == [(0,)]

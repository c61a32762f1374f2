"""The daemon's policy and one reconcile at a time, in-process with a fake backbone."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from facestore import artifacts
from facestore import db as database
from facestore.daemon.loop import Daemon
from facestore.daemon.options import WatchOptions
from facestore.daemon.policy import RetrainPolicy, count_changes
from facestore.daemon.rolling import RollingCheck
from facestore.daemon.wakeups import DataVersionProbe
from facestore.store import IdRanges, Store, decode_vectors
from tests.support.helpers import (
    FakeBackbone,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.processes import patient, wait_for


def test_count_changes() -> None:
    trained = {1: "a", 2: "a", 3: "b"}
    assert count_changes(trained, trained) == 0
    assert count_changes(trained, {1: "a", 2: "b", 4: "c"}) == 3  # relabel, removed, new
    assert count_changes({}, {1: "a"}) == 1


@pytest.mark.parametrize(
    ("changes", "waiting", "last", "now", "due"),
    [
        (0, 0, None, 1000, False),
        (3, 0, None, 1, True),  # enough changes
        (2, 0, None, 1, False),  # too few, too recent
        (2, 0, None, 5, True),  # too few, but old enough
        (3, 0, 0.5, 1, False),  # cooldown
        (3, 0, 0.5, 11, True),
    ],
)
def test_retrain_policy(changes: int, waiting: float, last: float | None, now: float, due: bool):
    policy = RetrainPolicy(min_changes=3, delay=5, cooldown=10)
    assert policy.due(changes, waiting, last, now) is due


def test_data_version_sees_other_connections_only(upgraded_db: Path) -> None:
    engine = database.create_engine(f"sqlite:///{upgraded_db}")
    probe = DataVersionProbe(engine)
    assert probe.changed() is False
    sqlite_exec(upgraded_db, "UPDATE face SET person_id = 1 WHERE id = 1")
    assert probe.changed() is True
    assert probe.changed() is False
    con = sqlite3.connect(upgraded_db)  # a reader opening and closing changes nothing
    con.execute("SELECT count(*) FROM face").fetchall()
    con.close()
    assert probe.changed() is False
    probe.close()


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def daemon_db(tmp_path: Path) -> Path:
    path = make_app_db(tmp_path / "app.db", people=3, per_person=4, unverified=3)
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    return path


def make_daemon(
    path: Path, tmp_path: Path, clock: FakeClock, run_retrain: Any = None, **options: object
) -> Daemon:
    """run_retrain: runs instead of a retrain (with retrain_in_child=True: as a child's)."""
    store = Store(database.create_engine(f"sqlite:///{path}"))
    settings = WatchOptions(  # retrains in this process: quicker (the child: its own tests)
        retrain_min_changes=3,
        retrain_delay=5,
        retrain_cooldown=0,
        classifier="logreg",
        retrain_in_child=False,
    )
    for key, value in options.items():
        settings = type(settings)(**{**settings.__dict__, key: value})
    return Daemon(store, tmp_path / "model", settings, FakeBackbone(), clock, retrain=run_retrain)


def test_reconcile_embeds_trains_and_suggests(daemon_db: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    daemon = make_daemon(daemon_db, tmp_path, clock)
    daemon.reconcile()
    assert sqlite_rows(daemon_db, "SELECT count(*) FROM embedding") == [(15,)]  # 12 + 3 unverified
    version = artifacts.current_version(tmp_path / "model")
    assert version is not None  # 12 new training faces >= 3
    rows = sqlite_rows(daemon_db, "SELECT face_id, person_id, model_version FROM face_suggestion")
    assert {r[0] for r in rows} <= {13, 14, 15} and rows
    assert {r[2] for r in rows} == {version}
    assert all(isinstance(r[1], int) for r in rows)

    # verifying a suggested face drops its suggestion (trigger)
    face_id = rows[0][0]
    sqlite_exec(daemon_db, "UPDATE face SET verified = 1 WHERE id = ?", face_id)
    assert sqlite_rows(daemon_db, "SELECT 1 FROM face_suggestion WHERE face_id = ?", face_id) == []
    # deleting one drops it too
    if len(rows) > 1:
        sqlite_exec(daemon_db, "DELETE FROM face WHERE id = ?", rows[1][0])
        assert (
            sqlite_rows(daemon_db, "SELECT 1 FROM face_suggestion WHERE face_id = ?", rows[1][0])
            == []
        )


def test_retrain_waits_for_enough_changes_or_the_delay(daemon_db: Path, tmp_path: Path) -> None:
    clock = FakeClock()
    daemon = make_daemon(daemon_db, tmp_path, clock)
    daemon.reconcile()
    first = artifacts.current_version(tmp_path / "model")
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 2 WHERE id IN (1, 2)")  # 2 < 3 changes
    clock.now = 1
    daemon.reconcile()
    assert artifacts.current_version(tmp_path / "model") == first
    clock.now = 7  # oldest untrained change is now older than the 5 s delay
    daemon.reconcile()
    second = artifacts.current_version(tmp_path / "model")
    assert second != first
    assert daemon.predictor is not None and daemon.predictor.version == second
    clock.now = 8
    daemon.reconcile()  # nothing changed: no retrain
    assert artifacts.current_version(tmp_path / "model") == second


def test_a_failed_retrain_is_not_retried_until_the_next_change(
    daemon_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 0")  # one class only
    clock = FakeClock()
    daemon = make_daemon(daemon_db, tmp_path, clock)
    with caplog.at_level("WARNING"):
        daemon.reconcile()
        clock.now = 100
        daemon.reconcile()
    assert caplog.text.count("Retrain failed") == 1
    assert artifacts.current_version(tmp_path / "model") is None
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 1 WHERE id IN (5, 6, 7, 8)")
    clock.now = 200
    daemon.reconcile()
    assert artifacts.current_version(tmp_path / "model") is not None


def test_the_model_is_let_go_of_during_a_retrain_and_back_after_a_failed_one(
    daemon_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from facestore.daemon.trigger import retrain_here
    from facestore.errors import TrainingError

    served_during: list[object] = []
    outcomes = iter([None, TrainingError("the fit failed")])

    def retrain(*args: Any) -> Any:  # as in a child: the daemon waits, serving nothing
        served_during.append(daemon.predictor)
        failure = next(outcomes)
        if failure is not None:
            raise failure
        return retrain_here(*args)

    clock = FakeClock()
    daemon = make_daemon(daemon_db, tmp_path, clock, run_retrain=retrain, retrain_in_child=True)
    daemon.reconcile()
    first = artifacts.current_version(tmp_path / "model")
    assert daemon.predictor is not None and daemon.predictor.version == first
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 2 WHERE id IN (1, 2, 3)")
    clock.now = 100
    with caplog.at_level("INFO"):
        daemon.reconcile()
    assert served_during == [None, None]  # its memory was the retrain's
    assert daemon.predictor is not None and daemon.predictor.version == first  # back
    assert "Retrain failed" in caplog.text
    assert "Wrote" not in caplog.text  # not taken for a new model: no rewrite


def test_the_model_is_not_let_go_of_again_while_another_worker_retrains(
    daemon_db: Path, tmp_path: Path
) -> None:
    from facestore.daemon.trigger import retrain_here
    from facestore.errors import BusyError

    served_during: list[object] = []
    busy = iter([False, True, True, False])

    def retrain(*args: Any) -> Any:
        served_during.append(daemon.predictor)
        if next(busy):
            raise BusyError("Another facestore retrain is running.")
        return retrain_here(*args)

    clock = FakeClock()
    daemon = make_daemon(daemon_db, tmp_path, clock, run_retrain=retrain, retrain_in_child=True)
    daemon.reconcile()  # the first model
    first = artifacts.current_version(tmp_path / "model")
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 2 WHERE id IN (1, 2, 3)")
    for now in (100, 200, 300):
        clock.now = now
        daemon.reconcile()
    # released for the first try; not again after the lock was found held (no reload at
    # every pass while another worker fits); served meanwhile; published in the end
    assert served_during[1] is None
    assert served_during[2] is not None and served_during[3] is not None
    assert daemon.predictor is not None and daemon.predictor.version != first


def test_new_unverified_face_gets_a_suggestion_with_the_current_model(
    daemon_db: Path, tmp_path: Path
) -> None:
    daemon = make_daemon(daemon_db, tmp_path, FakeClock(), min_confidence=0.0)
    daemon.reconcile()
    version = artifacts.current_version(tmp_path / "model")
    sqlite_exec(
        daemon_db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, NULL, 0)",
        encode(face_image(1, 60)),
    )
    daemon.reconcile()
    [(person_id, model_version)] = sqlite_rows(
        daemon_db, "SELECT person_id, model_version FROM face_suggestion WHERE face_id = 16"
    )
    assert (person_id, model_version) == (1, version)


def test_no_suggestions_mode_leaves_unverified_faces_alone(daemon_db: Path, tmp_path: Path) -> None:
    daemon = make_daemon(daemon_db, tmp_path, FakeClock(), suggestions=False)
    daemon.reconcile()
    assert sqlite_rows(daemon_db, "SELECT count(*) FROM embedding") == [(12,)]
    assert sqlite_rows(daemon_db, "SELECT count(*) FROM face_suggestion") == [(0,)]


def test_a_daemon_with_another_space_warns_once_and_keeps_serving(
    daemon_db: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from facestore.embedding import embed_pending

    store = Store(database.create_engine(f"sqlite:///{daemon_db}"))
    embed_pending(store, FakeBackbone(salt=1))  # the active space is salt 1
    with caplog.at_level("WARNING"):
        daemon = make_daemon(daemon_db, tmp_path, FakeClock())  # configured with salt 0
        daemon.reconcile()
        daemon.reconcile()
    assert caplog.text.count("Not embedding; still serving the active space") == 1
    assert (
        daemon.space is not None and daemon.space.config_hash == store.spaces.active().config_hash
    )
    assert artifacts.current_version(tmp_path / "model") is not None  # trained in the active space
    assert sqlite_rows(daemon_db, "SELECT DISTINCT space_hash FROM embedding") == [
        (daemon.space.config_hash,)
    ]


def test_suggestions_follow_the_models_open_set_rule(daemon_db: Path, tmp_path: Path) -> None:
    daemon = make_daemon(daemon_db, tmp_path, FakeClock())  # no --min-confidence: the rule
    daemon.reconcile()
    sqlite_exec(
        daemon_db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, NULL, 0)",
        encode(face_image(1, 61)),  # a known person
    )
    sqlite_exec(
        daemon_db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, NULL, 0)",
        encode(face_image(77, 0)),  # nobody the model knows
    )
    daemon.reconcile()
    rows = sqlite_rows(
        daemon_db,
        "SELECT face_id, person_id, confidence FROM face_suggestion WHERE face_id IN (16, 17)",
    )
    assert [(face_id, person_id) for face_id, person_id, _ in rows] == [(16, 1)]
    assert daemon.predictor is not None and daemon.space is not None
    cached = daemon.store.library.vectors_of(daemon.space.config_hash, [16, 17])
    [known, stranger] = daemon.predictor.classify(
        decode_vectors([cached[16], cached[17]]), ["16", "17"]
    )
    assert (known.person_id, stranger.person_id) == (1, None)
    assert rows[0][2] == pytest.approx(known.confidence, abs=1e-6)


def test_a_backlog_starves_neither_retrains_nor_suggestions(
    daemon_db: Path, tmp_path: Path
) -> None:
    """An app that adds faces faster than the daemon embeds: the queue never empties, yet
    within one reconcile a model is published and suggestions are written."""
    added = iter(range(10_000))

    class AppOutpacesTheDaemon(FakeBackbone):
        def embed_images(self, images):  # type: ignore[no-untyped-def]
            for _ in range(len(images) + 2):  # each batch: more new faces than it embeds
                n = next(added)
                sqlite_exec(
                    daemon_db,
                    "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) "
                    "VALUES (1, ?, ?, ?)",
                    encode(face_image(n % 3, 100 + n)),
                    n % 3,
                    int(n % 4 != 0),  # one in four unverified
                )
            return super().embed_images(images)

    store = Store(database.create_engine(f"sqlite:///{daemon_db}"))
    options = WatchOptions(
        retrain_min_changes=3,
        retrain_cooldown=0,
        classifier="logreg",
        batch_size=4,
        work_slice=0.3,
        interval=60,
        retrain_in_child=False,
    )
    daemon = Daemon(store, tmp_path / "model", options, AppOutpacesTheDaemon())
    seen: dict[str, int] = {}

    def published_and_suggested() -> bool:
        if artifacts.current_version(tmp_path / "model") is None:
            return False
        [(suggestions,)] = sqlite_rows(daemon_db, "SELECT count(*) FROM face_suggestion")
        [(queued,)] = sqlite_rows(daemon_db, "SELECT count(*) FROM embedding_job")
        seen.update(suggestions=suggestions, queued=queued)
        return suggestions > 0

    worker = threading.Thread(target=daemon.reconcile)
    worker.start()
    try:
        wait_for(published_and_suggested, timeout=120, what="a model and suggestions")
    finally:
        daemon.stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert seen["queued"] > 0  # the backlog was still there


def test_a_database_error_in_a_pass_is_logged_and_the_daemon_goes_on(
    daemon_db: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The running loop: its first reconcile fails on a statement the database refuses;
    it logs and counts that, stays up, and its next timer pass does the work."""
    daemon = make_daemon(daemon_db, tmp_path, FakeClock(), interval=0.2, poll=True)
    daemon.clock = time.monotonic  # the loop's timer: real time
    reconcile = daemon.reconcile
    calls: list[bool] = []

    def refused_once(scan: bool = True) -> int:
        calls.append(scan)
        if len(calls) == 1:
            raise sa.exc.DataError("UPDATE ...", {}, ValueError("value too long"))
        return reconcile(scan)

    monkeypatch.setattr(daemon, "reconcile", refused_once)
    loop = threading.Thread(target=daemon.run)
    with caplog.at_level("ERROR"):
        loop.start()
        try:
            wait_for(
                lambda: sqlite_rows(daemon_db, "SELECT count(*) FROM embedding")[0][0] == 15,
                timeout=patient(5),
                what="the pass after the failed one to embed every face",
            )
        finally:
            daemon.request_stop()
            loop.join(timeout=patient(2))
    assert not loop.is_alive()
    assert "Reconcile failed, retrying next interval: value too long" in caplog.text
    errors = daemon.telemetry.registry.get_sample_value(
        "facestore_database_errors_total", {"kind": "ValueError"}
    )
    assert errors == 1 and len(calls) >= 2


def test_rolling_check_slices_wrap_and_new_rows_come_first() -> None:
    check = RollingCheck(per_pass=4)
    assert check.next(10) is None  # the first pass checks everything
    assert check.next(10) == IdRanges(((0, 4),))
    assert check.next(12) == IdRanges(((4, 8), (11, None)))  # 11 and 12 are new
    assert check.next(12) == IdRanges(((8, 12),))
    assert check.next(12) == IdRanges(((12, 16),))
    assert check.next(12) == IdRanges(((0, 4),))  # round again


def test_rolling_checks_of_several_workers_start_at_their_own_phase() -> None:
    halfway = RollingCheck(per_pass=4, phase=0.5)
    assert halfway.next(10) is None
    assert halfway.next(10) == IdRanges(((4, 8),))  # the slice holding id 5
    assert halfway.next(10) == IdRanges(((8, 12),))
    assert halfway.next(10) == IdRanges(((0, 4),))  # round again from the start
    assert halfway.next(10) == IdRanges(((4, 8),))


def test_a_timer_pass_finds_lost_work_within_its_period_and_new_rows_at_once(
    daemon_db: Path, tmp_path: Path
) -> None:
    daemon = make_daemon(daemon_db, tmp_path, FakeClock(), retrain=False)
    daemon.timer._rolling = RollingCheck(per_pass=4)
    daemon.reconcile()  # checks everything: 15 faces embedded
    embedded = lambda face_id: bool(  # noqa: E731
        sqlite_rows(daemon_db, "SELECT 1 FROM embedding WHERE face_id = ?", face_id)
    )
    assert all(embedded(i) for i in range(1, 16))
    # lost events: face 10's vector gone behind facestore's back, face 16 added unqueued
    sqlite_exec(daemon_db, "DELETE FROM embedding WHERE face_id = 10")
    sqlite_exec(
        daemon_db,
        "INSERT INTO face (photo_id, face_crop_blob, person_id, verified) VALUES (1, ?, 1, 1)",
        encode(face_image(1, 90)),
    )
    sqlite_exec(daemon_db, "DELETE FROM embedding_job")
    daemon.reconcile()  # ids 0..3, and 16 (new since the last pass)
    assert embedded(16) and not embedded(10)
    daemon.reconcile()  # 4..7
    assert not embedded(10)
    daemon.reconcile()  # 8..11
    assert embedded(10)


def test_an_idle_timer_pass_reads_no_training_pairs(
    daemon_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(daemon_db, tmp_path, FakeClock())
    daemon.reconcile()
    daemon.reconcile()  # the pass after the first model: nothing waits any more
    reads: list[object] = []
    real = daemon.store.library.training_pairs

    def recorded(space: str, faces: object = None) -> dict[int, object]:
        reads.append(faces)
        return real(space, faces)  # type: ignore[arg-type]

    monkeypatch.setattr(daemon.store.library, "training_pairs", recorded)
    daemon.reconcile()
    daemon.reconcile()
    assert reads == []  # 1M faces: 12 s each on SQLite
    sqlite_exec(daemon_db, "UPDATE face SET person_id = 2 WHERE id IN (1, 2, 3)")
    version = artifacts.current_version(tmp_path / "model")
    daemon.reconcile()  # another connection committed: read the logged faces, retrain
    assert reads[0] == frozenset({1, 2, 3})  # only what the change log names
    assert None not in reads  # never every pair
    assert artifacts.current_version(tmp_path / "model") != version

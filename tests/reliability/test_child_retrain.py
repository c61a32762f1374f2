"""The daemon retrains in a child process: its memory goes back to the system, a crash
of the child (kill -9) is a failed retrain that leaves the current model serving and is
tried again after the cooldown, and a stop request stops the child at once."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from facestore import artifacts
from facestore import db as database
from facestore.daemon.child_retrain import RetrainCrashed, RetrainStopped, retrain_in_child
from facestore.daemon.options import WatchOptions
from facestore.daemon.telemetry import Telemetry
from facestore.daemon.trigger import RetrainTrigger
from facestore.embedding import embed_pending
from facestore.errors import TrainingError
from facestore.retrain import RetrainReport, retrain
from facestore.store import Store
from tests.support.helpers import FakeBackbone, make_app_db
from tests.support.processes import patient, wait_for
from tests.unit.test_daemon import FakeClock


@pytest.fixture
def library(tmp_path: Path) -> Store:
    db = make_app_db(tmp_path / "app.db", people=3, per_person=5)
    engine = database.create_engine(f"sqlite:///{db}")
    database.upgrade(engine)
    store = Store(engine)
    embed_pending(store, FakeBackbone())
    return store


def the_child() -> Any:
    children = [c for c in multiprocessing.active_children() if c.name == "facestore-retrain"]
    return children[0] if children else None


def in_thread(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_retrain_in_a_child_publishes_and_returns_its_report(
    library: Store, tmp_path: Path
) -> None:
    report = retrain_in_child(library, tmp_path / "model", "logreg", threading.Event())
    assert isinstance(report, RetrainReport) and report.classes_kept == 3
    assert artifacts.current_version(tmp_path / "model") == report.version
    assert the_child() is None  # gone, its memory with it


def test_the_childs_error_is_raised_in_the_daemon(library: Store, tmp_path: Path) -> None:
    with library.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE face SET person_id = 0")  # one person left
    with pytest.raises(TrainingError, match="Need at least 2 people"):
        retrain_in_child(library, tmp_path / "model", "logreg", threading.Event())


def test_a_killed_child_is_a_failed_retrain_and_the_model_keeps_serving(
    library: Store, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    serving = retrain(library, model, "logreg").version
    thread, outcome = in_thread(
        lambda: retrain_in_child(library, model, "logreg", threading.Event())
    )
    wait_for(lambda: the_child() is not None, patient(2), "the retrain's child to start")
    os.kill(the_child().pid, signal.SIGKILL)
    thread.join(timeout=patient(2))
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), RetrainCrashed), outcome
    assert "exit code -9" in str(outcome["error"])
    assert artifacts.current_version(model) == serving
    assert artifacts.load_bundle(model).version == serving  # whole and loadable


def test_a_stop_request_stops_the_child_at_once(library: Store, tmp_path: Path) -> None:
    stop = threading.Event()
    thread, outcome = in_thread(lambda: retrain_in_child(library, tmp_path / "m", "svc", stop))
    wait_for(lambda: the_child() is not None, patient(2), "the retrain's child to start")
    child = the_child()
    started = time.monotonic()
    stop.set()
    thread.join(timeout=patient(2))
    assert not thread.is_alive() and time.monotonic() - started < patient(1)
    assert isinstance(outcome.get("error"), RetrainStopped)
    assert not child.is_alive()
    assert artifacts.current_version(tmp_path / "m") is None  # nothing half published


def test_the_trigger_tries_again_after_a_crash_once_the_cooldown_is_over(
    library: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    runs: list[float] = []

    def crashing(*args: object) -> RetrainReport:
        runs.append(clock.now)
        raise RetrainCrashed("the retrain process died without a result (exit code -9)")

    options = WatchOptions(retrain_min_changes=1, retrain_delay=0, retrain_cooldown=300)
    telemetry = Telemetry(60.0)
    trigger = RetrainTrigger(
        library, tmp_path / "model", options, telemetry, clock, threading.Event(), crashing
    )
    space = library.spaces.active()
    assert space is not None
    assert trigger.maybe_retrain(space, {}) is False
    clock.now = 100.0
    trigger.labels_may_have_changed()
    assert trigger.maybe_retrain(space, {}) is False  # within the cooldown: not again
    clock.now = 400.0
    assert trigger.maybe_retrain(space, {}) is False
    assert runs == [0.0, 400.0]  # the same labels, tried again: a crash is not their fault
    assert telemetry.registry.get_sample_value("facestore_retrain_failures_total") == 2

"""Several workers on one database: leases, kill -9 mid-batch, one retrain at a time.

The workers are real `facestore watch` processes with the real facenet path
(random weights). CI size: 240 faces; FACESTORE_RELIABILITY_FULL=1: 5,000.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from facestore import artifacts
from facestore.backbones import Space
from facestore.locks import retrain_lock
from facestore.repository import ModelRepository
from facestore.store import VectorResult, crop_sha256
from tests.support.backends import AppDatabase, app_database
from tests.support.helpers import encode, face_image
from tests.support.processes import FULL, Watcher, patient, wait_for, wait_progressing
from tests.support.types import Cli, Figures

pytestmark = pytest.mark.slow

MakeApp = Callable[..., AppDatabase]
FACES = 5000 if FULL else 240
# 4 workers embed about 4.4 faces/s on the quiet dev machine (both tests below: 118 s)
WORKER_ARGS = ["--no-suggestions", "--no-retrain", "--interval", "2", "--batch-size", "16"]
BATCH_LOG = re.compile(r"Embedded (\d+) faces in")


def embedded_by(worker: Watcher) -> int:
    """Faces this worker wrote (each batch logs what it wrote under its lease)."""
    return sum(int(n) for n in BATCH_LOG.findall(worker.output()))


@pytest.fixture
def big_postgres_app(tmp_path: Path) -> Iterator[AppDatabase]:
    with app_database("postgresql", tmp_path, people=FACES // 20, per_person=20) as app:
        yield app.upgrade()


def count(app: AppDatabase, table: str = "embedding") -> int:
    return int(app.rows(f"SELECT count(*) FROM {table}")[0][0])


def all_embedded(app: AppDatabase) -> float:
    """Seconds until every face has its vector. Fails only when no vector is written for
    longer than the workers take to start (or a killed worker's lease takes to expire)."""
    return wait_progressing(
        lambda: count(app) == FACES, lambda: count(app), patient(20), f"{FACES} vectors"
    )


def test_four_workers_embed_each_face_exactly_once(
    big_postgres_app: AppDatabase,
    tmp_path: Path,
    weights_file: Path,
    watchers: list[Watcher],
    figures: Figures,
) -> None:
    app = big_postgres_app
    workers = [Watcher(app.url, tmp_path, weights_file, *WORKER_ARGS) for _ in range(4)]
    watchers.extend(workers)
    seconds = all_embedded(app)
    for worker in workers:
        assert worker.stop() == 0, worker.output()
    shares = [embedded_by(w) for w in workers]
    figures(f"{FACES} faces, 4 workers: {seconds:.1f}s, written per worker {shares}")
    assert sum(shares) == FACES  # no face written twice
    assert sum(1 for share in shares if share) >= 2  # the work was shared
    assert count(app, "embedding_job") == 0
    assert app.ids("embedding") == app.ids("face", "id")


def test_a_worker_killed_mid_batch_is_taken_over_when_its_lease_expires(
    big_postgres_app: AppDatabase,
    tmp_path: Path,
    weights_file: Path,
    watchers: list[Watcher],
    figures: Figures,
) -> None:
    """The victim looks like another machine, so only the lease's expiry frees its batch."""
    app = big_postgres_app
    lease = "8"
    victim = Watcher(
        app.url,
        tmp_path,
        weights_file,
        *WORKER_ARGS,
        "--lease",
        lease,
        env={"FACESTORE_WORKER_HOST": "victim-machine"},
    )
    watchers.append(victim)
    wait_for(lambda: embedded_by(victim) >= 32, 120, "the victim to write two batches")
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait()
    leased = app.rows(
        "SELECT count(*) FROM embedding_job WHERE lease_owner LIKE 'victim-machine:%'"
    )[0][0]
    assert leased > 0, "the victim was killed between batches; its lease should be held"
    others = [
        Watcher(app.url, tmp_path, weights_file, *WORKER_ARGS, "--lease", lease) for _ in range(2)
    ]
    watchers.extend(others)
    seconds = all_embedded(app)
    for worker in others:
        assert worker.stop() == 0, worker.output()
    figures(
        f"{FACES} faces: victim killed holding {leased} leased faces; all embedded "
        f"{seconds:.1f}s later (lease {lease}s)"
    )
    assert app.ids("embedding") == app.ids("face", "id")
    assert count(app, "embedding_job") == 0


def fill_vectors(app: AppDatabase, people: int, per_person: int) -> None:
    """Faces with clustered random vectors, straight into the cache (no backbone needed)."""
    crop = b"never decoded"
    faces = [
        {"crop": crop, "person": i // per_person, "yes": True} for i in range(people * per_person)
    ]
    app.exec_many(
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (:crop, :person, :yes)",
        faces,
    )
    rows = app.rows("SELECT id, person_id FROM face ORDER BY id")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(people, 512))
    store = app.store()
    space = Space("synthetic", "synthetic-space", {})
    store.spaces.activate(space)
    vectors = [
        VectorResult(int(face_id), crop_sha256(crop), centres[person] + rng.normal(size=512))
        for face_id, person in rows
    ]
    assert store.cache.write_results(space.config_hash, vectors, []).embedded == len(rows)


def retrain_process(app: AppDatabase, model_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facestore",
            "--db",
            app.url,
            "--model-dir",
            str(model_dir),
            "retrain",
            "--classifier",
            "svc",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


BUSY = "Another facestore retrain or migration is running"


def test_a_retrain_while_another_holds_the_lock_publishes_nothing(
    make_app: MakeApp, tmp_path: Path, cli: Cli
) -> None:
    app = make_app(people=0)
    fill_vectors(app, people=5, per_person=6)
    model_dir = tmp_path / "model"
    with retrain_lock(app.store().engine, model_dir):
        refused = cli("--db", app.url, "--model-dir", model_dir, "retrain")
    assert refused.exit_code == 1 and BUSY in refused.output
    assert artifacts.current_version(model_dir) is None
    assert cli("--db", app.url, "--model-dir", model_dir, "retrain").exit_code == 0
    assert artifacts.current_version(model_dir) is not None


def test_two_concurrent_retrains_never_publish_at_the_same_time(
    make_app: MakeApp, tmp_path: Path, figures: Figures
) -> None:
    """Both start together on data whose SVC fit takes seconds: one publishes, one refuses."""
    app = make_app(people=0)
    fill_vectors(app, people=100, per_person=20)
    model_dir = tmp_path / "model"
    runs = [retrain_process(app, model_dir) for _ in range(2)]
    outcomes = []
    for run in runs:
        out, err = run.communicate(timeout=300)  # reads the pipes while waiting
        outcomes.append((run.returncode, out, err))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 1], outcomes
    [(_, _, refused)] = [o for o in outcomes if o[0] == 1]
    assert BUSY in refused and "Traceback" not in refused
    assert len(ModelRepository(model_dir).history()) == 1
    figures(f"{app.dialect}: 2,000 vectors, two retrains started together -> exits {codes}")


def test_a_migration_while_a_retrain_runs_is_refused(tmp_path: Path, cli: Cli) -> None:
    with app_database("postgresql", tmp_path) as app:
        with retrain_lock(app.store().engine, tmp_path / "model"):
            refused = cli("--db", app.url, "db", "upgrade")
        assert refused.exit_code == 1 and BUSY in refused.output
        assert cli("--db", app.url, "db", "upgrade").exit_code == 0


def test_notify_wakes_a_postgresql_worker_long_before_its_timer(
    tmp_path: Path, weights_file: Path, watchers: list[Watcher], figures: Figures
) -> None:
    with app_database("postgresql", tmp_path) as app:
        app.upgrade()
        worker = Watcher(
            app.url, tmp_path, weights_file, *WORKER_ARGS, "--interval", "600", "--debounce", "0.2"
        )
        watchers.append(worker)
        wait_for(lambda: count(app) == 12, 120, "the first reconcile")
        assert "LISTEN/NOTIFY" in worker.output()
        app.exec(
            "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (:crop, 1, true)",
            crop=encode(face_image(1, 60)),
        )
        seconds = wait_for(lambda: count(app) == 13, 20, "the new face, woken by NOTIFY")

        # the server drops the LISTEN connection (a restart, say): the worker listens again
        killed = app.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert killed == [(True,)]
        again = wait_for(lambda: "LISTEN re-established" in worker.output(), 30, "a new LISTEN")
        app.exec(
            "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (:crop, 1, true)",
            crop=encode(face_image(1, 61)),
        )
        wait_for(lambda: count(app) == 14, 20, "a face after the reconnect")
        assert worker.stop() == 0
    figures(
        f"new face embedded {seconds:.1f}s after the app's commit (timer: 600 s); "
        f"LISTEN re-established {again:.1f}s after the server dropped it"
    )

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from facestore import db as database
from facestore.cli.main import main
from facestore.settings import ENGINE, SETTINGS
from facestore.store import Store
from tests.support.backends import BACKENDS, AppDatabase, app_database, postgres_database
from tests.support.helpers import make_app_db
from tests.support.processes import Watcher


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real weights cache, no facestore settings leaking in from the shell."""
    for setting in SETTINGS:
        monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    # torch runs the facenet network unless a test picks an engine (test_engines.py):
    # an ONNX export per test's fresh hub cache would add seconds to each
    monkeypatch.setenv(ENGINE.env, "torch")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised InceptionResnetV1 in the official vggface2 checkpoint format."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "random-vggface2.pt"
    torch.save(InceptionResnetV1(classify=True, num_classes=8631).state_dict(), path)
    return path


@pytest.fixture
def app_db(tmp_path: Path) -> Path:
    return make_app_db(tmp_path / "app.db")


@pytest.fixture
def upgraded_db(app_db: Path) -> Path:
    database.upgrade(database.create_engine(f"sqlite:///{app_db}"))
    return app_db


@pytest.fixture
def store_for() -> Iterator[Callable[[Path], Store]]:
    engines = []

    def make(path: Path) -> Store:
        engine = database.create_engine(f"sqlite:///{path}")
        engines.append(engine)
        return Store(engine)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def cli() -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: Any, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(main, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    started: list[Watcher] = []
    yield started
    for w in started:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait()
        # pytest shows this only when the test failed: what each daemon said
        print(f"--- {w.log.name} (exit {w.proc.returncode}) ---\n{w.output()[-6000:]}")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Contract tests take this (or make_app / empty_database) and run on both databases."""
    return str(request.param)


@pytest.fixture
def make_app(backend: str, tmp_path: Path) -> Iterator[Callable[..., AppDatabase]]:
    """make_app(upgrade=True, **faces): an app database on the backend, facestore installed."""
    with contextlib.ExitStack() as stack:

        def make(upgrade: bool = True, **faces: Any) -> AppDatabase:
            app = stack.enter_context(app_database(backend, tmp_path, **faces))
            return app.upgrade() if upgrade else app

        yield make


@pytest.fixture
def empty_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The --db value of a database with nothing in it yet, on the backend."""
    if backend == "sqlite":
        yield str(tmp_path / "fresh.db")
        return
    with postgres_database() as url:
        yield url

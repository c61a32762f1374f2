"""A running daemon refuses a damaged or incompatible new model and keeps serving the old one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from facestore import artifacts
from facestore import db as database
from facestore.daemon.loop import Daemon
from facestore.daemon.options import WatchOptions
from facestore.repository import ModelRepository
from facestore.store import Store
from tests.support.helpers import FakeBackbone, make_app_db
from tests.support.types import Damage, Figures


def flip_byte(directory: Path) -> None:
    path = directory / "classifier.pkl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def edit_manifest(key: str, value: object) -> Callable[[Path], None]:
    def edit(directory: Path) -> None:
        path = directory / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest[key] = value
        path.write_text(json.dumps(manifest))

    return edit


def other_space(directory: Path) -> None:
    """A consistent, well-signed model of another embedding space."""
    bundle = artifacts.load_bundle(directory.parent.parent, directory.name)
    config = {**bundle.embedding_config, "config_hash": "0" * 64}
    files = artifacts.render_files(
        bundle.classifier,
        bundle.person_ids,
        config,
        bundle.metrics,
        directory.name,
        list(bundle.training_set.items()),
    )
    for name, data in files.items():
        (directory / name).write_bytes(data)


@pytest.mark.parametrize(
    "damage",
    [flip_byte, edit_manifest("files", {}), edit_manifest("sklearn", "0.23.0"), other_space],
    ids=["flipped-byte", "manifest-mismatch", "other-sklearn", "incompatible-space"],
)
def test_running_daemon_keeps_the_previous_model(
    tmp_path: Path, damage: Damage, figures: Figures
) -> None:
    path = make_app_db(tmp_path / "app.db", people=3, per_person=4)
    database.upgrade(database.create_engine(f"sqlite:///{path}"))
    store = Store(database.create_engine(f"sqlite:///{path}"))
    options = WatchOptions(
        retrain_min_changes=1, retrain_delay=0, retrain_cooldown=1e9, classifier="logreg"
    )
    daemon = Daemon(store, tmp_path / "model", options, FakeBackbone())
    daemon.reconcile()
    assert daemon.predictor is not None
    serving = daemon.predictor.version

    bundle = artifacts.load_bundle(tmp_path / "model")
    new = ModelRepository(tmp_path / "model").publish(
        bundle.classifier,
        bundle.person_ids,
        bundle.embedding_config,
        bundle.metrics,
        training_set=list(bundle.training_set.items()),
    )
    damage(tmp_path / "model" / "history" / new)
    daemon.reconcile()
    assert daemon.predictor.version == serving
    figures(
        f"{damage.__name__ if hasattr(damage, '__name__') else damage}: refused, "
        f"still serving {serving}"
    )

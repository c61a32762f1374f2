"""Backbone change: spaces side by side, reembed, activation, prune."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from facestore import artifacts, backbones
from facestore.config import BackboneSettings
from facestore.reembed import build_space, reembed
from facestore.repository import StagedVersion
from facestore.store import Store
from tests.support.helpers import (
    FakeBackbone,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
    sqlite_rows,
)
from tests.support.types import Cli, StoreFor


def salted(settings: BackboneSettings) -> FakeBackbone:
    """A fake backbone whose 'weights' pick the space: --weights A or --weights B."""
    return FakeBackbone(salt={"B": 1, "C": 2}.get(str(settings.weights), 0))


@pytest.fixture
def db_in_space_a(tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setitem(backbones._REGISTRY, "fake", salted)
    monkeypatch.setenv("FACESTORE_BACKBONE", "fake")
    path = make_app_db(tmp_path / "app.db", people=3, per_person=5, corrupt=["text"])
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--weights", "A").exit_code == 0
    assert cli("--db", path, "retrain").exit_code == 0
    return path


def status(cli: Cli, db: Path) -> dict:
    result = cli("--db", db, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_embed_with_other_weights_points_to_reembed(cli: Cli, db_in_space_a: Path) -> None:
    result = cli("--db", db_in_space_a, "embed", "--weights", "B")
    assert result.exit_code == 2
    assert "run 'facestore reembed'" in result.output


def test_full_switch(cli: Cli, db_in_space_a: Path, store_for: StoreFor, tmp_path: Path) -> None:
    before = status(cli, db_in_space_a)
    space_a = before["active_space"]["config_hash"]
    model_a = before["model"]["version"]

    # interrupted part-way: stop once the first batch is written (batches the model
    # had already embedded by then are written too: at most two more)
    store: Store = store_for(db_in_space_a)
    stop = threading.Event()
    build_space(
        store,
        salted(BackboneSettings(weights=Path("B"))),
        batch_size=4,
        progress=lambda n: stop.set(),
        stop=stop,
    )
    middle = status(cli, db_in_space_a)
    assert middle["active_space"]["config_hash"] == space_a
    assert middle["model"]["version"] == model_a
    spaces = {s["config_hash"]: s for s in middle["spaces"]}
    assert len(spaces) == 2
    space_b = next(h for h in spaces if h != space_a)
    done = spaces[space_b]["vectors"]
    assert done in (4, 8, 12) and spaces[space_b]["missing"] == 16 - done
    assert spaces[space_a]["vectors"] == 15 and spaces[space_a]["active"]
    assert middle["stale"] == done

    # the rest, without activating; a face added meanwhile is included
    sqlite_exec(
        db_in_space_a,
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, 1, 1)",
        encode(face_image(1, 40)),
    )
    result = cli("--db", db_in_space_a, "reembed", "--weights", "B", "--no-activate", "--json")
    report = json.loads(result.stdout)
    assert report == {
        **report,
        "space": space_b,
        "embedded": 16 - done,
        "failed": 1,
        "activated": False,
        "model_version": None,
    }
    assert status(cli, db_in_space_a)["active_space"]["config_hash"] == space_a

    # activate later
    result = cli("--db", db_in_space_a, "reembed", "--activate-only", "--json")
    assert result.exit_code == 0, result.output
    switched = json.loads(result.stdout)
    assert switched["seconds"] > 0  # it trained and published: a true figure, not 0.0
    after = status(cli, db_in_space_a)
    assert after["active_space"]["config_hash"] == space_b
    assert after["model"]["version"] == switched["model_version"] != model_a
    assert json.loads(Path("model/embedding_config.json").read_text())["config_hash"] == space_b
    assert after["stale"] == 15  # the A vectors
    assert after["embedded"] == 16 and after["pending"] == 0

    # the old weights are refused by predict
    crop = tmp_path / "q.png"
    crop.write_bytes(encode(face_image(0, 9), "PNG"))
    refused = cli("predict", crop, "--weights", "A")
    assert refused.exit_code == 2 and "facestore reembed" in refused.output
    assert cli("predict", crop, "--weights", "B").exit_code == 0

    # prune needs confirmation, then removes only the inactive space
    assert cli("--db", db_in_space_a, "prune").exit_code == 1
    assert cli("--db", db_in_space_a, "prune", "--yes").exit_code == 0
    pruned = status(cli, db_in_space_a)
    assert pruned["stale"] == 0 and pruned["embedded"] == 16
    assert [s["config_hash"] for s in pruned["spaces"]] == [space_b]


def test_reembed_in_one_go(cli: Cli, db_in_space_a: Path) -> None:
    report = json.loads(cli("--db", db_in_space_a, "reembed", "--weights", "C", "--json").stdout)
    assert report["activated"] is True and report["embedded"] == 15 and report["failed"] == 1
    assert status(cli, db_in_space_a)["active_space"]["config_hash"] == report["space"]


def test_activate_only_refuses_an_incomplete_space(
    cli: Cli, db_in_space_a: Path, store_for: StoreFor
) -> None:
    stop = threading.Event()
    build_space(
        store_for(db_in_space_a),
        salted(BackboneSettings(weights=Path("B"))),
        batch_size=4,
        progress=lambda n: stop.set(),
        stop=stop,
    )
    result = cli("--db", db_in_space_a, "reembed", "--activate-only")
    assert result.exit_code == 2  # stopped after 1 to 3 batches of 4, of 16 faces
    assert re.search(r"still lacks (12|8|4) verified faces", result.output), result.output


def test_a_failed_activation_leaves_the_old_space_and_model(
    cli: Cli, db_in_space_a: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = status(cli, db_in_space_a)

    real = StagedVersion.make_current

    def broken(self: StagedVersion) -> None:  # the switch, then the commit fails
        real(self)
        raise RuntimeError("disk full while committing")

    monkeypatch.setattr(StagedVersion, "make_current", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        cli("--db", db_in_space_a, "reembed", "--weights", "B")
    after = status(cli, db_in_space_a)
    assert after["active_space"] == before["active_space"]
    assert after["model"] == before["model"]
    assert artifacts.load_bundle(Path("model")).version == before["model"]["version"]


def test_prune_with_only_the_active_space(cli: Cli, db_in_space_a: Path) -> None:
    result = cli("--db", db_in_space_a, "prune", "--yes")
    assert "nothing to prune" in result.stdout
    assert sqlite_rows(db_in_space_a, "SELECT count(*) FROM embedding") == [(15,)]


def test_a_stopped_reembed_activates_nothing(
    cli: Cli, db_in_space_a: Path, store_for: StoreFor, tmp_path: Path
) -> None:
    before = status(cli, db_in_space_a)
    stop = threading.Event()
    report = reembed(
        store_for(db_in_space_a),
        salted(BackboneSettings(weights=Path("B"))),
        Path("model"),
        batch_size=4,
        progress=lambda n: stop.set(),
        stop=stop,
    )
    assert not report.activated and report.model_version is None and 0 < report.embedded < 16
    after = status(cli, db_in_space_a)
    assert after["active_space"] == before["active_space"]
    assert after["model"]["version"] == before["model"]["version"]

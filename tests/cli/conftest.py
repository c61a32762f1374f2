"""Fixtures of the CLI tests: a database embedded with the fake backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestore import backbones
from facestore.config import BackboneSettings
from tests.support.helpers import (
    FakeBackbone,
    encode,
    face_image,
    make_app_db,
    sqlite_exec,
)
from tests.support.types import Cli


@pytest.fixture
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(settings: BackboneSettings) -> FakeBackbone:
        return FakeBackbone()

    monkeypatch.setitem(backbones._REGISTRY, "fake", factory)


@pytest.fixture
def embedded_db(tmp_path: Path, cli: Cli, fake_registered: None) -> Path:
    path = make_app_db(
        tmp_path / "app.db", people=4, per_person=6, text_ids=True, corrupt=["random"]
    )
    # one person with a single verified face: must be dropped
    sqlite_exec(
        path,
        "INSERT INTO face (face_crop_blob, person_id, verified) VALUES (?, ?, 1)",
        encode(face_image(9, 0)),
        "solo",
    )
    assert cli("--db", path, "db", "upgrade").exit_code == 0
    assert cli("--db", path, "embed", "--backbone", "fake").exit_code == 0
    return path

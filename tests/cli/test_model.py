"""`facestore model list / rollback`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import retrain_json
from tests.support.helpers import (
    ISO_UTC,
)
from tests.support.types import Cli


def test_model_list_and_rollback_show_in_status(cli: Cli, embedded_db: Path) -> None:
    first = retrain_json(cli, embedded_db)["version"]
    second = retrain_json(cli, embedded_db, "--classifier", "logreg")["version"]
    listed = json.loads(cli("model", "list", "--json").stdout)
    assert [r["version"] for r in listed] == [second, first]
    assert all(ISO_UTC.fullmatch(r["created_at"]) for r in listed)
    assert [r["current"] for r in listed] == [True, False]
    assert listed[0]["classifier"] == "logreg"
    assert cli("model", "rollback").stdout.strip() == f"current model is now {first}"
    status = json.loads(cli("--db", embedded_db, "status", "--json").stdout)
    assert status["model"]["version"] == first
    assert cli("model", "rollback", second).exit_code == 0
    assert (
        json.loads(cli("--db", embedded_db, "status", "--json").stdout)["model"]["version"]
        == second
    )


def test_status_counts_exactly_or_quickly_from_facestores_own_tables(
    cli: Cli, embedded_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exact = json.loads(cli("--db", embedded_db, "status", "--json").stdout)
    assert exact["exact"] is True and exact["faces"] == 26 and exact["seconds"] >= 0
    quick = json.loads(cli("--db", embedded_db, "status", "--json", "--quick").stdout)
    assert quick["exact"] is False and quick["faces"] is None and quick["embedded"] is None
    assert quick["vectors"] == exact["vectors"] == exact["spaces"][0]["vectors"]
    assert quick["highest_face_id"] == exact["highest_face_id"] == 26
    assert quick["spaces"][0]["missing"] is None
    assert "not counted" in cli("--db", embedded_db, "status", "--quick").stdout

    from facestore import status as status_module

    monkeypatch.setattr(status_module, "EXACT_UP_TO", 25)  # the library is "large" now
    assert json.loads(cli("--db", embedded_db, "status", "--json").stdout)["exact"] is False
    assert json.loads(cli("--db", embedded_db, "status", "--json", "--exact").stdout)["exact"]

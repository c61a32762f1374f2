"""`facestore model list / rollback`."""

from __future__ import annotations

import json
from pathlib import Path

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

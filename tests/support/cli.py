"""Helpers for tests that drive the CLI."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.support.types import Cli


def retrain_json(cli: Cli, db: Path, *args: str) -> dict:
    result = cli("--db", db, "retrain", "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()

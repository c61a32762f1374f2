"""The types of the suite's fixtures, so tests annotate them instead of silencing mypy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from facestore.store import Store
from tests.support.backends import AppDatabase

Cli = Callable[..., Result]  # cli("--db", path, "status", env={...}) -> click Result
StoreFor = Callable[[Path], Store]
Figures = Callable[[str], None]  # records one line of a reliability check's figures
MakeApp = Callable[..., AppDatabase]
Damage = Callable[[Path], None]

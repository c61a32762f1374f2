"""Settings: the one module that reads the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestore.config import (
    DEFAULT_BACKBONE,
    configured_worker_host,
    database_url,
    resolve_backbone,
    resolve_db,
    torch_home,
)
from facestore.errors import ConfigurationError


def test_a_path_becomes_a_sqlite_url_and_a_url_stays(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path / 'a.db'}"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_the_option_wins_over_the_environment() -> None:
    env = {"FACESTORE_DB": "/env.db", "FACESTORE_BATCH_SIZE": "8", "FACESTORE_BACKBONE": "dlib"}
    assert resolve_db("/opt.db", env) == "sqlite:////opt.db"
    assert resolve_db(None, env) == "sqlite:////env.db"
    settings = resolve_backbone(None, None, None, 16, env)
    assert (settings.name, settings.batch_size, settings.device) == ("dlib", 16, "auto")
    assert resolve_backbone(None, None, None, None, {}).name == DEFAULT_BACKBONE


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_bad_batch_size_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="FACESTORE_BATCH_SIZE|at least 1"):
        resolve_backbone(None, None, None, None, {"FACESTORE_BATCH_SIZE": value})


def test_no_database_says_how_to_give_one() -> None:
    with pytest.raises(ConfigurationError, match="Pass --db PATH"):
        resolve_db(None, {})


def test_torch_home_and_worker_host_follow_the_environment() -> None:
    assert torch_home({"TORCH_HOME": "/th"}) == Path("/th")
    assert torch_home({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/torch")
    assert configured_worker_host({"FACESTORE_WORKER_HOST": "box-7"}) == "box-7"
    assert configured_worker_host({}) is None

"""Settings: the one module that reads the environment."""

from __future__ import annotations

import re
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
from facestore.settings import SETTINGS
from tests.support.types import Cli


def test_a_path_becomes_a_sqlite_url_and_a_url_stays(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path / 'a.db'}"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"


def test_the_option_wins_over_the_environment() -> None:
    env = {"FACESTORE_DB": "/env.db", "FACESTORE_BATCH_SIZE": "8", "FACESTORE_BACKBONE": "dlib"}
    assert resolve_db("/opt.db", env) == "sqlite:////opt.db"
    assert resolve_db(None, env) == "sqlite:////env.db"
    settings = resolve_backbone({"batch_size": 16}, env)
    assert (settings.name, settings.batch_size, settings.device) == ("dlib", 16, "auto")
    assert resolve_backbone({}, {}).name == DEFAULT_BACKBONE


@pytest.mark.parametrize("value", ["abc", "0", "-3"])
def test_a_bad_batch_size_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match="FACESTORE_BATCH_SIZE|at least 1"):
        resolve_backbone({}, {"FACESTORE_BATCH_SIZE": value})


def test_no_database_says_how_to_give_one() -> None:
    with pytest.raises(ConfigurationError, match="No database given") as raised:
        resolve_db(None, {})
    assert "--db / FACESTORE_DB: a SQLite file path" in raised.value.for_command_line


def test_torch_home_and_worker_host_follow_the_environment() -> None:
    assert torch_home({"TORCH_HOME": "/th"}) == Path("/th")
    assert torch_home({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/torch")
    assert configured_worker_host({"FACESTORE_WORKER_HOST": "box-7"}) == "box-7"
    assert configured_worker_host({}) is None


def test_every_setting_is_in_the_help_and_spelled_in_one_module(cli: Cli) -> None:
    """The settings are declared once (facestore.settings): --help's environment table
    lists every one, and no other module of facestore/ or cli/ spells a variable."""
    text = cli("--help").stdout
    for setting in SETTINGS:
        assert setting.env in text, setting.env
        if setting.flag:
            assert re.search(rf"{setting.env}\s+{re.escape(setting.flag)}", text), setting.env
    root = Path(__file__).resolve().parents[2]
    spelled = [
        path.relative_to(root).as_posix()
        for folder in ("facestore", "cli")
        for path in (root / folder).rglob("*.py")
        if "FACESTORE_" in path.read_text()
    ]
    assert spelled == ["facestore/settings.py"]


def test_an_error_names_the_parameter_from_python_and_the_flag_on_the_command_line() -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_backbone({"batch_size": "abc"}, {})
    assert str(raised.value) == (
        "BackboneSettings(batch_size=...) (or FACESTORE_BATCH_SIZE) must be a whole number, "
        "got 'abc'."
    )
    assert raised.value.for_command_line == (
        "--batch-size / FACESTORE_BATCH_SIZE must be a whole number, got 'abc'."
    )

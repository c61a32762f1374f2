"""A fast CLI start: `facestore --help` imports no command module, and the light commands
(status, db current, model list, failures) import neither torch, scikit-learn nor Alembic.
Checked by what is imported, not by timing (bench/scale.py prints the times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from facestore.cli.main import COMMANDS, main
from tests.support.processes import app_db

HEAVY = ("torch", "sklearn", "alembic", "scipy", "facenet_pytorch", "dlib")
# what no --help may load (issue 37: a --help took 5-15 s on a loaded machine)
NOT_FOR_HELP = (*HEAVY, "numpy", "PIL", "faiss", "sqlalchemy")

PROBE = """
import json, sys
from facestore.cli.main import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def imported_by(*args: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=set(heavy)), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_command_resolves_and_help_lists_its_own_words() -> None:
    ctx = click.Context(main)
    for name, (_, short_help) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert command is not None and command.name == name
        assert command.get_short_help_str(limit=1000) == short_help, name
    text = main.get_help(ctx)
    assert all(f"  {name} " in text for name in COMMANDS)


def test_help_imports_no_command_and_nothing_heavy() -> None:
    assert imported_by("--help") == []
    probe = (
        "import sys, facestore.cli.main; "
        "print(sorted(m for m in sys.modules if m.startswith('facestore.cli.')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "facestore.cli.watch" not in out.stdout and "sqlalchemy" not in out.stdout


@pytest.mark.parametrize(
    "command", [["status", "--json"], ["db", "current"], ["model", "list"], ["failures"]]
)
def test_light_commands_import_nothing_heavy(tmp_path: Path, command: list[str]) -> None:
    db = app_db(tmp_path / "app.db", people=2, per_person=2)
    assert imported_by("--db", str(db), "--model-dir", str(tmp_path / "m"), *command) == []


def every_command() -> list[list[str]]:
    """Each command line that has a --help: the commands, and the commands of groups."""
    ctx = click.Context(main)
    lines = []
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        lines.append([name])
        if isinstance(command, click.Group):
            lines += [[name, sub] for sub in command.commands]
    return lines


@pytest.mark.parametrize("command", every_command(), ids=" ".join)
def test_no_help_imports_torch_scikit_learn_or_numpy(command: list[str]) -> None:
    assert imported_by(*command, "--help", heavy=NOT_FOR_HELP) == []

"""docs/cli.md is the `--help` of every command: regenerated, it is what is committed."""

from __future__ import annotations

from pathlib import Path

from facestore.cli.main import main
from facestore.cli.reference import commands, render

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/cli.md is stale: run 'python -m facestore.cli.reference --write' and commit it"
    )


def test_it_has_every_command() -> None:
    text = DOC.read_text()
    root = main.make_context("facestore", [], resilient_parsing=True)
    names = [name for name, _, _ in commands(main, root)]
    assert {"watch", "model rollback", "db upgrade", "clusters"} <= set(names)
    for name in names:
        assert f"## facestore {name}\n" in text, name

"""docs/cli.md: the `--help` of every command, generated (as sqlite-utils keeps its CLI
docs with cog). tests/cli/test_reference.py fails when the file is stale; regenerate:

    python -m facestore.cli.reference --write
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

from facestore.cli.main import main

HEADER = """# CLI reference

Generated from `--help` by `python -m facestore.cli.reference --write`; a test fails
when it is stale. The manual is in the other pages of docs/ (README.md links them).
"""
WIDTH = 88  # the terminal width the help is rendered at, whatever the machine's


def commands(
    group: click.Group, ctx: click.Context, prefix: str = ""
) -> Iterator[tuple[str, click.Command, click.Context]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = command.make_context(
            name, [], parent=ctx, resilient_parsing=True, terminal_width=WIDTH
        )
        yield f"{prefix}{name}", command, sub
        if isinstance(command, click.Group):
            yield from commands(command, sub, f"{prefix}{name} ")


def render() -> str:
    root = main.make_context("facestore", [], resilient_parsing=True, terminal_width=WIDTH)
    parts = [HEADER, "## facestore\n", "```\n" + main.get_help(root).rstrip() + "\n```\n"]
    for name, command, ctx in commands(main, root):
        parts.append(f"## facestore {name}\n")
        parts.append("```\n" + command.get_help(ctx).rstrip() + "\n```\n")
    return "\n".join(parts)


def target() -> Path:
    return Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def run(argv: list[str]) -> int:
    if argv == ["--write"]:
        target().write_text(render())
        print(f"wrote {target()}")
        return 0
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))

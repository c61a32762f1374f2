"""The house rules docs/architecture.md states: every module of facestore/ and cli/ at
350 lines or fewer, every class at 250 or fewer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def sources() -> list[Path]:
    return sorted(p for folder in ("facestore", "cli") for p in (ROOT / folder).rglob("*.py"))


def test_no_module_over_350_lines_and_no_class_over_250() -> None:
    too_long = []
    for path in sources():
        text = path.read_text()
        if len(text.splitlines()) > 350:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > 250:
                    too_long.append(f"{path.relative_to(ROOT)}: class {node.name}, {size} lines")
    assert too_long == []
    assert len(sources()) > 50  # it looked at the code

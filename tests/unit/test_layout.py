"""The house rules docs/architecture.md states: every module of facestore/ and cli/ at
350 lines or fewer, every class at 250 or fewer."""

from __future__ import annotations

import ast
import re
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


def layout_block() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    return block.splitlines()


def named_in_layout() -> set[str]:
    """The modules the layout names, as paths: each line's NAME.py words, under the
    folder its indentation says (`store/` then its lines two spaces further in)."""
    named: set[str] = set()
    folders: list[tuple[int, str]] = []  # (indent, path) of the open folders
    for line in layout_block():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        while folders and folders[-1][0] >= indent:
            folders.pop()
        here = "/".join(path for _, path in folders)
        first = line.split()[0]
        if first.endswith("/"):
            folders.append((indent, first.rstrip("/")))
        names = re.split(r"\s{2,}", line.strip())[0]  # before the description
        for word in re.findall(r"[\w/]+\.py\b", names):
            named.add(f"{here}/{word}" if here else word)
    return named


def test_architecture_md_names_every_module_of_facestore_and_no_other() -> None:
    """Each module under facestore/ is in docs/architecture.md's layout, in its folder,
    and every module the layout names exists (packages' __init__.py aside)."""
    on_disk = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "facestore").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    named = {n for n in named_in_layout() if n.startswith("facestore/")}
    assert sorted(on_disk - named) == []  # modules the layout leaves out
    assert sorted(named - on_disk) == []  # modules the layout names that are not there

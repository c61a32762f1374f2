"""The reliability suite: every test here is marked `reliability` (and runs in CI).

Sizes are small by default so the suite stays within minutes; set
FACESTORE_RELIABILITY_FULL=1 for the full-size runs recorded in docs/reliability.md.
Each check prints its figures; with FACESTORE_RELIABILITY_REPORT=FILE they are
also appended to FILE.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    target = os.environ.get("FACESTORE_RELIABILITY_REPORT")

    def record(line: str) -> None:
        text = f"{request.node.name}: {line}"
        print(text)
        if target:
            with open(target, "a") as f:
                f.write(text + "\n")

    return record

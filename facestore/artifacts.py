"""Published model artifacts in model/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VERSION_FILE = "version.txt"
METRICS_FILE = "metrics.json"


def published_summary(model_dir: Path) -> dict[str, Any] | None:
    """{"version", "accuracy"} of the published model, or None when there is none."""
    version_path = model_dir / VERSION_FILE
    if not version_path.is_file():
        return None
    version = version_path.read_text().split()[0]
    accuracy = None
    metrics_path = model_dir / METRICS_FILE
    if metrics_path.is_file():
        accuracy = json.loads(metrics_path.read_text()).get("accuracy")
    return {"version": version, "accuracy": accuracy}

"""The settings that shape a model, recorded with it so that every later retrain (the
daemon's, `facestore retrain`, a re-embed's) reuses them unless they are given again.

They live in the model's metrics.json under "settings". A model published before they
were recorded still has most of them in its metrics (classifier, validation share,
seed, false-accept target); the rest take their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestore.settings import DEFAULT_FAR, DEFAULT_KEEP

log = logging.getLogger(__name__)

SETTINGS_KEY = "settings"  # in metrics.json
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SEED = 42


@dataclass(frozen=True)
class TrainingSettings:
    classifier: str = "auto"  # as asked for ("auto"), not as resolved ("lda")
    far: float = DEFAULT_FAR  # the open-set rule's false-accept target
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SEED
    keep: int = DEFAULT_KEEP  # published versions kept under model/history/

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def given(self, **overrides: Any) -> TrainingSettings:
        """These settings with each override that is not None."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def describe(self) -> str:
        """One line, as `model show` and `status` print it."""
        return (
            f"classifier {self.classifier}, false-accept target {self.far:g}, "
            f"validation share {self.val_fraction:g}, seed {self.seed}, "
            f"versions kept {self.keep}"
        )


def describe_settings(recorded: dict[str, Any]) -> str:
    """`TrainingSettings.describe` of settings as JSON (a model's, in `status`)."""
    return TrainingSettings(**recorded).describe()


def settings_from_metrics(metrics: dict[str, Any]) -> TrainingSettings:
    """The settings a model's metrics.json records (or, for a model from before they
    were recorded, the ones it implies); unreadable values take their defaults."""
    recorded = metrics.get(SETTINGS_KEY)
    if not isinstance(recorded, dict):
        open_set = metrics.get("open_set") or {}
        recorded = {
            "classifier": str(metrics.get("classifier", "auto")).split(" ")[0],
            "far": open_set.get("far_target"),
            "val_fraction": metrics.get("val_fraction"),
            "seed": metrics.get("seed"),
        }
    defaults = TrainingSettings()
    values: dict[str, Any] = {}
    for field in dataclasses.fields(TrainingSettings):
        value = recorded.get(field.name)
        default = getattr(defaults, field.name)
        if value is None:
            continue
        try:
            values[field.name] = type(default)(value)
        except (TypeError, ValueError):
            log.warning(
                "Ignoring the model's recorded %s %r: not a %s",
                field.name,
                value,
                type(default).__name__,
            )
    return defaults.given(**values)


def recorded_settings(model_dir: Path) -> TrainingSettings | None:
    """The current model's settings; None when there is no current model (or its
    metrics cannot be read: the retrain then starts from the defaults)."""
    from facestore.artifacts import CURRENT, METRICS_FILE  # numpy: not for `status`

    path = model_dir / CURRENT / METRICS_FILE
    try:
        metrics = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(
            "Cannot read the current model's settings from %s (%s); using defaults", path, exc
        )
        return None
    return settings_from_metrics(metrics) if isinstance(metrics, dict) else None


def settings_for(model_dir: Path, **given: Any) -> TrainingSettings:
    """The settings of the next retrain: each one given (not None), else the current
    model's, else the default."""
    return (recorded_settings(model_dir) or TrainingSettings()).given(**given)

"""The daemon's options: `facestore watch`'s flags as one value."""

from __future__ import annotations

from dataclasses import dataclass

from facestore.settings import DEFAULT_LEASE_SECONDS


@dataclass(frozen=True)
class WatchOptions:
    interval: float = 60.0
    poll: bool = False
    debounce: float = 1.0
    retrain_min_changes: int = 10
    retrain_delay: float = 600.0
    retrain_cooldown: float = 300.0
    classifier: str | None = None  # None: the current model's (training_settings)
    suggestions: bool = True
    min_confidence: float | None = None  # None: the model's calibrated open-set rule
    min_quality: float | None = None  # None: the model's quality gate at its floor (1.0)
    batch_size: int | None = None
    retrain: bool = True
    retrain_in_child: bool = True  # its memory goes back to the system after each retrain
    lease: float = DEFAULT_LEASE_SECONDS
    work_slice: float = 10.0  # seconds of embedding between retrain checks and suggestions
    clusters: bool = True  # group unknown faces (needs suggestions: unknown = not suggested)
    cluster_distance: float | None = None  # None: calibrated on the verified faces
    cluster_min_size: int | None = None

    @property
    def slice_seconds(self) -> float:
        return min(self.work_slice, self.interval)


# While a backlog lasts, verified faces get this share of each slice; unverified faces
# the rest (always at least one batch), so that they get suggestions meanwhile.
VERIFIED_SHARE = 0.75

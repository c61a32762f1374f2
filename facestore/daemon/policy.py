"""When to retrain: the pure policy, and the scheduler that keeps its state."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def count_changes(trained: Mapping[int, Any], current: Mapping[int, Any]) -> int:
    """Faces new, removed or relabelled between two (face_id -> person_id) training sets."""
    new = current.keys() - trained.keys()
    removed = trained.keys() - current.keys()
    relabelled = [f for f in current.keys() & trained.keys() if current[f] != trained[f]]
    return len(new) + len(removed) + len(relabelled)


def fingerprint(pairs: Mapping[int, Any]) -> str:
    canonical = json.dumps(sorted(pairs.items(), key=lambda p: p[0]), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RetrainPolicy:
    min_changes: int
    delay: float
    cooldown: float

    def due(
        self, changes: int, waiting_since: float, last_retrain: float | None, now: float
    ) -> bool:
        if changes == 0:
            return False
        if last_retrain is not None and now - last_retrain < self.cooldown:
            return False
        return changes >= self.min_changes or now - waiting_since >= self.delay


class RetrainScheduler:
    """The policy's state across passes: since when changes wait, when the last retrain
    started, and which exact training set failed (not retried until it changes)."""

    def __init__(self, policy: RetrainPolicy) -> None:
        self.policy = policy
        self.waiting_since: float | None = None
        self.last_retrain: float | None = None
        self.failed_set: str | None = None

    def due(self, changes: int, current: Mapping[int, Any], now: float) -> int:
        """`changes` (faces changed since the model, current: the training set now) if a
        retrain is due now, else 0."""
        if changes == 0:
            self.waiting_since = None
            return 0
        if self.waiting_since is None:
            self.waiting_since = now
        if self.failed_set is not None and fingerprint(current) == self.failed_set:
            return 0  # this exact set already failed; wait for the next change
        if not self.policy.due(changes, self.waiting_since, self.last_retrain, now):
            return 0
        return changes

    def started(self, now: float) -> None:
        self.last_retrain = now

    def busy(self) -> None:
        """Another worker holds the retrain lock: ask again next pass, no cooldown."""
        self.last_retrain = None

    def failed(self, current: Mapping[int, Any]) -> None:
        self.failed_set = fingerprint(current)

    def succeeded(self) -> None:
        self.failed_set = None
        self.waiting_since = None

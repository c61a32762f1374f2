"""The daemon's retrain: when the scheduler says it is due, retrain and publish."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facestore.backbones import Space
from facestore.daemon.policy import RetrainScheduler, count_changes
from facestore.daemon.telemetry import Telemetry
from facestore.errors import BusyError, FacestoreError
from facestore.retrain import retrain
from facestore.status import shown
from facestore.store import Store

log = logging.getLogger(__name__)


def retrain_if_due(
    scheduler: RetrainScheduler,
    store: Store,
    model_dir: Path,
    classifier: str,
    space: Space,
    trained: Mapping[int, Any],
    now: float,
    telemetry: Telemetry | None = None,
    current: Mapping[int, Any] | None = None,
    changes: int | None = None,
) -> bool:
    """Retrain if the labels changed enough since the model; whether one was published.

    current: the training pairs as last read, when nothing can have changed since
    (else they are read: at 1M faces that is the costly part); changes: how many
    differ from `trained`, when known (else counted).
    """
    if current is None:
        current = store.library.training_pairs(space.config_hash)
    if changes is None:
        changes = count_changes(trained, current)
    changes = scheduler.due(changes, current, now)
    if not changes:
        return False
    log.info("Retrain started: %d faces changed since the current model", changes)
    scheduler.started(now)
    try:
        report = retrain(store, model_dir, classifier)
    except BusyError:
        scheduler.busy()
        log.info("Another worker is retraining; checking again next reconcile")
        return False
    except FacestoreError as exc:
        scheduler.failed(current)
        if telemetry is not None:
            telemetry.retrain_failures.inc()
        log.warning("Retrain failed, retrying after the next change: %s", exc)
        return False
    scheduler.succeeded()
    if telemetry is not None:
        telemetry.retrained(report.seconds)
    log.info(
        "Retrain published model %s (accuracy %s, %d people, %.1fs)",
        report.version,
        shown(report.accuracy),
        report.classes_kept,
        report.seconds,
    )
    return True

"""The retrain trigger: when the daemon retrains, in one place.

It owns the training pairs (face_id -> person_id of the verified faces with a
vector, kept current from the change log), the scheduler (the policy's state: since
when changes wait, the last retrain, a training set that failed) and whether the
labels may have changed since it last looked. The daemon tells it three things and
asks it one:

- `labels_may_have_changed()`: the app wrote, verified faces were embedded, or the
  active space changed; the pairs are read (from the log) before the next decision;
- `recheck(space, ids)`: on PostgreSQL, read a rolling slice's pairs again;
- `maybe_retrain(space, trained)`: retrain and publish if the policy says so;
- `pairs_for(space)`: the pairs as last read, for the grouper's calibration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from facestore.backbones import Space
from facestore.daemon.child_retrain import RetrainCrashed, RetrainStopped
from facestore.daemon.options import WatchOptions
from facestore.daemon.pairs import TrainingPairs
from facestore.daemon.policy import RetrainPolicy, RetrainScheduler
from facestore.daemon.telemetry import Telemetry
from facestore.errors import BusyError, FacestoreError
from facestore.retrain import RetrainReport, retrain
from facestore.status import shown
from facestore.store import IdRanges, Store

log = logging.getLogger(__name__)

RETRAIN_ALLOWANCE = 1800.0  # seconds a retrain may run without a beat (then: hung)

# Runs one retrain and publishes it: (store, model_dir, classifier, stop) -> report
Retrain = Callable[[Store, Path, str | None, threading.Event], RetrainReport]


def retrain_here(
    store: Store, model_dir: Path, classifier: str | None, stop: threading.Event
) -> RetrainReport:
    """In this process (a stop waits for the fit to end)."""
    return retrain(store, model_dir, classifier)


class RetrainTrigger:
    def __init__(
        self,
        store: Store,
        model_dir: Path,
        options: WatchOptions,
        telemetry: Telemetry,
        clock: Callable[[], float],
        stop: threading.Event,
        run: Retrain = retrain_here,
        before_run: Callable[[], None] | None = None,
    ) -> None:
        """before_run: called as a retrain starts (the daemon lets go of its model)."""
        self.store = store
        self.model_dir = model_dir
        self.classifier = options.classifier
        self.telemetry = telemetry
        self.clock = clock
        self.run = run
        self.before_run = before_run
        self.stop = stop
        self.pairs = TrainingPairs(store)
        self.scheduler = RetrainScheduler(
            RetrainPolicy(
                options.retrain_min_changes, options.retrain_delay, options.retrain_cooldown
            )
        )
        self._labels_changed = True
        self._current: dict[int, Any] | None = None  # the pairs as last read
        self._read_for: tuple[str, int] | None = None  # (space, id of the model's pairs)
        self._others_retraining = False  # the last try found the retrain lock held

    def labels_may_have_changed(self) -> None:
        self._labels_changed = True

    def recheck(self, space: Space, faces: IdRanges) -> None:
        """PostgreSQL commits log rows out of seq order: a rolling slice's pairs are read
        again, so that a row the log reader passed over is caught within one period."""
        self.pairs.recheck(space.config_hash, faces)

    def pairs_for(self, space: Space) -> Mapping[int, Any] | None:
        """The training pairs as last read, if they are of this space (else None)."""
        if self._read_for is not None and self._read_for[0] == space.config_hash:
            return self._current
        return None

    def maybe_retrain(self, space: Space, trained: Mapping[int, Any]) -> bool:
        """Retrain if the labels changed enough since the model that saw `trained`;
        whether a model was published. Reads nothing when nothing changed and nothing
        waits."""
        read_for = (space.config_hash, id(trained))
        if (
            read_for == self._read_for
            and not self._labels_changed
            and self.scheduler.waiting_since is None
        ):
            return False
        other_space = self._read_for is None or self._read_for[0] != space.config_hash
        if self._labels_changed or self._current is None or other_space:
            self._current = self.pairs.current(space.config_hash)
            self._labels_changed = False
        self._read_for = read_for
        now = self.clock()
        changes = self.scheduler.due(self.pairs.differences(trained), self._current, now)
        if not changes:
            return False
        with self.telemetry.busy("retrain", RETRAIN_ALLOWANCE):
            return self._retrain(changes, now)

    def _retrain(self, changes: int, now: float) -> bool:
        assert self._current is not None
        log.info("Retrain started: %d faces changed since the current model", changes)
        self.scheduler.started(now)
        if self.before_run is not None and not self._others_retraining:
            self.before_run()  # not again while another worker holds the lock
        self._others_retraining = False
        try:
            report = self.run(self.store, self.model_dir, self.classifier, self.stop)
        except BusyError:
            self.scheduler.busy()
            self._others_retraining = True
            log.info("Another worker is retraining; checking again next reconcile")
            return False
        except RetrainStopped:
            return False
        except RetrainCrashed as exc:  # not the data's fault: again after the cooldown
            self.telemetry.retrain_failures.inc()
            log.error("Retrain failed: %s", exc)
            return False
        except FacestoreError as exc:
            self.scheduler.failed(self._current)
            self.telemetry.retrain_failures.inc()
            log.warning("Retrain failed, retrying after the next change: %s", exc)
            return False
        self.scheduler.succeeded()
        self.telemetry.retrained(report.seconds)
        log.info(
            "Retrain published model %s (accuracy %s, %d people, %.1fs)",
            report.version,
            shown(report.accuracy),
            report.classes_kept,
            report.seconds,
        )
        return True

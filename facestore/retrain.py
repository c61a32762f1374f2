"""Retrain over the cached vectors of the active space and publish. Never decodes images."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facestore import artifacts
from facestore.backbones import Space
from facestore.errors import TrainingError
from facestore.locks import retrain_lock
from facestore.openset import DEFAULT_FAR
from facestore.store import Store, TrainingRows
from facestore.timestamps import now_iso
from facestore.training import (
    ClassifierFactory,
    Dataset,
    build_dataset,
    classifier_factory,
    fit,
    resolve_name,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainReport:
    version: str
    accuracy: float | None
    n_train: int
    n_val: int
    classes_kept: int
    classes_dropped: list[Any]
    samples_dropped: int
    seconds: float
    classifier: str
    open_set: dict[str, Any] | None = None
    validation_open_set: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "accuracy": self.accuracy,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "classes_kept": self.classes_kept,
            "classes_dropped": self.classes_dropped,
            "samples_dropped": self.samples_dropped,
            "seconds": round(self.seconds, 3),
            "classifier": self.classifier,
            "open_set": self.open_set,
            "validation_open_set": self.validation_open_set,
        }


def library_dataset(
    store: Store, space: Space | None = None
) -> tuple[Space, TrainingRows, Dataset]:
    """The verified faces' vectors of a space (default: the active one), as a Dataset."""
    space = space or store.spaces.active()
    if space is None:
        raise TrainingError(
            "No embedding space is active yet, so there are no vectors to train on. "
            "Run 'facestore embed' (or 'facestore train') first."
        )
    rows = store.library.training_rows(space.config_hash)
    return space, rows, build_dataset(rows.face_ids, rows.person_ids, rows.vectors)


def retrain(
    store: Store,
    model_dir: Path,
    classifier: str | ClassifierFactory = "auto",
    *,
    val_fraction: float = 0.2,
    seed: int = 42,
    far: float = DEFAULT_FAR,
    keep: int = artifacts.DEFAULT_KEEP,
    space: Space | None = None,
    switch: Callable[[Callable[[], None]], None] | None = None,
) -> RetrainReport:
    """Fit on the vectors of verified faces and publish a new version.

    The space is the active one unless given (reembed trains a new space before it
    activates it, through `switch`; see artifacts.publish). Any refusal (no
    vectors, fewer than 2 classes) happens before model/ is touched. While another
    retrain holds the lock (database-wide on PostgreSQL), BusyError, nothing published.
    """
    started = time.perf_counter()
    space, rows, dataset = library_dataset(store, space)
    if isinstance(classifier, str):
        resolved = resolve_name(classifier, len(dataset.labels))
        name, factory = resolved, classifier_factory(resolved)
        if resolved != classifier:
            name = f"{classifier} ({resolved})"
    else:
        name, factory = getattr(classifier, "__name__", "custom"), classifier
    log.info(
        "Retraining %s on %d vectors of %d people in space %s",
        name,
        len(dataset.labels),
        len(dataset.classes),
        space.label,
    )
    with retrain_lock(store.engine, model_dir):  # one at a time, database-wide
        result = fit(dataset, factory, val_fraction=val_fraction, seed=seed, far=far)
        embedding_config = {
            **space.config,
            "backbone": space.backbone,
            "config_hash": space.config_hash,
            "device": store.spaces.device_info(space.config_hash),
        }
        metrics = {
            **result.metrics(),
            "classifier": name,
            "val_fraction": val_fraction,
            "seed": seed,
            "space": space.config_hash,
            "created_at": now_iso(),
        }
        version = artifacts.publish(
            model_dir,
            result.estimator,
            dataset.classes,
            embedding_config,
            metrics,
            keep=keep,
            training_set=list(zip(rows.face_ids, rows.person_ids, strict=True)),
            switch=switch,
            open_set=result.open_set,
        )
    return RetrainReport(
        version=version,
        accuracy=result.accuracy,
        n_train=result.n_train,
        n_val=result.n_val,
        classes_kept=len(dataset.classes),
        classes_dropped=dataset.dropped_classes,
        samples_dropped=dataset.dropped_samples,
        seconds=time.perf_counter() - started,
        classifier=name,
        open_set=metrics["open_set"],
        validation_open_set=metrics["validation_open_set"],
    )

"""Retrain over the cached vectors of the active space and publish. Never decodes images."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facestore.backbones import Space
from facestore.classifiers import (
    CLASSIFIERS,
    ClassifierFactory,
    classifier_factory,
    resolve_name,
)
from facestore.errors import TrainingError
from facestore.locks import retrain_lock
from facestore.quality import DEFAULT_MIN_QUALITY, QualityGate, calibrate_gate
from facestore.repository import ModelRepository, StagedVersion
from facestore.store import Store, TrainingRows
from facestore.timestamps import now_iso
from facestore.training import TRAINING_DTYPE, Dataset, build_dataset, fit, keep_rows
from facestore.training_settings import SETTINGS_KEY, TrainingSettings, settings_for

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
    low_quality_left_out: int = 0  # verified faces below the quality gate, not trained on
    settings: TrainingSettings = TrainingSettings()  # recorded with the model

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
            "low_quality_left_out": self.low_quality_left_out,
            "settings": self.settings.as_json(),
        }


@dataclass(frozen=True)
class LibraryData:
    """What a retrain reads: the space, every verified face's row (the model's training
    set), the quality gate calibrated on them, and the Dataset it fits: the verified
    faces the gate does not find low quality (docs/accuracy.md: blurred or tiny
    verified faces cost 10-18 points of accuracy when they train)."""

    space: Space
    rows: TrainingRows
    gate: QualityGate | None
    dataset: Dataset
    low_quality: int  # verified faces left out of the Dataset


def library_dataset(store: Store, space: Space | None = None) -> LibraryData:
    """The verified faces' vectors of a space (default: the active one), as a Dataset."""
    space = space or store.spaces.active()
    if space is None:
        raise TrainingError(
            "No embedding space is active yet, so there are no vectors to train on. "
            "Run 'facestore embed' (or 'facestore train') first."
        )
    rows = store.library.training_rows(space.config_hash, TRAINING_DTYPE)
    gate = calibrate_gate(rows.signals)
    keep = good_rows(gate, rows) if gate is not None else list(range(len(rows.face_ids)))
    if len(keep) < len(rows.face_ids):
        log.info(
            "Leaving %d low-quality verified faces out of training",
            len(rows.face_ids) - len(keep),
        )
    dataset = build_dataset(
        [rows.face_ids[i] for i in keep],
        [rows.person_ids[i] for i in keep],
        keep_rows(rows.vectors, keep),  # in place: the rows' matrix is not used again
    )
    return LibraryData(space, rows, gate, dataset, len(rows.face_ids) - len(keep))


def good_rows(gate: QualityGate, rows: TrainingRows) -> list[int]:
    """The rows whose crops are not below any of the gate's floors (size, sharpness,
    JPEG quality)."""
    judged = gate.judge(rows.signals, len(rows.face_ids))
    return [int(i) for i in np.flatnonzero(judged.quality >= DEFAULT_MIN_QUALITY)]


@dataclass(frozen=True)
class Training:
    """What a retrain fits: checked before model/ is touched or a lock is taken."""

    data: LibraryData
    name: str
    factory: ClassifierFactory


def prepare(
    store: Store, classifier: str | ClassifierFactory = "auto", space: Space | None = None
) -> Training:
    """The vectors and classifier of a retrain; refuses (no vectors, one class) early."""
    data = library_dataset(store, space)
    dataset = data.dataset
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
        data.space.label,
    )
    return Training(data, name, factory)


def fit_and_stage(
    store: Store,
    repository: ModelRepository,
    training: Training,
    settings: TrainingSettings,
) -> tuple[StagedVersion, RetrainReport]:
    """Fit, calibrate the open-set rule and stage the version (not current yet), with
    the settings recorded in its metrics."""
    started = time.perf_counter()
    data = training.data
    space, rows, dataset, gate = data.space, data.rows, data.dataset, data.gate
    result = fit(
        dataset,
        training.factory,
        val_fraction=settings.val_fraction,
        seed=settings.seed,
        far=settings.far,
    )
    embedding_config = {
        **space.config,
        "backbone": space.backbone,
        "config_hash": space.config_hash,
        "device": store.spaces.device_info(space.config_hash),
    }
    metrics = {
        **result.metrics(),
        "classifier": training.name,
        "val_fraction": settings.val_fraction,
        "seed": settings.seed,
        SETTINGS_KEY: settings.as_json(),
        "space": space.config_hash,
        "created_at": now_iso(),
        "quality_gate": gate.describe() if gate is not None else None,
        "low_quality_left_out": data.low_quality,
    }
    staged = repository.stage(
        result.estimator,
        dataset.classes,
        embedding_config,
        metrics,
        training_set=list(zip(rows.face_ids, rows.person_ids, strict=True)),
        open_set=result.open_set,
        quality_gate=gate,
    )
    report = RetrainReport(
        version=staged.version,
        accuracy=result.accuracy,
        n_train=result.n_train,
        n_val=result.n_val,
        classes_kept=len(dataset.classes),
        classes_dropped=dataset.dropped_classes,
        samples_dropped=dataset.dropped_samples,
        seconds=time.perf_counter() - started,
        classifier=training.name,
        open_set=metrics["open_set"],
        validation_open_set=metrics["validation_open_set"],
        low_quality_left_out=data.low_quality,
        settings=settings,
    )
    return staged, report


def retrain(
    store: Store,
    model_dir: Path,
    classifier: str | ClassifierFactory | None = None,
    *,
    val_fraction: float | None = None,
    seed: int | None = None,
    far: float | None = None,
    keep: int | None = None,
    space: Space | None = None,
) -> RetrainReport:
    """Fit on the vectors of verified faces (default: the active space's) and publish.

    Each setting left None is the current model's (facestore.training_settings), else
    its default; the settings used are recorded with the new model. A classifier
    factory is used as given and recorded by name.

    Any refusal (no vectors, fewer than 2 classes) happens before model/ is touched.
    While another retrain holds the lock (database-wide on PostgreSQL), BusyError,
    nothing published.
    """
    started = time.perf_counter()
    named = classifier if isinstance(classifier, str) or classifier is None else None
    settings = settings_for(
        model_dir, classifier=named, val_fraction=val_fraction, seed=seed, far=far, keep=keep
    )
    if classifier is None and settings.classifier not in CLASSIFIERS:
        log.warning(
            "The current model was trained with classifier %r, which is not one of %s; "
            "retraining with auto. Pass the classifier again to keep it.",
            settings.classifier,
            ", ".join(sorted(CLASSIFIERS)),
        )
        settings = settings.given(classifier="auto")
    training = prepare(store, classifier or settings.classifier, space)
    if named is None and classifier is not None:
        settings = settings.given(classifier=training.name)
    repository = ModelRepository(model_dir, settings.keep)
    with retrain_lock(store.engine, model_dir):  # one at a time, database-wide
        staged, report = fit_and_stage(store, repository, training, settings)
        staged.make_current()
    return dataclasses.replace(report, seconds=time.perf_counter() - started)

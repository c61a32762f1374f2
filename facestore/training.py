"""Dataset, split, fit and metrics over cached vectors. Pure: arrays in, estimators out.

Choices (documented in the README):
- classes with fewer than 2 samples are dropped, with a warning naming them;
- the split is stratified per class: a class of n samples gives round(n * val_fraction)
  samples to validation, but always keeps at least one for training, so a class of 2
  samples at the default 0.2 is trained on and not validated;
- after validation, the published model is refit on all kept samples (validation
  accuracy is the estimate of the train-split model, the best we can say without
  a separate test set).
"""

from __future__ import annotations

import logging
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from facestore.classifiers import ClassifierFactory
from facestore.errors import TrainingError
from facestore.openset import DEFAULT_FAR, OpenSetRule, calibrate

log = logging.getLogger(__name__)

MIN_SAMPLES_PER_CLASS = 2


def person_sort_key(person_id: Any) -> tuple[str, Any]:
    return (type(person_id).__name__, person_id)


@dataclass
class Dataset:
    vectors: np.ndarray
    labels: np.ndarray  # index into classes
    classes: list[Any]  # person_id per label, in label order
    face_ids: list[int]
    dropped_classes: list[Any] = field(default_factory=list)
    dropped_samples: int = 0


def build_dataset(
    face_ids: Sequence[int], person_ids: Sequence[Any], vectors: np.ndarray
) -> Dataset:
    if len(face_ids) == 0:
        raise TrainingError(
            "There are no vectors of verified faces in the active space. "
            "Run 'facestore embed' (or 'facestore train') first."
        )
    counts = Counter(person_ids)
    dropped = sorted(
        (p for p, n in counts.items() if n < MIN_SAMPLES_PER_CLASS), key=person_sort_key
    )
    if dropped:
        log.warning(
            "Dropping %d class(es) with fewer than %d samples: %s",
            len(dropped),
            MIN_SAMPLES_PER_CLASS,
            ", ".join(map(str, dropped)),
        )
    classes = sorted((p for p in counts if p not in set(dropped)), key=person_sort_key)
    if len(classes) < 2:
        raise TrainingError(
            f"Need at least 2 people with {MIN_SAMPLES_PER_CLASS}+ embedded verified faces to "
            f"train, found {len(classes)}. Verify more faces in the app, then run "
            "'facestore embed' and retrain."
        )
    index = {p: i for i, p in enumerate(classes)}
    keep = [i for i, p in enumerate(person_ids) if p in index]
    log.info(
        "Class distribution: %d classes, %d samples (min %d, max %d per class)",
        len(classes),
        len(keep),
        min(counts[p] for p in classes),
        max(counts[p] for p in classes),
    )
    return Dataset(
        vectors=np.asarray(vectors[keep], dtype=np.float32),
        labels=np.asarray([index[person_ids[i]] for i in keep], dtype=np.int64),
        classes=classes,
        face_ids=[int(face_ids[i]) for i in keep],
        dropped_classes=dropped,
        dropped_samples=len(face_ids) - len(keep),
    )


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): per class round(n * fraction) to validation, at least 1 to train."""
    if not 0 <= val_fraction < 1:
        raise TrainingError(f"--val-fraction must be in [0, 1), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = min(len(members) - 1, int(round(len(members) * val_fraction)))
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(val, dtype=np.int64))


PREDICT_CHUNK = 2048  # a 20k x 5k-class score matrix would take 800 MB


def predict_best(model: Any, vectors: np.ndarray) -> np.ndarray:
    """The most probable class (argmax of predict_proba), a chunk at a time.

    This is the predictor's rule. With SVC(probability=True) it can differ from
    model.predict() on borderline faces (Platt scaling vs. one-vs-one votes).
    """
    parts = [
        model.classes_[model.predict_proba(vectors[i : i + PREDICT_CHUNK]).argmax(1)]
        for i in range(0, len(vectors), PREDICT_CHUNK)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class OpenSetOutcome:
    """Shares of held-out known faces: named right, named wrongly, left unknown."""

    named_right: float
    named_wrong: float
    unknown: float

    def as_json(self) -> dict[str, float]:
        return {
            "named_right": round(self.named_right, 4),
            "named_wrong": round(self.named_wrong, 4),
            "unknown": round(self.unknown, 4),
        }


def open_set_outcome(
    predicted: np.ndarray, truth: np.ndarray, accepted: np.ndarray
) -> OpenSetOutcome:
    n = max(1, len(truth))
    right = int(np.sum(accepted & (predicted == truth)))
    wrong = int(np.sum(accepted & (predicted != truth)))
    return OpenSetOutcome(right / n, wrong / n, (len(truth) - right - wrong) / n)


@dataclass
class TrainResult:
    estimator: ClassifierMixin
    dataset: Dataset
    accuracy: float | None
    n_train: int
    n_val: int
    fit_seconds: float
    open_set: OpenSetRule
    val_open_set: OpenSetOutcome | None = None

    def metrics(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "n_train": self.n_train,
            "n_val": self.n_val,
            "classes_kept": len(self.dataset.classes),
            "classes_dropped": self.dataset.dropped_classes,
            "samples_kept": len(self.dataset.labels),
            "samples_dropped": self.dataset.dropped_samples,
            "fit_seconds": round(self.fit_seconds, 3),
            "open_set": self.open_set.describe(),
            "validation_open_set": self.val_open_set.as_json() if self.val_open_set else None,
        }


def fit(
    dataset: Dataset,
    factory: ClassifierFactory,
    val_fraction: float = 0.2,
    seed: int = 42,
    far: float = DEFAULT_FAR,
) -> TrainResult:
    """Validate on a stratified split, then refit on all kept samples for publishing.

    The open-set rule is calibrated on the published model's training vectors. On
    the validation split, a rule calibrated on the training split measures how many
    held-out known faces are named right, named wrongly or left unknown.
    """
    started = time.perf_counter()
    train_idx, val_idx = stratified_split(dataset.labels, val_fraction, seed)
    n_classes = len(dataset.classes)
    accuracy, val_open_set = None, None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*`probability` parameter", FutureWarning)
        if len(val_idx):
            model = factory(seed, len(train_idx))
            model.fit(dataset.vectors[train_idx], dataset.labels[train_idx])
            val_vectors, truth = dataset.vectors[val_idx], dataset.labels[val_idx]
            predicted = predict_best(model, val_vectors)
            accuracy = float(np.mean(predicted == truth))
            log.info("Validation accuracy %.4f on %d samples", accuracy, len(val_idx))
            train_labels = dataset.labels[train_idx]
            if np.bincount(train_labels, minlength=n_classes).min() >= MIN_SAMPLES_PER_CLASS:
                rule = calibrate(dataset.vectors[train_idx], train_labels, n_classes, far)
                distances = rule.distances(val_vectors)[np.arange(len(val_idx)), predicted]
                val_open_set = open_set_outcome(predicted, truth, rule.accepts(distances))
        final = factory(seed, len(dataset.labels))
        final.fit(dataset.vectors, dataset.labels)
    open_set = calibrate(dataset.vectors, dataset.labels, n_classes, far)
    log.info(
        "Open-set threshold %.4f at a false-accept target of %.1f%% (%s)",
        open_set.threshold,
        100 * far,
        open_set.stats,
    )
    return TrainResult(
        estimator=final,
        dataset=dataset,
        accuracy=accuracy,
        n_train=len(train_idx),
        n_val=len(val_idx),
        fit_seconds=time.perf_counter() - started,
        open_set=open_set,
        val_open_set=val_open_set,
    )

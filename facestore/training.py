"""Dataset, split, fit and metrics over cached vectors. Pure: arrays in, estimators out.

Choices (documented in docs/models.md):
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin

from facestore.classifiers import ClassifierFactory, class_members
from facestore.errors import TrainingError
from facestore.openset import OpenSetRule, calibrate
from facestore.settings import DEFAULT_FAR

log = logging.getLogger(__name__)

MIN_SAMPLES_PER_CLASS = 2

# The training matrix is kept in float16: half the memory of float32 (900k x 512 are
# 879 MiB, not 1,758), and every fit and prediction reads it a chunk at a time in
# float32 or float64. Rounding moves a unit vector by a cosine distance of 2e-8;
# docs/benchmarks.md has the figures of both on real faces.
TRAINING_DTYPE = np.float16


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
    """The kept classes' samples. A float16 or float32 `vectors` is used, not copied: when
    classes are dropped, the kept rows are moved up inside it (1M x 512 floats are 2 GB)."""
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
        vectors=keep_rows(float_matrix(vectors), keep),
        labels=np.asarray([index[person_ids[i]] for i in keep], dtype=np.int64),
        classes=classes,
        face_ids=[int(face_ids[i]) for i in keep],
        dropped_classes=dropped,
        dropped_samples=len(face_ids) - len(keep),
    )


def float_matrix(vectors: np.ndarray) -> np.ndarray:
    """vectors as they are when float16 or float32, else as float32."""
    vectors = np.asarray(vectors)
    return vectors if vectors.dtype in (np.float16, np.float32) else vectors.astype(np.float32)


def as_float32(vectors: np.ndarray) -> np.ndarray:
    """A chunk of the training matrix, ready for a scikit-learn model (no copy if float32)."""
    return np.asarray(vectors, dtype=np.float32)


def keep_rows(vectors: np.ndarray, keep: Sequence[int]) -> np.ndarray:
    """vectors[keep] for ascending `keep`, moved up in place a chunk at a time: row keep[i]
    never lies before i, so each chunk reads rows that are not yet overwritten."""
    if len(keep) == len(vectors):
        return vectors
    kept = np.asarray(keep, dtype=np.int64)
    for start in range(0, len(kept), PREDICT_CHUNK):
        chunk = kept[start : start + PREDICT_CHUNK]
        vectors[start : start + len(chunk)] = vectors[chunk]
    return vectors[: len(kept)]


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): per class round(n * fraction) to validation, at least 1 to train."""
    if not 0 <= val_fraction < 1:
        raise TrainingError(f"--val-fraction must be in [0, 1), got {val_fraction}.")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    val: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    for members in class_members(labels):
        rng.shuffle(members)
        n_val = min(len(members) - 1, int(round(len(members) * val_fraction)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


PREDICT_CHUNK = 2048  # a 20k x 5k-class score matrix would take 800 MB


def row_chunks(rows: np.ndarray | None, n: int) -> Iterator[np.ndarray | slice]:
    """Chunks of `rows` (or of 0..n-1) of PREDICT_CHUNK, to index the vectors with."""
    if rows is None:
        yield from (slice(i, i + PREDICT_CHUNK) for i in range(0, n, PREDICT_CHUNK))
    else:
        yield from (rows[i : i + PREDICT_CHUNK] for i in range(0, len(rows), PREDICT_CHUNK))


def predict_best(model: Any, vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The most probable class (argmax of predict_proba) of vectors (or vectors[rows]),
    a chunk at a time.

    This is the predictor's rule. With SVC(probability=True) it can differ from
    model.predict() on borderline faces (Platt scaling vs. one-vs-one votes).
    """
    parts = [
        model.classes_[model.predict_proba(as_float32(vectors[chunk])).argmax(1)]
        for chunk in row_chunks(rows, len(vectors))
    ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def fit_rows(model: Any, vectors: np.ndarray, labels: np.ndarray, rows: np.ndarray | None) -> None:
    """Fit on vectors[rows] (all when None); without a copy where the model can (fit_rows),
    else on a float32 copy of those rows."""
    if hasattr(model, "fit_rows"):
        model.fit_rows(vectors, labels, rows)
    elif rows is None:
        model.fit(as_float32(vectors), labels)
    else:
        model.fit(as_float32(vectors[rows]), labels[rows])


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
        vectors, labels = dataset.vectors, dataset.labels
        if len(val_idx):
            model = factory(seed, len(train_idx))
            fit_rows(model, vectors, labels, train_idx)
            predicted, truth = predict_best(model, vectors, val_idx), labels[val_idx]
            accuracy = float(np.mean(predicted == truth))
            log.info("Validation accuracy %.4f on %d samples", accuracy, len(val_idx))
            if np.bincount(labels[train_idx], minlength=n_classes).min() >= MIN_SAMPLES_PER_CLASS:
                rule = calibrate(vectors, labels, n_classes, far, rows=train_idx)
                distances = np.concatenate(
                    [
                        rule.distances_to(
                            vectors[val_idx[i : i + PREDICT_CHUNK]],
                            predicted[i : i + PREDICT_CHUNK],
                        )
                        for i in range(0, len(val_idx), PREDICT_CHUNK)
                    ]
                )
                val_open_set = open_set_outcome(predicted, truth, rule.accepts(distances))
        final = factory(seed, len(labels))
        fit_rows(final, vectors, labels, None)
    open_set = calibrate(vectors, labels, n_classes, far)
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

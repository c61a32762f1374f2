"""How well a library works: closed-set accuracy, the open-set curve, confused people. Pure.

Everything here takes the cached vectors of verified faces (a training Dataset) and
returns figures; the CLI reads the vectors and prints or plots them.

- Closed set: stratified k-fold accuracy per classifier, with the predictor's rule
  (argmax of predict_proba).
- Open set: for each seed, a share of the people is held out whole as strangers;
  of every other person, 30% of the faces (keeping at least 2 to train on) are
  held out as known test faces. The model is trained and its open-set rule
  calibrated on the rest, as retrain does. For a range of false-accept targets,
  the shares of known faces named right, named wrongly and left unknown, and of
  strangers rejected, are averaged over the seeds. `calibrated` is the point that
  retrain's default target picks.
- Confused pairs: the pairs of people the k-fold predictions mix up most.
- Split people: people whose faces fall into two groups much further apart than a
  person's faces usually are (the top merge of average linkage over their faces, against
  the library's median): a hint that two people share one name. On ORL (dlib) the rule
  lists 92.5% of merged pairs, and also 7 of the 40 single people, whose pose changes
  split them as far (bench/split_people.py, docs/accuracy.md): a list to look at, not
  a verdict.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from facestore.classifiers import ClassifierFactory
from facestore.errors import TrainingError
from facestore.openset import (
    class_centroids,
    leave_one_out,
    rule_from,
    unit_rows,
)
from facestore.settings import DEFAULT_FAR, DEFAULT_FOLDS
from facestore.training import (
    MIN_SAMPLES_PER_CLASS,
    Dataset,
    as_float32,
    open_set_outcome,
    predict_best,
)

log = logging.getLogger(__name__)

DEFAULT_SEEDS = (0, 1, 2)
STRANGER_SHARE = 0.25
KNOWN_TEST_SHARE = 0.3
FAR_GRID = (0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5)
CONFUSED_PAIRS = 10
SPLIT_FACTOR = 1.5  # times the library's median split: bench/split_people.py on ORL
SPLIT_MIN_FACES = 4  # fewer faces cannot show two groups of two
SPLIT_PEOPLE = 10


@dataclass
class ClosedSet:
    accuracy: float
    std: float
    folds: int

    def as_json(self) -> dict[str, Any]:
        return {"accuracy": round(self.accuracy, 4), "std": round(self.std, 4), "folds": self.folds}


@dataclass
class CurvePoint:
    far_target: float
    named_right: float
    named_wrong: float
    unknown: float
    strangers_rejected: float
    min_named_right: float
    min_strangers_rejected: float

    def as_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass
class Evaluation:
    faces: int
    people: int
    closed_set: dict[str, ClosedSet]
    classifier: str
    far_target: float
    seeds: list[int]
    strangers_per_seed: int
    curve: list[CurvePoint]
    calibrated: CurvePoint
    confused_pairs: list[tuple[Any, Any, int]] = field(default_factory=list)
    split_people: list[SplitPerson] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "faces": self.faces,
            "people": self.people,
            "closed_set": {name: r.as_json() for name, r in self.closed_set.items()},
            "open_set": {
                "classifier": self.classifier,
                "far_target": self.far_target,
                "seeds": self.seeds,
                "strangers_per_seed": self.strangers_per_seed,
                "stranger_share": STRANGER_SHARE,
                "known_test_share": KNOWN_TEST_SHARE,
                "curve": [p.as_json() for p in self.curve],
                "calibrated": self.calibrated.as_json(),
            },
            "confused_pairs": [{"people": [a, b], "errors": n} for a, b, n in self.confused_pairs],
            "split_people": [p.as_json() for p in self.split_people],
        }


def closed_set_accuracy(
    dataset: Dataset, factory: ClassifierFactory, folds: int, seed: int = 0
) -> tuple[ClosedSet, np.ndarray]:
    """Stratified k-fold accuracy and every face's out-of-fold prediction."""
    folds = max(2, min(folds, int(np.bincount(dataset.labels).max())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = np.empty_like(dataset.labels)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a person with fewer faces than folds
        warnings.filterwarnings("ignore", ".*`probability` parameter", FutureWarning)
        for train, test in splitter.split(dataset.vectors, dataset.labels):
            model = factory(seed, len(train))
            model.fit(dataset.vectors[train], dataset.labels[train])
            predicted[test] = predict_best(model, dataset.vectors[test])
            scores.append(float(np.mean(predicted[test] == dataset.labels[test])))
    return ClosedSet(float(np.mean(scores)), float(np.std(scores)), folds), predicted


def confused_pairs(dataset: Dataset, predicted: np.ndarray, top: int) -> list[tuple[Any, Any, int]]:
    pairs: Counter[tuple[int, int]] = Counter()
    for truth, guess in zip(dataset.labels, predicted, strict=True):
        if truth != guess:
            a, b = sorted((int(truth), int(guess)))
            pairs[(a, b)] += 1
    return [(dataset.classes[a], dataset.classes[b], n) for (a, b), n in pairs.most_common(top)]


@dataclass(frozen=True)
class SplitPerson:
    person_id: Any
    distance: float  # average cosine distance between the two groups of their faces
    ratio: float  # distance / the library's median of it
    groups: tuple[int, int]  # faces in each group, bigger first

    def as_json(self) -> dict[str, Any]:
        return {
            "person_id": self.person_id,
            "distance": round(self.distance, 4),
            "ratio": round(self.ratio, 2),
            "groups": list(self.groups),
        }


def split_people(
    dataset: Dataset, factor: float = SPLIT_FACTOR, top: int = SPLIT_PEOPLE
) -> list[SplitPerson]:
    """People whose faces form two groups at least `factor` times further apart than the
    library's median person's, both groups of 2+ faces; furthest first."""
    from scipy.cluster.hierarchy import fcluster, linkage  # not at CLI start

    splits = []
    for label, person_id in enumerate(dataset.classes):
        faces = unit_rows(dataset.vectors[dataset.labels == label])
        if len(faces) < SPLIT_MIN_FACES:
            continue
        tree = linkage(faces, method="average", metric="cosine")
        sizes = np.bincount(fcluster(tree, t=2, criterion="maxclust"))[1:]
        splits.append((person_id, float(tree[-1, 2]), tuple(sorted(sizes.tolist(), reverse=True))))
    if len(splits) < 3:
        return []
    median = float(np.median([d for _, d, _ in splits]))
    found = [
        SplitPerson(person_id, d, d / median, (groups[0], groups[1]))
        for person_id, d, groups in splits
        if median > 0 and d >= factor * median and len(groups) == 2 and min(groups) >= 2
    ]
    return sorted(found, key=lambda p: -p.ratio)[:top]


def open_set_split(
    labels: np.ndarray, n_classes: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train, known test, stranger) face indices and the known classes, for one seed."""
    n_strangers = min(n_classes - 2, max(1, round(n_classes * STRANGER_SHARE)))
    if n_strangers < 1:
        raise TrainingError(
            f"The open-set evaluation holds whole people out as strangers and needs at least "
            f"3 people with {MIN_SAMPLES_PER_CLASS}+ faces; the active space has {n_classes}. "
            "Verify more people in the app."
        )
    order = rng.permutation(n_classes)
    strangers, known = order[:n_strangers], np.sort(order[n_strangers:])
    train: list[int] = []
    test: list[int] = []
    for label in known:
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = min(len(members) - MIN_SAMPLES_PER_CLASS, int(len(members) * KNOWN_TEST_SHARE))
        test.extend(members[: max(0, n_test)])
        train.extend(members[max(0, n_test) :])
    stranger_idx = np.flatnonzero(np.isin(labels, strangers))
    return np.sort(train), np.sort(test), stranger_idx, known


def open_set_curve(
    dataset: Dataset,
    factory: ClassifierFactory,
    seeds: Sequence[int],
    far: float,
    grid: Sequence[float] = FAR_GRID,
) -> tuple[list[CurvePoint], CurvePoint, int]:
    targets = sorted({*grid, far})
    per_target: dict[float, list[tuple[float, float, float, float]]] = {t: [] for t in targets}
    n_strangers = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        train, test, strangers, known = open_set_split(dataset.labels, len(dataset.classes), rng)
        n_strangers = len(dataset.classes) - len(known)
        # relabel the known people 0..k-1, as retrain would see them
        relabel = {int(c): i for i, c in enumerate(known)}
        y_train = np.asarray([relabel[int(c)] for c in dataset.labels[train]])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*`probability` parameter", FutureWarning)
            model = factory(seed, len(train))
            model.fit(dataset.vectors[train], y_train)
        units = unit_rows(dataset.vectors[train])
        centroids = class_centroids(units, y_train, len(known))
        calibration = leave_one_out(units, y_train, centroids)
        y_test = np.asarray([relabel[int(c)] for c in dataset.labels[test]], dtype=np.int64)
        known_guess = predict_best(model, dataset.vectors[test])
        stranger_guess = predict_best(model, dataset.vectors[strangers])
        # distances to the chosen person do not depend on the target: compute them once
        base = rule_from(centroids, calibration, far)
        d_known = base.distances(dataset.vectors[test])[np.arange(len(test)), known_guess]
        d_strangers = base.distances(dataset.vectors[strangers])[
            np.arange(len(strangers)), stranger_guess
        ]
        for target in targets:
            rule = rule_from(centroids, calibration, target)
            outcome = open_set_outcome(known_guess, y_test, rule.accepts(d_known))
            rejected = float(np.mean(~rule.accepts(d_strangers))) if len(strangers) else 1.0
            per_target[target].append(
                (outcome.named_right, outcome.named_wrong, outcome.unknown, rejected)
            )
    points = {t: _point(t, rows) for t, rows in per_target.items()}
    return [points[t] for t in targets if t in grid], points[far], n_strangers


def _point(target: float, rows: list[tuple[float, float, float, float]]) -> CurvePoint:
    a = np.asarray(rows)
    return CurvePoint(
        far_target=target,
        named_right=float(a[:, 0].mean()),
        named_wrong=float(a[:, 1].mean()),
        unknown=float(a[:, 2].mean()),
        strangers_rejected=float(a[:, 3].mean()),
        min_named_right=float(a[:, 0].min()),
        min_strangers_rejected=float(a[:, 3].min()),
    )


def evaluate(
    dataset: Dataset,
    classifiers: dict[str, ClassifierFactory],
    open_set_classifier: str,
    *,
    folds: int = DEFAULT_FOLDS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    far: float = DEFAULT_FAR,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Every figure for one library. `open_set_classifier` is a key of `classifiers`."""
    say = progress or log.info
    # the folds fit scikit-learn's models on copies anyway: one float32 copy up front
    dataset = dataclasses.replace(dataset, vectors=as_float32(dataset.vectors))
    closed: dict[str, ClosedSet] = {}
    predictions: dict[str, np.ndarray] = {}
    for name, factory in classifiers.items():
        say(f"closed set: {folds}-fold accuracy of {name}")
        closed[name], predictions[name] = closed_set_accuracy(dataset, factory, folds)
    say(f"open set: {len(seeds)} seeds with {open_set_classifier}")
    curve, calibrated, n_strangers = open_set_curve(
        dataset, classifiers[open_set_classifier], seeds, far
    )
    return Evaluation(
        faces=len(dataset.labels),
        people=len(dataset.classes),
        closed_set=closed,
        classifier=open_set_classifier,
        far_target=far,
        seeds=list(seeds),
        strangers_per_seed=n_strangers,
        curve=curve,
        calibrated=calibrated,
        confused_pairs=confused_pairs(dataset, predictions[open_set_classifier], CONFUSED_PAIRS),
        split_people=split_people(dataset),
    )

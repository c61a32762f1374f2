"""How groups agree with the people they hold: purity, pairwise precision, recall and F,
and BCubed F. Pure; for tests and the accuracy benches (bench/unknown_faces.py,
bench/group_methods.py), never used to choose a group at run time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


def purity(labels: np.ndarray, truth: Sequence[object]) -> float:
    """Of the faces in groups, the share in a group whose majority is their own label."""
    truth_array = np.asarray([str(t) for t in truth])
    inside = labels >= 0
    if not inside.any():
        return 1.0
    ids = set(labels[inside].tolist())
    majority = sum(Counter(truth_array[labels == c].tolist()).most_common(1)[0][1] for c in ids)
    return majority / int(inside.sum())


@dataclass(frozen=True)
class GroupScores:
    """How groups agree with the truth, over a set of faces (a face in no group counts
    as alone): pairwise precision, recall and F of "same group" against "same person",
    and BCubed F (each face's share of its group that is its person, and of its
    person that is in its group)."""

    precision: float
    recall: float
    f: float
    bcubed_f: float

    def as_json(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.__dict__.items()}


def group_scores(labels: np.ndarray, truth: Sequence[object]) -> GroupScores:
    """labels: a group per face (-1: in none, alone); truth: each face's person."""
    names = np.unique(np.asarray([str(t) for t in truth]), return_inverse=True)[1]
    alone = np.flatnonzero(labels < 0)
    groups = labels.astype(np.int64).copy()
    groups[alone] = int(labels.max(initial=-1)) + 1 + np.arange(len(alone))
    both = Counter(zip(groups.tolist(), names.tolist(), strict=True))
    in_group, of_person = Counter(groups.tolist()), Counter(names.tolist())

    def pairs(counts: Iterable[int]) -> int:
        return sum(n * (n - 1) // 2 for n in counts)

    together, same_group, same_person = (
        pairs(both.values()),
        pairs(in_group.values()),
        pairs(of_person.values()),
    )
    precision = together / same_group if same_group else 1.0
    recall = together / same_person if same_person else 1.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    share = np.array([both[(g, n)] for g, n in zip(groups.tolist(), names.tolist(), strict=True)])
    b_precision = float(np.mean(share / np.array([in_group[g] for g in groups.tolist()])))
    b_recall = float(np.mean(share / np.array([of_person[n] for n in names.tolist()])))
    bcubed = 2 * b_precision * b_recall / (b_precision + b_recall)
    return GroupScores(precision, recall, f, bcubed)

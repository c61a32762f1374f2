"""facestore.group_scores: the figures the accuracy benches report, on cases counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from facestore.group_scores import group_scores, purity


def test_pairwise_and_bcubed_scores_count_a_face_in_no_group_as_alone() -> None:
    # groups {a, a, b} and {b, b}; two faces in none (c, a)
    labels = np.array([0, 0, 0, 1, 1, -1, -1])
    truth = ["a", "a", "b", "b", "b", "c", "a"]
    scores = group_scores(labels, truth)
    # same group: 3 + 1 pairs, of which (a, a) and (b, b) are the same person;
    # same person: a 3 pairs, b 3 pairs
    assert scores.precision == pytest.approx(2 / 4)
    assert scores.recall == pytest.approx(2 / 6)
    assert scores.f == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))
    b_precision = np.mean([2 / 3, 2 / 3, 1 / 3, 1, 1, 1, 1])
    b_recall = np.mean([2 / 3, 2 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1 / 3])
    assert scores.bcubed_f == pytest.approx(2 * b_precision * b_recall / (b_precision + b_recall))
    assert purity(labels[labels >= 0], truth[:5]) == pytest.approx(4 / 5)


def test_perfect_groups_score_one_and_a_split_person_loses_recall_only() -> None:
    truth = ["a"] * 4 + ["b"] * 2
    assert group_scores(np.array([0, 0, 0, 0, 1, 1]), truth).f == 1.0
    split = group_scores(np.array([0, 0, 2, 2, 1, 1]), truth)
    assert split.precision == 1.0 and split.recall == pytest.approx(3 / 7)

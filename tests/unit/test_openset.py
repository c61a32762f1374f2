"""The open-set rule: calibration, decisions, confidence, persistence. Synthetic clusters."""

from __future__ import annotations

import numpy as np
import pytest

from facestore.openset import OpenSetRule, calibrate, leave_one_out, unit_rows
from facestore.settings import DEFAULT_FAR


def clusters(
    people: int, per_person: int, spread: float, dim: int = 32, seed: int = 0, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors around per-person centres; `scale` stretches them (dlib's are not unit length)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    labels = np.repeat(np.arange(people), per_person)
    vectors = centres[labels] + spread * rng.normal(size=(len(labels), dim))
    return (scale * vectors).astype(np.float32), labels


def test_threshold_is_the_impostor_quantile_at_the_target() -> None:
    vectors, labels = clusters(40, 8, spread=0.8)
    rule = calibrate(vectors, labels, 40, far=0.05)
    assert rule.stats["impostor_accept_rate"] == pytest.approx(0.05, abs=0.01)
    assert rule.stats["genuine_accept_rate"] > 0.9
    assert rule.stats["threshold_method"] == "empirical quantile"
    stricter = calibrate(vectors, labels, 40, far=0.01)
    assert stricter.threshold < rule.threshold


def test_where_people_lie_far_apart_the_threshold_stops_at_their_own_faces() -> None:
    """No strangers named for nothing: once 99% of the training faces are within the
    threshold, moving it out to the false-accept target only names more strangers."""
    vectors, labels = clusters(40, 8, spread=0.6)
    rule = calibrate(vectors, labels, 40, far=0.05)
    assert rule.stats["threshold_method"].endswith("capped at 99% of own faces")
    assert rule.stats["impostor_accept_rate"] < 0.01
    assert rule.stats["genuine_accept_rate"] >= 0.98
    overlapping = calibrate(*clusters(40, 8, spread=1.0), 40, far=0.05)  # not capped
    assert overlapping.stats["impostor_accept_rate"] == pytest.approx(0.05, abs=0.01)


def test_strangers_are_rejected_at_about_the_target_rate_and_known_faces_accepted() -> None:
    vectors, labels = clusters(60, 10, spread=0.6, seed=3)
    known = labels < 45
    train = known & (np.arange(len(labels)) % 10 < 7)
    test = known & ~train
    rule = calibrate(vectors[train], labels[train], 45, far=DEFAULT_FAR)
    own = rule.distances(vectors[test])[np.arange(test.sum()), labels[test]]
    assert rule.accepts(own).mean() > 0.9
    strangers = rule.distances(vectors[~known]).min(1)  # the nearest known person
    assert 1 - rule.accepts(strangers).mean() > 0.9


def test_decisions_do_not_depend_on_the_vectors_length() -> None:
    vectors, labels = clusters(10, 6, spread=0.5)
    a = calibrate(vectors, labels, 10)
    b = calibrate(vectors * 7.5, labels, 10)
    assert a.threshold == pytest.approx(b.threshold, rel=1e-5)
    assert np.array_equal(a.accepts(a.distances(vectors)), b.accepts(b.distances(vectors * 3)))


def test_distances_at_some_people_are_those_of_the_whole_matrix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from facestore import openset

    vectors, labels = clusters(30, 5, spread=0.5, scale=4.0)
    rule = calibrate(vectors, labels, 30)
    people = np.random.default_rng(2).integers(0, 30, size=(len(vectors), 4))
    want = np.take_along_axis(rule.distances(vectors), people, 1)
    np.testing.assert_allclose(rule.distances_at(vectors, people), want, atol=1e-5)
    monkeypatch.setattr(openset, "AT_ONCE", 100)  # a few rows at a time: the same
    np.testing.assert_allclose(rule.distances_at(vectors, people), want, atol=1e-5)


def test_confidence_falls_with_distance_and_min_confidence_overrides_the_threshold() -> None:
    vectors, labels = clusters(20, 6, spread=0.7)
    rule = calibrate(vectors, labels, 20)
    d = np.linspace(0, 2, 50)
    conf = rule.confidence(d)
    assert np.all(np.diff(conf) <= 0) and conf[0] > 0.9 and conf[-1] < 0.1
    assert rule.accepts(d, min_confidence=0.0).all()
    assert not rule.accepts(d, min_confidence=1.0).any()
    assert np.array_equal(rule.accepts(d), d <= rule.threshold)


def test_leave_one_out_excludes_the_face_from_its_own_centroid() -> None:
    units = unit_rows(np.array([[1, 0], [0, 1], [1, 1], [-1, 1]], dtype=np.float32))
    labels = np.array([0, 0, 1, 1])
    centroids = np.stack([units[:2].mean(0), units[2:].mean(0)])
    cal = leave_one_out(units, labels, centroids)
    # without itself, face 0's own centroid is face 1
    assert cal.genuine[0] == pytest.approx(np.linalg.norm(units[0] - units[1]))
    assert cal.impostor[0] == pytest.approx(np.linalg.norm(units[0] - centroids[1]))


def test_rule_round_trips_through_bytes_deterministically() -> None:
    vectors, labels = clusters(5, 4, spread=0.5)
    rule = calibrate(vectors, labels, 5)
    data = rule.to_bytes()
    assert data == calibrate(vectors, labels, 5).to_bytes()
    again = OpenSetRule.from_bytes(data)
    assert again.threshold == rule.threshold and again.stats == rule.stats
    assert np.array_equal(again.centroids, rule.centroids)


def test_a_large_library_is_calibrated_on_a_sample_of_probes() -> None:
    vectors, labels = clusters(50, 10, spread=0.5)
    rule = calibrate(vectors, labels, 50, max_probes=100)
    assert rule.stats["probes"] == 100

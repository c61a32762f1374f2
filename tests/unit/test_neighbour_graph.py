"""The neighbour-graph path of the grouping (facestore.neighbours, facestore.neighbour_graph):
the same vectors grouped by the exact path and through the indexes, the index's
recall, the linkage split of a piece too large, and ids kept at an approximate size.
Synthetic vectors: plumbing only; the defaults were chosen on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from facestore import grouping, neighbour_graph
from facestore.grouping import (
    ClusterParams,
    absorbed_ids,
    group,
    group_exactly,
    linked,
    stable_ids,
    unit_rows,
)
from facestore.neighbours import ApproximateIndex, ExactIndex, Searcher, neighbours, recall


def people(count: int, per_person: int, spread: float, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng.normal(size=(count, dim)))
    faces = np.repeat(centres, per_person, axis=0)
    faces = faces + spread * rng.normal(size=faces.shape) / np.sqrt(dim)
    return unit_rows(faces[rng.permutation(len(faces))])


def partition(labels: np.ndarray) -> set[frozenset[int]]:
    return {frozenset(np.flatnonzero(labels == c).tolist()) for c in set(labels.tolist()) if c >= 0}


class Counting:
    """An index that counts its calls and answers exactly."""

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def build(self, units: np.ndarray) -> Searcher:
        self.calls.append(len(units))
        return ExactIndex().build(units)


def test_the_exact_index_finds_each_rows_nearest_others_and_never_itself() -> None:
    units = people(20, 5, 0.3)
    units[7] = units[3]  # a copy is still a neighbour
    found = neighbours(ExactIndex(), units, 4)[1]
    similarity = units @ units.T
    np.fill_diagonal(similarity, -np.inf)
    expected = np.argsort(-similarity, axis=1, kind="stable")[:, :4]
    assert (found.ids != np.arange(len(units))[:, None]).all()
    assert np.allclose(
        np.sort(found.distances, axis=1),
        np.sort(1 - similarity[np.arange(100)[:, None], expected], axis=1),
        atol=1e-5,
    )
    assert found.ids[3, 0] == 7 and found.ids[7, 0] == 3 and found.distances[3, 0] < 1e-5
    few = neighbours(ExactIndex(), units[:3], 4)[1]  # fewer rows than k: the rest is empty
    assert (few.ids[:, 2:] == -1).all() and np.isinf(few.distances[:, 2:]).all()


def test_the_approximate_index_finds_the_near_faces() -> None:
    units = people(400, 8, 0.3)
    truth = neighbours(ExactIndex(), units, 8)[1]
    index = ApproximateIndex()
    found = neighbours(index, units, 8)[1]
    assert recall(found, truth, radius=0.1) >= 0.95
    searched, lists = index.searched  # it really is approximate here: 8 lists of 80
    assert searched == 8 and lists == 80
    assert recall(truth, truth, radius=0.1) == 1.0


@pytest.mark.parametrize("index", [ExactIndex(), ApproximateIndex()], ids=lambda i: i.name)
def test_the_indexed_path_groups_as_the_exact_path(index: object) -> None:
    units = np.concatenate([people(60, 6, 0.15, seed=1), people(200, 1, 0.0, seed=2)])
    params = ClusterParams(0.1, 3, 0.08)
    exact = group_exactly(units, params)
    indexed = group(units, params, index)  # type: ignore[arg-type]
    assert len(partition(exact)) >= 55
    assert partition(indexed) == partition(exact)


def test_small_libraries_take_the_exact_path_and_large_ones_the_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    units = people(30, 5, 0.15)
    params = ClusterParams(0.1, 3)
    assert np.array_equal(group(units, params), group_exactly(units, params))
    counting = Counting()
    monkeypatch.setattr("facestore.neighbours.ApproximateIndex", lambda: counting)
    monkeypatch.setattr(grouping, "EXACT_LIMIT", 100)
    assert partition(group(units, params)) == partition(group_exactly(units, params))
    assert counting.calls == [150]  # one index, of the faces


def test_the_link_rule_reads_the_same_from_the_neighbours() -> None:
    rng = np.random.default_rng(3)
    units = people(10, 6, 0.4, seed=3)
    labels = rng.integers(0, 8, len(units))
    faces = neighbours(ExactIndex(), units, 16)[1]
    for link in (0.02, 0.05, 0.1):
        expected = linked(units, labels, link, 3)
        assert np.array_equal(neighbour_graph.linked_by(labels, faces, link, 3), expected)


def test_a_piece_too_large_for_one_linkage_is_split_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    units = people(12, 30, 0.25, seed=4)  # faces ~0.06 apart: many micro-clusters each
    params = ClusterParams(0.1, 3)
    sizes: list[int] = []
    real_linkage = __import__("scipy.cluster.hierarchy", fromlist=["linkage"]).linkage

    def counted(points: np.ndarray, **kwargs: object) -> np.ndarray:
        sizes.append(len(points))
        return real_linkage(points, **kwargs)

    monkeypatch.setattr("scipy.cluster.hierarchy.linkage", counted)
    whole = group(units, params, ExactIndex())
    assert max(sizes) > 20
    sizes.clear()
    monkeypatch.setattr(neighbour_graph, "MAX_LINKAGE", 20)
    split = group(units, params, ExactIndex())
    assert sizes and max(sizes) <= 20
    # people far apart: splitting a piece at a tighter cut loses none of them
    assert len(partition(split)) >= len(partition(whole))
    assert all(any(p <= w for w in partition(whole)) for p in partition(split))


def test_ids_and_merges_hold_where_the_index_is_approximate() -> None:
    rng = np.random.default_rng(11)
    base = people(300, 8, 0.1, dim=32, seed=5)  # 2,400 faces: 60 lists, 8 searched
    centre = unit_rows(rng.normal(size=(1, 32)))[0]
    offset = unit_rows(rng.normal(size=(1, 32)))[0]
    near = unit_rows(centre + 0.25 * offset + 0.02 * rng.normal(size=(12, 32)))
    far = unit_rows(centre - 0.25 * offset + 0.02 * rng.normal(size=(6, 32)))
    units = np.concatenate([base, near, far])
    faces = np.arange(len(units)) + 1000
    index = ApproximateIndex()
    apart = 1.0 - float((near @ far.T).mean())

    def groups_at(cut: float) -> dict[int, list[int]]:
        labels = group(units, ClusterParams(cut, 3), index)
        return {int(c): faces[labels == c].tolist() for c in set(labels.tolist()) if c >= 0}

    before = groups_at(apart * 0.5)
    previous = {cid: g for cid, g in enumerate(before.values(), start=1)}
    larger = next(cid for cid, g in previous.items() if set(faces[-18:-6]) == set(g))
    smaller = next(cid for cid, g in previous.items() if set(faces[-6:]) == set(g))
    after = groups_at(apart * 1.2)
    ids = stable_ids(after, previous, next_id=len(previous) + 1)
    merged = next(label for label, g in after.items() if set(faces[-18:]) <= set(g))
    assert ids[merged] == larger
    assert absorbed_ids(after, previous, ids)[smaller] == larger

"""facestore.grouping (pure): grouping, ids that stay, calibration. Synthetic vectors:
plumbing only; the defaults were chosen on real faces (docs/accuracy.md)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from facestore.group_scores import purity
from facestore.grouping import (
    DEFAULT_MIN_SIZE,
    LEADER_SHARE,
    LINK_GENUINE,
    PAIR_FALSE_MERGE,
    ClusterParams,
    absorbed_ids,
    calibrate,
    components,
    group,
    leaders,
    representative,
    stable_ids,
    unit_rows,
)
from facestore.vector_rows import IndexedRows, UnitRows
from tests.support.types import Cli


def blobs(
    people: int, per_person: int, spread: float, seed: int = 0
) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, 64))
    vectors = np.concatenate(
        [c + spread * rng.normal(size=(per_person, 64)) for c in centres]
    ).astype(np.float32)
    return vectors, [p for p in range(people) for _ in range(per_person)]


def test_separate_people_form_separate_groups_and_singletons_none() -> None:
    vectors, people = blobs(5, 6, 0.05)
    loner = np.random.default_rng(9).normal(size=(1, 64)).astype(np.float32)
    labels = group(np.concatenate([vectors, loner]), ClusterParams(0.1, 2))
    assert labels[-1] == -1  # one face is no cluster
    assert purity(labels[:-1], people) == 1.0
    assert len(set(labels[:-1].tolist())) == 5
    assert group(np.zeros((0, 64), np.float32), ClusterParams(0.1)).shape == (0,)


def test_min_size_leaves_small_groups_out() -> None:
    vectors, _ = blobs(3, 2, 0.01)
    assert (group(vectors, ClusterParams(0.1, 3)) == -1).all()
    assert (group(vectors, ClusterParams(0.1, 2)) >= 0).all()
    assert (group(vectors, ClusterParams(0.1)) == -1).all()  # two faces: no group by default


def test_the_help_states_the_default_min_size(cli: Cli) -> None:
    # cli/options.py writes it out, so that the command line starts without numpy
    text = " ".join(cli("clusters", "--help").stdout.split())
    assert f"make a cluster. [default: {DEFAULT_MIN_SIZE}]" in text


def test_a_cluster_keeps_its_id_while_most_of_its_faces_stay() -> None:
    previous = {7: [1, 2, 3, 4], 9: [10, 11, 12]}
    groups = {0: [1, 2, 3, 20], 1: [10, 30, 31, 32], 2: [40, 41]}
    present = [1, 2, 3, 4, 10, 11, 12, 20, 30, 31, 32, 40, 41]  # 4, 11, 12 in no group
    ids = stable_ids(groups, previous, next_id=12, present=present)
    assert ids[0] == 7  # 3 of its 4 faces stayed together
    assert ids[1] != 9  # only 1 of 3: a new cluster
    assert sorted([ids[1], ids[2]]) == [12, 13]  # new ids from the high-water mark
    # faces that left the run (named, deleted) do not count against the cluster
    assert stable_ids({0: [2, 3]}, {7: [1, 2, 3, 4]}, 12) == {0: 7}
    assert stable_ids({0: [2, 3]}, {7: [1, 2, 3, 4]}, 12, present=[1, 2, 3, 4]) == {0: 12}


def test_calibration_needs_two_named_people_and_reads_impostor_and_genuine_pairs() -> None:
    vectors, people = blobs(6, 5, 0.05)
    assert calibrate(vectors[:5], people[:5]) is None  # one person
    found = calibrate(vectors, people)
    assert found is not None and (found.faces, found.people) == (30, 6)
    units = unit_rows(vectors)
    distances = 1.0 - units @ units.T
    same = np.equal.outer(people, people)
    impostor = distances[np.triu(~same, k=1)]
    genuine = np.where(same & ~np.eye(30, dtype=bool), distances, np.inf).min(axis=1)
    # few impostor pairs (375): the lower of the PAIR_FALSE_MERGE quantile and a normal fit's
    assert found.method == "normal fit (few impostors)"
    assert found.distance <= np.quantile(impostor, PAIR_FALSE_MERGE) + 1e-6
    expected_link = min(np.quantile(genuine, LINK_GENUINE), found.distance)
    assert found.link == pytest.approx(expected_link, abs=1e-6)
    labels = group(vectors, ClusterParams(found.distance, 2, found.link))
    assert purity(labels, people) == 1.0 and (labels >= 0).mean() >= 0.9


def test_the_cut_follows_the_space_not_a_constant() -> None:
    """The same people, spread twice as far: the calibrated distances grow with them."""
    tight, people = blobs(8, 6, 0.05, seed=2)
    loose, _ = blobs(8, 6, 0.10, seed=2)
    a, b = calibrate(tight, people), calibrate(loose, people)
    assert a is not None and b is not None
    assert b.link > 2 * a.link


def test_a_face_with_no_mate_within_the_link_joins_no_group() -> None:
    vectors, people = blobs(2, 6, 0.02, seed=4)
    # a stranger between the two people: average linkage alone would take it in
    stranger = (unit_rows(vectors[:6]).mean(0) + 0.05 * unit_rows(vectors[6:]).mean(0))[None, :]
    everyone = np.concatenate([vectors, stranger.astype(np.float32)])
    units = unit_rows(everyone)
    mean_distance = 1.0 - float((units[:6] @ units[-1]).mean())
    mate = 1.0 - float((units[:6] @ units[-1]).max())
    loose = group(everyone, ClusterParams(mean_distance + 0.01, 2))
    assert loose[-1] == loose[0]  # joins person 0 on its mean distance
    tight = group(everyone, ClusterParams(mean_distance + 0.01, 2, link=mate * 0.9))
    assert tight[-1] == -1 and tight[0] >= 0  # the link keeps it alone, the rest stay


def test_a_large_library_calibrates_on_a_bounded_seeded_sample() -> None:
    from facestore import grouping
    from facestore.grouping import calibration_sample

    small = {face_id: face_id % 7 for face_id in range(grouping.CALIBRATION_FACES)}
    assert calibration_sample(small) == sorted(small)  # all of them
    # 1,000 people, one with 5,000 faces: 100 people, at most 20 faces each
    large = {face_id: face_id % 1000 for face_id in range(20_000)}
    large.update({face_id: "big" for face_id in range(20_000, 25_000)})
    sample = calibration_sample(large)
    per_person = Counter(str(large[face_id]) for face_id in sample)
    assert len(per_person) == grouping.CALIBRATION_PEOPLE
    assert max(per_person.values()) <= grouping.CALIBRATION_PER_PERSON
    assert len(set(sample)) == len(sample) and set(sample) <= set(large)
    assert calibration_sample(large) == sample  # seeded
    assert calibration_sample(large, seed=1) != sample


def test_the_representative_is_the_face_nearest_the_centre() -> None:
    vectors = np.array([[1, 0], [0.9, 0.1], [0.6, 0.4]], dtype=np.float32)
    assert representative(vectors) == 1


def test_indexed_rows_answer_as_unit_rows_through_puts_and_pops() -> None:
    rng = np.random.default_rng(4)
    vectors = unit_rows(
        np.repeat(rng.normal(size=(200, 16)), 10, axis=0) + 0.05 * rng.normal(size=(2000, 16))
    )
    keys = list(range(1000, 3000))
    indexed, exact = IndexedRows(keys, vectors, np.arange(2000)), UnitRows()
    for key, vector in zip(keys, vectors, strict=True):
        exact.put(key, vector)
    for probe in vectors[:50]:
        assert sorted(indexed.within(probe, 0.05)) == sorted(exact.within(probe, 0.05))
        assert indexed.nearest(probe, 0.01) == exact.nearest(probe, 0.01)
    popped = indexed.pop(1005)
    assert np.allclose(popped, vectors[5], atol=1e-3) and 1005 not in indexed
    assert 1005 not in indexed.within(vectors[5], 0.05) and len(indexed) == 1999
    indexed.put(1005, -vectors[5])
    assert indexed.nearest(-vectors[5], 0.01) == 1005 and np.allclose(
        indexed.get(1005), -vectors[5], atol=1e-3
    )


def test_unit_rows_find_within_and_nearest_through_puts_and_pops() -> None:
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng.normal(size=(40, 8)))
    rows = UnitRows()
    for i, v in enumerate(vectors):
        rows.put(100 + i, v)
    for i in range(0, 40, 3):  # pops move the last row into the gap
        assert np.array_equal(rows.pop(100 + i), vectors[i])
    kept = [i for i in range(40) if i % 3]
    assert sorted(rows.ids()) == [100 + i for i in kept] and len(rows) == len(kept)
    probe = vectors[5]
    expected = sorted(100 + i for i in kept if 1.0 - float(vectors[i] @ probe) <= 0.6)
    assert sorted(rows.within(probe, 0.6)) == expected and 105 in expected
    assert rows.nearest(probe, 0.01) == 105 and rows.nearest(-probe, 0.01) is None
    rows.put(105, -probe)  # replaced in place
    assert rows.nearest(probe, 0.01) is None and np.array_equal(rows.get(105), -probe)


def test_cutting_each_component_alone_groups_as_one_linkage_over_all() -> None:
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(5)
    centres = unit_rows(rng.normal(size=(30, 16)))
    vectors = unit_rows(np.repeat(centres, 6, axis=0) + rng.normal(scale=0.12, size=(180, 16)))
    params = ClusterParams(0.3, 1)
    micro = leaders(vectors, params.distance * LEADER_SHARE)
    sums = np.zeros((int(micro.max()) + 1, 16))
    np.add.at(sums, micro, vectors)
    tree = linkage(unit_rows(sums), method="average", metric="cosine")
    whole = (fcluster(tree, t=params.distance, criterion="distance") - 1)[micro]

    def partition(labels: np.ndarray) -> set[frozenset[int]]:
        return {frozenset(np.flatnonzero(labels == c).tolist()) for c in set(labels.tolist())}

    assert len(components(unit_rows(sums), params.distance)) > 1  # several pieces
    assert partition(group(vectors, params)) == partition(whole)


def test_a_merge_records_which_id_went_into_which() -> None:
    previous = {7: [1, 2, 3, 4, 5], 9: [10, 11], 12: [20, 21]}
    groups = {0: [1, 2, 3, 4, 5, 10, 11], 1: [20, 21]}
    ids = stable_ids(groups, previous, next_id=13)
    assert ids == {0: 7, 1: 12}  # the merged group keeps the larger cluster's id
    assert absorbed_ids(groups, previous, ids) == {9: 7}
    # a cluster whose faces scattered, or left, went nowhere
    assert absorbed_ids({0: [1, 2, 3]}, {7: [1, 2, 3], 9: [10, 11]}, {0: 7}) == {}

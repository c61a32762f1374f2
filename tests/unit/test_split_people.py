"""split_people: a name over two separate groups of faces is listed, one group is not.
Synthetic vectors: the rule's plumbing only (its factor was chosen on ORL)."""

from __future__ import annotations

import numpy as np

from facestore.evaluate import split_people
from facestore.training import build_dataset


def person(rng: np.random.Generator, centre: np.ndarray, count: int) -> np.ndarray:
    return centre + rng.normal(scale=0.05, size=(count, len(centre)))


def test_two_people_under_one_name_are_listed_and_nobody_else() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(7, 32))
    vectors = [person(rng, centres[i], 8) for i in range(5)]
    vectors.append(np.concatenate([person(rng, centres[5], 4), person(rng, centres[6], 5)]))
    names = [p for p in "abcde" for _ in range(8)] + ["merged"] * 9
    dataset = build_dataset(list(range(len(names))), names, np.concatenate(vectors))
    [found] = split_people(dataset)
    assert found.person_id == "merged" and found.groups == (5, 4) and found.ratio > 1.5
    assert split_people(dataset, top=0) == []

    alone = np.concatenate(vectors[:5])  # nobody merged: nobody listed
    assert split_people(build_dataset(list(range(40)), names[:40], alone)) == []

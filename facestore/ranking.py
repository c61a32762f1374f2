"""The k most probable people of a row of probabilities, without sorting all of them
(10k people). Pure numpy."""

from __future__ import annotations

import numpy as np

ARGMAX_PASSES = 16  # most_probable_rows: above this k, one sort per row


def most_probable(proba: np.ndarray, k: int) -> np.ndarray:
    """The indices of the k largest values, largest first, ties by index: what a stable
    argsort of -proba starts with, without sorting every person (10k people)."""
    if k >= len(proba):
        return np.argsort(-proba, kind="stable")
    kth = np.partition(-proba, k - 1)[k - 1]
    above = np.flatnonzero(-proba < kth)
    ties = np.flatnonzero(-proba == kth)[: k - len(above)]
    chosen = np.sort(np.concatenate([above, ties]))
    return chosen[np.argsort(-proba[chosen], kind="stable")]


def most_probable_rows(proba: np.ndarray, k: int) -> np.ndarray:
    """most_probable for each row of an (n, people) matrix, as (n, min(k, people)).

    A few people: k passes of argmax (the first of equal values: ties go by index), each
    hiding what it found (then put back); far cheaper than partitioning 10k people per
    row."""
    n, people = proba.shape
    k = min(k, people)
    if k > ARGMAX_PASSES:
        return np.argsort(-proba, axis=1, kind="stable")[:, :k]
    rows = np.arange(n)
    top = np.empty((n, k), dtype=np.int64)
    found = np.empty((n, k), dtype=proba.dtype)
    for j in range(k):
        top[:, j] = proba.argmax(1)
        found[:, j] = proba[rows, top[:, j]]
        proba[rows, top[:, j]] = -np.inf
    for j in range(k):  # put them back
        proba[rows, top[:, j]] = found[:, j]
    return top

"""Unit vectors by id in one growing matrix: nearest-row queries in one product. The
daemon's clusterer keeps its clusters' means and its unknown faces in these."""

from __future__ import annotations

import numpy as np


class UnitRows:
    """Unit vectors by id in one growing matrix: nearest-row queries in one product."""

    def __init__(self) -> None:
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        self._ids: list[int] = []
        self._row: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    def ids(self) -> list[int]:
        return list(self._ids)

    def get(self, key: int) -> np.ndarray:
        return self._matrix[self._row[key]]

    def put(self, key: int, vector: np.ndarray) -> None:
        """Add or replace the row of key."""
        if key in self._row:
            self._matrix[self._row[key]] = vector
            return
        count = len(self._ids)
        if count == len(self._matrix):
            grown = np.zeros((max(16, 2 * count), len(vector)), dtype=np.float32)
            if count:
                grown[:count] = self._matrix
            self._matrix = grown
        self._matrix[count] = vector
        self._row[key] = count
        self._ids.append(key)

    def pop(self, key: int) -> np.ndarray:
        """Remove key's row (the last row takes its place) and return it."""
        row = self._row.pop(key)
        vector = self._matrix[row].copy()
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()
        return vector

    def within(self, vector: np.ndarray, distance: float) -> list[int]:
        """The ids whose cosine distance to vector is at most distance."""
        if not self._ids:
            return []
        similarity = self._matrix[: len(self._ids)] @ vector
        return [self._ids[i] for i in np.flatnonzero(1.0 - similarity <= distance)]

    def nearest(self, vector: np.ndarray, distance: float) -> int | None:
        """The id of the nearest row, if within distance."""
        if not self._ids:
            return None
        similarity = self._matrix[: len(self._ids)] @ vector
        best = int(np.argmax(similarity))
        return self._ids[best] if 1.0 - float(similarity[best]) <= distance else None

"""Unit vectors by id in one growing matrix: nearest-row queries in one product. The
daemon's grouper keeps its clusters' means and its unknown faces in these."""

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


class IndexedRows:
    """UnitRows' interface over faiss's inverted file (float16 rows, kept by id): for the
    waiting faces of a large library, where one product with every row per query
    would read the whole matrix for each new face. Trained once, on the rows it is
    built with; approximate (each query searches NPROBE lists, facestore.neighbours)."""

    def __init__(self, keys: list[int], units: np.ndarray, rows: np.ndarray) -> None:
        """keys[i] is the id of units[rows[i]] (float16 or float32 unit rows)."""
        import faiss

        from facestore.neighbours import NPROBE, TRAIN_PER_LIST

        count, dim = len(rows), units.shape[1]
        lists = max(1, min(int(2 * np.sqrt(count)), count // TRAIN_PER_LIST))
        self._index = faiss.IndexIVFScalarQuantizer(
            faiss.IndexFlatIP(dim),
            dim,
            lists,
            faiss.ScalarQuantizer.QT_fp16,
            faiss.METRIC_INNER_PRODUCT,
        )
        sample = np.random.default_rng(0).choice(count, min(count, TRAIN_PER_LIST * lists), False)
        self._index.train(np.ascontiguousarray(units[rows[np.sort(sample)]], np.float32))
        self._index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        self._index.nprobe = min(NPROBE, lists)
        self._keys: set[int] = set()
        for start in range(0, count, 16384):
            chunk = keys[start : start + 16384]
            self._index.add_with_ids(
                np.ascontiguousarray(units[rows[start : start + 16384]], np.float32),
                np.asarray(chunk, dtype=np.int64),
            )
            self._keys.update(chunk)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def ids(self) -> list[int]:
        return sorted(self._keys)

    def get(self, key: int) -> np.ndarray:
        return np.asarray(self._index.reconstruct(int(key)), dtype=np.float32)

    def put(self, key: int, vector: np.ndarray) -> None:
        """Add or replace the row of key."""
        if key in self._keys:
            self.pop(key)
        row = np.ascontiguousarray(vector, np.float32)[None, :]
        self._index.add_with_ids(row, np.array([key], dtype=np.int64))
        self._keys.add(key)

    def pop(self, key: int) -> np.ndarray:
        """Remove key's row and return it."""
        vector = self.get(key)
        self._index.remove_ids(np.array([key], dtype=np.int64))  # type: ignore[arg-type]
        self._keys.discard(key)
        return vector

    def within(self, vector: np.ndarray, distance: float) -> list[int]:
        """The ids whose cosine distance to vector is at most distance (as found)."""
        if not self._keys:
            return []
        query = np.ascontiguousarray(vector, np.float32)[None, :]
        _, _, found = self._index.range_search(query, 1.0 - distance - 1e-6)
        return [int(i) for i in found]

    def nearest(self, vector: np.ndarray, distance: float) -> int | None:
        """The id of the nearest row (as found), if within distance."""
        if not self._keys:
            return None
        similarity, found = self._index.search(np.ascontiguousarray(vector, np.float32)[None, :], 1)
        if found[0, 0] < 0 or 1.0 - float(similarity[0, 0]) > distance:
            return None
        return int(found[0, 0])

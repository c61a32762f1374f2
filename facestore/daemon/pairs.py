"""The training pairs (face_id -> person_id) the retrain policy compares with the model's,
kept current from the change log (facestore.store.changes) instead of read whole."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from facestore.store import IdRanges, Store

MAX_CHANGES = 50_000  # changes read in one go; a reader further behind reads every pair
MISSING = object()


class TrainingPairs:
    """Reads every pair once per space; after that only the faces the log names."""

    def __init__(self, store: Store, max_changes: int = MAX_CHANGES) -> None:
        self.store = store
        self.max_changes = max_changes
        self.full_reads = 0
        self._space: str | None = None
        self._pairs: dict[int, Any] = {}
        self._seq = 0
        self._trained: Mapping[int, Any] | None = None  # the model's pairs
        self._differ: set[int] = set()  # faces whose pair is not the model's

    def differences(self, trained: Mapping[int, Any]) -> int:
        """How many faces are new, gone or relabelled since `trained` (count_changes):
        counted whole once per model or full read, then kept up as faces change."""
        if trained is not self._trained:
            self._trained = trained
            self._differ = {
                face_id
                for pairs in (trained, self._pairs)
                for face_id in pairs
                if trained.get(face_id, MISSING) != self._pairs.get(face_id, MISSING)
            }
        return len(self._differ)

    def _changed(self, face_ids: Iterable[int]) -> None:
        if self._trained is None:
            return
        for face_id in face_ids:
            if self._trained.get(face_id, MISSING) != self._pairs.get(face_id, MISSING):
                self._differ.add(face_id)
            else:
                self._differ.discard(face_id)

    def current(self, space_hash: str) -> dict[int, Any]:
        """The pairs of the space now. The dict is updated in place by later calls."""
        if space_hash != self._space:
            return self._read_all(space_hash)
        changed = self.store.changes.since(self._seq, self.max_changes)
        if changed is None:  # too many changes, a truncated face table, or a pruned log
            return self._read_all(space_hash)
        if changed.face_ids:
            fresh = self.store.library.training_pairs(space_hash, changed.face_ids)
            for face_id in changed.face_ids:
                if face_id in fresh:
                    self._pairs[face_id] = fresh[face_id]
                else:
                    self._pairs.pop(face_id, None)
            self._changed(changed.face_ids)
        self._seq = changed.last_seq
        return self._pairs

    def recheck(self, space_hash: str, faces: IdRanges) -> None:
        """Read the pairs of these ids again. On PostgreSQL a transaction can commit its
        log rows after a later one's were read; the timer's rolling slice catches those."""
        if space_hash != self._space:
            return
        fresh = self.store.library.training_pairs(space_hash, faces)
        known = np.fromiter(self._pairs, dtype=np.int64, count=len(self._pairs))
        inside = np.zeros(len(known), dtype=bool)
        for lo, hi in faces.spans:
            inside |= (known >= lo) & (known < hi if hi is not None else True)
        gone = [face_id for face_id in known[inside].tolist() if face_id not in fresh]
        for face_id in gone:
            del self._pairs[face_id]
        self._pairs.update(fresh)
        self._changed(gone)
        self._changed(fresh)

    def _read_all(self, space_hash: str) -> dict[int, Any]:
        self._seq = self.store.changes.last_seq()  # first: what is logged meanwhile is re-read
        self._pairs = self.store.library.training_pairs(space_hash)
        self._space = space_hash
        self.full_reads += 1
        self._trained = None  # count again
        return self._pairs

"""Suggestions for unverified faces, with the current model's open-set rule."""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from facestore.predict import Predictor
from facestore.store import IdRanges, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuggestPass:
    written: int
    unnamed: dict[int, np.ndarray] = field(default_factory=dict)  # considered, no suggestion
    unverified: frozenset[int] | None = None  # every unverified face, when all were read
    low_quality: int = 0  # considered and found low quality (no suggestion, no group)


class Suggester:
    """Writes face_suggestion rows for the unverified faces a model has not considered."""

    def __init__(
        self, store: Store, min_confidence: float | None, min_quality: float | None = None
    ) -> None:
        self.store = store
        self.min_confidence = min_confidence  # None: the model's calibrated rule
        self.min_quality = min_quality  # None: the model's quality gate at its floor
        self._considered: dict[int, str] = {}  # face_id -> crop sha256 considered
        self._rejections: dict[int, frozenset[str]] = {}  # as of the last pass

    def suggest(
        self,
        predictor: Predictor | None,
        space_hash: str,
        replace_all: bool = False,
        only: Collection[int] | None = None,
        ids: IdRanges | None = None,
    ) -> SuggestPass:
        """With replace_all (a new model), every row is rewritten; else only new faces
        and faces whose rejections changed. A rejected person is never suggested.

        only: the faces embedded since the last pass; then just those (and faces whose
        rejections changed) are read, so the cost follows the change, not the library.
        ids: else, only the unverified faces among those (the timer's rolling check).
        Without a model (predictor None) nothing is written: every face read is unnamed.
        """
        if predictor is None:
            return self._without_model(space_hash, only, ids)
        if replace_all:
            self._considered.clear()
            only, ids = None, None
        rejections = self.store.suggestions.rejections()
        changed = {
            face_id
            for face_id in rejections.keys() | self._rejections.keys()
            if rejections.get(face_id) != self._rejections.get(face_id)
        }
        wanted = None if only is None else set(only) | changed
        rows = self.store.suggestions.unverified_vectors(
            space_hash, wanted, ids if wanted is None else None
        )
        fresh = [
            row
            for row in rows
            if replace_all
            or self._considered.get(row.face_id) != row.crop_sha256
            or row.face_id in changed
        ]
        complete = only is None and ids is None
        unverified = frozenset(row.face_id for row in rows) if complete else None
        if not fresh and not replace_all:
            self._rejections = rejections
            return SuggestPass(0, unverified=unverified)
        predictions = predictor.classify(
            _stack([row.vector for row in fresh]),
            [str(row.face_id) for row in fresh],
            top_k=1,
            min_confidence=self.min_confidence,
            excluded=[rejections.get(row.face_id, frozenset()) for row in fresh],
            signals=[row.signals for row in fresh],
            min_quality=self.min_quality,
        )
        named = [
            (int(p.input), p.person_id, p.confidence)
            for p in predictions
            if p.person_id is not None
        ]
        gated = {int(p.input): (float(p.quality or 0.0), p.gated) for p in predictions if p.gated}
        written = self.store.suggestions.write(
            predictor.version,
            [row.face_id for row in fresh],
            named,
            replace_all=replace_all,
        )
        was_low = {row.face_id for row in fresh if row.low_quality is not None}
        self.store.quality.mark(space_hash, gated, was_low - gated.keys())
        self._considered.update({row.face_id: row.crop_sha256 for row in fresh})
        self._rejections = rejections  # only now: a failed write is redone next pass
        if written or replace_all:
            log.info("Wrote %d suggestions with model %s", written, predictor.version)
        if gated:
            log.info("%d faces are low quality: no suggestion, no group", len(gated))
        suggested = {face_id for face_id, _, _ in named}
        unnamed = {
            row.face_id: row.vector
            for row in fresh
            if row.face_id not in suggested and row.face_id not in gated
        }
        return SuggestPass(written, unnamed, unverified, len(gated))

    def _without_model(
        self, space_hash: str, only: Collection[int] | None, ids: IdRanges | None
    ) -> SuggestPass:
        rows = self.store.suggestions.unverified_vectors(
            space_hash, only, ids if only is None else None
        )
        complete = only is None and ids is None
        unverified = frozenset(row.face_id for row in rows) if complete else None
        return SuggestPass(0, {row.face_id: row.vector for row in rows}, unverified)


def _stack(vectors: list[np.ndarray]) -> np.ndarray:
    return np.stack(vectors) if vectors else np.zeros((0, 0), dtype=np.float32)

"""The predictor: person_id + confidence for crops or cached vectors, with top-k and "unknown".

The classifier chooses who: the most probable person (argmax of predict_proba; with
SVC this can differ from SVC.predict() on borderline faces). The model's open-set
rule (facestore.openset) decides whether the face is that person at all, from the
face's distance to the person's centroid, calibrated at retrain to a target
false-accept rate; "unknown" (person_id None) lists the best guesses in top_k all
the same. `confidence` is the rule's estimate that the name is right.

`min_confidence`, when given, overrides the calibrated threshold: a face is named
when its confidence is at least that. Models published before the open-set rule
have none; for them the classifier's top probability and the old default 0.2 are
used, with a warning to retrain.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facestore.artifacts import Bundle, load_bundle
from facestore.backbones import Backbone, build_backbone, space_of
from facestore.config import BackboneSettings
from facestore.errors import FacestoreError, ImageDecodeError, SpaceMismatchError
from facestore.faceness import scored
from facestore.images import decode_crop
from facestore.quality import (
    DEFAULT_MIN_QUALITY,
    ImageSignals,
    Judgement,
    image_signals,
    signal_arrays,
)
from facestore.ranking import most_probable, most_probable_rows
from facestore.settings import DEFAULT_TOP_K

if TYPE_CHECKING:  # a prediction for image files needs no database (nor SQLAlchemy)
    from PIL.Image import Image

    from facestore.store import Store

log = logging.getLogger(__name__)

LEGACY_MIN_CONFIDENCE = 0.2  # models without an open-set rule
CLASSIFY_CHUNK = 1024  # faces per predict_proba: 1024 x 10k people x 8 B = 80 MB a matrix


@dataclass
class Prediction:
    input: str
    person_id: Any | None
    confidence: float
    top_k: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    quality: float | None = None  # the gate's score (1.0: its floor); None: no gate
    gated: str | None = None  # low quality: the signal that kept it from a name

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input": self.input,
            "person_id": self.person_id,
            "confidence": self.confidence,
            "top_k": self.top_k,
            "quality": None if self.quality is None else round(self.quality, 3),
            "gated": self.gated is not None,
        }
        if self.gated is not None:
            data["low_quality"] = self.gated
        if self.error is not None:
            data["error"] = self.error
        return data


def check_space(bundle: Bundle, backbone: Backbone) -> None:
    model_hash = bundle.embedding_config.get("config_hash")
    built = space_of(backbone)
    if built.config_hash != model_hash:
        raise SpaceMismatchError(
            f"The model {bundle.version} was trained in embedding space {model_hash}, but the "
            f"configured backbone gives {built.config_hash} ({built.backbone}). Pass the weights "
            "the model was trained with, or move the model to these weights with "
            "'facestore reembed' (or embed and retrain in this space)."
        )


class Predictor:
    def __init__(
        self,
        bundle: Bundle,
        backbone: Backbone | None = None,
        settings: BackboneSettings | None = None,
    ) -> None:
        self.bundle = bundle
        self._backbone = backbone
        self._settings = settings or BackboneSettings()
        if backbone is not None:
            check_space(bundle, backbone)
        if bundle.open_set is None:
            log.warning(
                "Model %s has no open-set rule (published by an older facestore): 'unknown' "
                "falls back to the classifier's probability below %.2f. Run 'facestore "
                "retrain' to publish a model with the calibrated rule.",
                bundle.version,
                LEGACY_MIN_CONFIDENCE,
            )

    @classmethod
    def load(
        cls,
        model_dir: Path,
        settings: BackboneSettings | None = None,
        backbone: Backbone | None = None,
    ) -> Predictor:
        """Load the current model. The backbone is built (and checked) on first image."""
        return cls(load_bundle(model_dir), backbone=backbone, settings=settings)

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def space_hash(self) -> str:
        return str(self.bundle.embedding_config.get("config_hash"))

    @property
    def backbone(self) -> Backbone:
        if self._backbone is None:
            name = str(self.bundle.embedding_config.get("backbone", self._settings.name))
            backbone = build_backbone(replace(self._settings, name=name))
            check_space(self.bundle, backbone)
            self._backbone = backbone
        return self._backbone

    def classify(
        self,
        vectors: np.ndarray,
        labels: Sequence[str],
        top_k: int = DEFAULT_TOP_K,
        min_confidence: float | None = None,
        excluded: Sequence[Collection[str]] | None = None,
        signals: Sequence[ImageSignals | None] | None = None,
        min_quality: float | None = None,
    ) -> list[Prediction]:
        """Name or "unknown" per vector. min_confidence None: the model's calibrated rule.

        excluded: per vector, the person_ids (as text) it must not be named ("this is
        not X"); the most probable other person the rule accepts is named instead, or
        nobody. Excluded people are left out of top_k too.

        signals: per vector, the crop's quality signals (None: not measured). With the
        model's quality gate, a face whose quality is below min_quality (None: 1.0,
        the gate's calibrated floor; 0 turns it off) is named nobody; its best guesses
        stay in top_k.
        """
        if len(vectors) == 0:
            return []
        vectors = np.asarray(vectors, dtype=np.float32)
        predictions: list[Prediction] = []
        for start in range(0, len(vectors), CLASSIFY_CHUNK):  # memory: chunk x people
            end = start + CLASSIFY_CHUNK
            predictions += self._classify_chunk(
                vectors[start:end],
                labels[start:end],
                top_k,
                min_confidence,
                excluded[start:end] if excluded is not None else None,
            )
        return self._gate(predictions, vectors, signals, min_quality)

    def judge_quality(
        self, vectors: np.ndarray, signals: Sequence[ImageSignals | None] | None = None
    ) -> Judgement | None:
        """The model's quality gate on these faces (None: the model has no gate)."""
        gate = self.bundle.quality_gate
        if gate is None:
            return None
        return gate.judge(signal_arrays(signals, len(vectors)), len(vectors))

    def _gate(
        self,
        predictions: list[Prediction],
        vectors: np.ndarray,
        signals: Sequence[ImageSignals | None] | None,
        min_quality: float | None,
    ) -> list[Prediction]:
        judged = self.judge_quality(vectors, signals)
        if judged is None:
            return predictions
        floor = DEFAULT_MIN_QUALITY if min_quality is None else min_quality
        for prediction, quality, reason in zip(
            predictions, judged.quality, judged.reasons, strict=True
        ):
            prediction.quality = float(quality)
            if quality < floor:
                prediction.person_id = None
                prediction.gated = reason or "quality"
        return predictions

    def _classify_chunk(
        self,
        vectors: np.ndarray,
        labels: Sequence[str],
        top_k: int,
        min_confidence: float | None,
        excluded: Sequence[Collection[str]] | None,
    ) -> list[Prediction]:
        classifier = self.bundle.classifier
        probabilities = classifier.predict_proba(vectors)
        classes = np.asarray([int(c) for c in classifier.classes_], dtype=np.int64)
        names = [self.bundle.person_ids[c] for c in classes]
        k = max(1, top_k)
        # the rule is read at the k most probable people only (a row with a rejection:
        # at every person), not at all 10k of them
        top = most_probable_rows(probabilities, k)
        top_confidence, top_accepted, top_distance = self._judge(
            vectors, probabilities, classes, top, min_confidence
        )
        predictions = []
        for n, label in enumerate(labels):
            ruled_out = excluded[n] if excluded is not None else ()
            if ruled_out:  # the most probable person the rule accepts, other than these
                ids = most_probable(probabilities[n], len(classes))[None, :]
                judged = self._judge(
                    vectors[n : n + 1], probabilities[n : n + 1], classes, ids, min_confidence
                )
                ids, confidence, accepted = ids[0], judged[0][0], judged[1][0]
                distance = None if judged[2] is None else judged[2][0]
            else:
                ids, confidence, accepted = top[n], top_confidence[n], top_accepted[n]
                distance = None if top_distance is None else top_distance[n]
            order = [j for j, i in enumerate(ids) if str(names[i]) not in ruled_out]
            ranked = [
                {
                    "person_id": names[ids[j]],
                    "confidence": round(float(confidence[j]), 6),
                    "probability": round(float(probabilities[n, ids[j]]), 6),
                    **({} if distance is None else {"distance": round(float(distance[j]), 6)}),
                }
                for j in order[:k]
            ]
            candidates = order if ruled_out else order[:1]
            named = next((j for j in candidates if accepted[j]), None)
            predictions.append(
                Prediction(
                    input=label,
                    person_id=names[ids[named]] if named is not None else None,
                    confidence=round(float(confidence[named]), 6)
                    if named is not None
                    else (ranked[0]["confidence"] if ranked else 0.0),
                    top_k=ranked,
                )
            )
        return predictions

    def _judge(
        self,
        vectors: np.ndarray,
        probabilities: np.ndarray,
        classes: np.ndarray,
        columns: np.ndarray,
        min_confidence: float | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(confidence, accepted, distance or None) of each row's people at `columns`."""
        rule = self.bundle.open_set
        if rule is None:
            confidence = np.take_along_axis(probabilities, columns, 1)
            floor = LEGACY_MIN_CONFIDENCE if min_confidence is None else min_confidence
            return confidence, confidence >= floor, None
        distances = rule.distances_at(vectors, classes[columns])
        return rule.confidence(distances), rule.accepts(distances, min_confidence), distances

    def predict_crops(
        self,
        crops: Sequence[tuple[str, bytes]],
        top_k: int = DEFAULT_TOP_K,
        min_confidence: float | None = None,
        min_quality: float | None = None,
    ) -> list[Prediction]:
        """Predict for (label, image bytes) pairs; undecodable ones get an error entry."""
        images, labels, signals, failed = [], [], [], {}
        for label, blob in crops:
            try:
                images.append(decode_crop(blob))
            except ImageDecodeError as exc:
                failed[label] = Prediction(label, None, 0.0, [], error=str(exc))
            else:
                labels.append(label)
                signals.append(image_signals(images[-1], blob))
        options = (top_k, min_confidence, min_quality)
        done = {p.input: p for p in self.predict_decoded(labels, images, signals, *options)}
        return [done.get(label) or failed[label] for label, _ in crops]

    def predict_decoded(
        self,
        labels: Sequence[str],
        images: Sequence[Image],
        signals: Sequence[ImageSignals],
        top_k: int = DEFAULT_TOP_K,
        min_confidence: float | None = None,
        min_quality: float | None = None,
    ) -> list[Prediction]:
        """Predict for decoded crops and their image signals (facestore.quality)."""
        vectors = self.backbone.embed_images(list(images)) if images else np.zeros((0, 0))
        judged = scored(list(signals))
        return self.classify(vectors, labels, top_k, min_confidence, None, judged, min_quality)


def predict_faces(
    store: Store,
    predictor: Predictor,
    face_ids: Sequence[int],
    top_k: int = DEFAULT_TOP_K,
    min_confidence: float | None = None,
    min_quality: float | None = None,
) -> list[Prediction]:
    """Predict for faces of the database, reusing cached vectors of the model's space."""
    from facestore.store import decode_vectors

    cached = store.library.vectors_of(predictor.space_hash, face_ids)
    hits = [i for i in face_ids if i in cached]
    signals = store.library.signals_of(predictor.space_hash, hits)
    results = predictor.classify(
        decode_vectors([cached[i] for i in hits]),
        [f"face:{i}" for i in hits],
        top_k,
        min_confidence,
        signals=[signals.get(i) for i in hits],
        min_quality=min_quality,
    )
    missing = [i for i in face_ids if i not in cached]
    if missing:
        crops = store.library.crops_of(missing)
        absent = [i for i in missing if i not in crops]
        if absent:
            raise FacestoreError(
                f"No face with id {', '.join(map(str, absent))} in the database. "
                "Check the ids in the tagging app."
            )
        results += predictor.predict_crops(
            [(f"face:{i}", crops[i]) for i in missing], top_k, min_confidence, min_quality
        )
    by_input = {r.input: r for r in results}
    return [by_input[f"face:{i}"] for i in face_ids]

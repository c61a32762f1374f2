"""How much a crop looks like a face at all: the face probability of MTCNN's output
network (ONet), whose weights ship inside facenet-pytorch (no download), on the crop's
THUMBNAIL_SIDE-pixel thumbnail (facestore.quality.thumbnail_of).

It is the quality gate's backstop for detector false positives: on ORL (docs/accuracy.md)
every face scores above 0.3 (median 0.999), while corners of the same crops (hair,
background), random textures, half faces and blurred faces score near 0. It reads
pixels only, so it means the same whatever backbone embeds the crop; its floor is
calibrated per space from the verified faces, like the other signals.

The network (0.4 M parameters) runs on the CPU, a batch at a time; it is loaded once
per process, on first use (facestore.onet). In a process that has torch loaded
already (a facenet backbone) it runs in torch (0.4 ms a crop on 2 cores); otherwise
in numpy (1.5 ms a crop, the same scores to 1e-6), because importing torch would
cost 1.7 s: most of a `predict` with the dlib backbone.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

import numpy as np

from facestore import onet
from facestore.quality import ImageSignals


def face_scores(thumbnails: Sequence[np.ndarray]) -> np.ndarray:
    """The face probability (0..1) of each RGB uint8 thumbnail (THUMBNAIL_SIDE square)."""
    if not thumbnails:
        return np.zeros(0, dtype=np.float64)
    crops = np.stack(thumbnails)
    if "torch" in sys.modules:
        return onet.torch_face_probability(crops).astype(np.float64)
    return onet.face_probability(crops).astype(np.float64)


def scored(signals: Sequence[ImageSignals | None]) -> list[ImageSignals | None]:
    """The signals with the face score of each thumbnail filled in and the thumbnail let
    go of (signals with no thumbnail stay as they are)."""
    todo: list[tuple[int, ImageSignals]] = []
    thumbnails: list[np.ndarray] = []
    for i, s in enumerate(signals):
        if s is not None and s.thumbnail is not None:
            todo.append((i, s))
            thumbnails.append(s.thumbnail)
    out = list(signals)
    for (i, s), score in zip(todo, face_scores(thumbnails), strict=True):
        out[i] = dataclasses.replace(s, face_score=float(score), thumbnail=None)
    return out

"""Face quality: signals measured when a face is embedded, and a gate calibrated per
space from the verified faces. Pure (numpy and PIL only).

A photo library's crops include blurred faces, faces a few pixels wide and detector
false positives (a sleeve, hair, a wall). A backbone embeds them all the same, and
their vectors can land near someone; a name on such a crop is exactly the one a user
cannot check by eye. Three signals, from what the embed pass already has:

- `side`: the crop's shorter side in pixels, before any resizing;
- `sharpness`: the variance of the Laplacian of the crop in grey at a
  SHARPNESS_SIDE-pixel short side, over the variance of its intensities (so that
  dim and bright crops compare): a blurred or upscaled crop has little fine detail;
- `typicality`: the cosine between the face's unit vector and the mean direction of
  the verified faces' vectors: a non-face lands away from where faces do.

The gate (`calibrate_gate`) puts a floor under each signal from the verified faces
of the space (the faces the user vouched for): FLOOR_SHARE of the verified faces'
median for the two image signals (a median, so that blurred or tiny faces the user
verified, up to half of them, do not lower the floor), and, for typicality, the
verified faces' GATE_QUANTILE quantile moved down by TYPICALITY_MARGIN times their
interquartile range (at least MIN_TYPICALITY_MARGIN). A face's
`quality` is the lowest of its three signals measured against its floor (1.0: at the
floor); below 1.0 it is low quality: no name, no group. Faces embedded before the
image signals were recorded (NULL) are judged on typicality alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from facestore.openset import unit_rows

SHARPNESS_SIDE = 64
FLOOR_SHARE = 0.3  # side and sharpness: of the verified faces' median (ORL: ~ half their 1%)
GATE_QUANTILE = 0.01
TYPICALITY_MARGIN = 2.0  # typicality: GATE_QUANTILE minus this many of the verified IQRs
MIN_TYPICALITY_MARGIN = 0.01  # a backbone whose faces all look alike (random weights)
MIN_FACES = 10  # fewer verified faces: no gate (nothing to calibrate it on)
MAX_FACES = 20_000  # above this, calibrated on a seeded sample (the 1% quantile holds)
GATE_KIND = "quality-floors/v1"
DEFAULT_MIN_QUALITY = 1.0  # below the calibrated floor of some signal: low quality


@dataclass(frozen=True)
class ImageSignals:
    side: int  # the crop's shorter side in pixels
    sharpness: float


def image_signals(image: Image.Image) -> ImageSignals:
    """The image signals of one decoded crop (its own size, a small grey copy)."""
    width, height = image.size
    grey = image.convert("L")
    scale = SHARPNESS_SIDE / max(1, min(width, height))
    size = (max(3, round(width * scale)), max(3, round(height * scale)))
    pixels = np.asarray(grey.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    laplacian = (
        4 * pixels[1:-1, 1:-1]
        - pixels[:-2, 1:-1]
        - pixels[2:, 1:-1]
        - pixels[1:-1, :-2]
        - pixels[1:-1, 2:]
    )
    return ImageSignals(min(width, height), float(laplacian.var() / (pixels.var() + 1.0)))


def signal_arrays(
    signals: Sequence[ImageSignals | None] | None, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(sides, sharpness) arrays, NaN where a face's signals were not measured."""
    if signals is None:
        return None, None
    sides = np.array([np.nan if s is None else s.side for s in signals], dtype=np.float64)
    sharp = np.array([np.nan if s is None else s.sharpness for s in signals], dtype=np.float64)
    assert len(sides) == n, "one signals entry per face"
    return sides, sharp


def typicality(vectors: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cosine of each vector to the typical face's direction."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.float32)
    return unit_rows(vectors) @ direction


@dataclass(frozen=True)
class Judgement:
    quality: np.ndarray  # (n,) the lowest signal against its floor; < 1.0: low quality
    reasons: list[str]  # per face: the signal that set it ("" when above every floor)


@dataclass(frozen=True)
class QualityGate:
    side_floor: float
    sharpness_floor: float
    typicality_floor: float
    direction: np.ndarray  # the verified faces' mean unit vector, unit length
    faces: int  # verified faces it was calibrated on

    def judge(
        self,
        vectors: np.ndarray,
        sides: np.ndarray | None = None,
        sharpness: np.ndarray | None = None,
        by_vector: bool = True,
    ) -> Judgement:
        """quality per face (NaN signals, or None, are not measured: they do not count).
        by_vector=False: the image signals alone (no typicality)."""
        n = len(vectors)
        ratios: dict[str, np.ndarray] = {}
        if by_vector:
            cos = typicality(vectors, self.direction)
            # typicality against its floor as distance from the typical face: 1 at the floor
            distance = np.maximum(1.0 - cos, 1e-6)
            ratios["typicality"] = (1.0 - self.typicality_floor) / distance
        if sides is not None:
            ratios["size"] = np.asarray(sides, dtype=np.float64) / max(self.side_floor, 1e-9)
        if sharpness is not None:
            ratios["sharpness"] = np.asarray(sharpness, dtype=np.float64) / max(
                self.sharpness_floor, 1e-9
            )
        if not ratios:
            return Judgement(np.full(n, 1e6), [""] * n)
        names = list(ratios)
        table = np.vstack([np.asarray(ratios[name], dtype=np.float64) for name in names])
        table = np.where(np.isnan(table), np.inf, table)
        worst = table.argmin(axis=0) if n else np.zeros(0, dtype=np.int64)
        quality = table[worst, np.arange(n)] if n else np.zeros(0)
        reasons = [names[w] if q < 1.0 else "" for w, q in zip(worst, quality, strict=True)]
        return Judgement(np.minimum(quality, 1e6), reasons)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": GATE_KIND,
            "side_floor_px": round(self.side_floor, 2),
            "sharpness_floor": round(self.sharpness_floor, 4),
            "typicality_floor": round(self.typicality_floor, 4),
            "faces": self.faces,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(
            {**self.describe(), "direction": [float(x) for x in self.direction]}
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> QualityGate:
        params = json.loads(data)
        if params.get("kind") != GATE_KIND:
            raise ValueError(f"unknown quality gate {params.get('kind')!r}")
        return cls(
            side_floor=float(params["side_floor_px"]),
            sharpness_floor=float(params["sharpness_floor"]),
            typicality_floor=float(params["typicality_floor"]),
            direction=np.asarray(params["direction"], dtype=np.float32),
            faces=int(params["faces"]),
        )


def calibrate_gate(
    vectors: np.ndarray,
    sides: np.ndarray | None = None,
    sharpness: np.ndarray | None = None,
    seed: int = 0,
) -> QualityGate | None:
    """The gate from the verified faces of a space; None with fewer than MIN_FACES.
    Image signals not measured (NaN) are left out; with none measured at all, their
    floors are 0 (they gate nothing)."""
    if len(vectors) < MIN_FACES:
        return None
    total = len(vectors)
    if total > MAX_FACES:  # no copy of a 1M-row matrix: a sample of rows
        rows = np.sort(np.random.default_rng(seed).choice(total, MAX_FACES, replace=False))
        vectors = vectors[rows]
        sides = None if sides is None else np.asarray(sides)[rows]
        sharpness = None if sharpness is None else np.asarray(sharpness)[rows]
    units = unit_rows(vectors)
    direction = unit_rows(units.mean(axis=0, keepdims=True))[0]
    cos = units @ direction
    low, q1, q3 = np.quantile(cos, [GATE_QUANTILE, 0.25, 0.75])
    typicality_floor = float(low - max(TYPICALITY_MARGIN * (q3 - q1), MIN_TYPICALITY_MARGIN))

    def floor(values: np.ndarray | None) -> float:
        if values is None:
            return 0.0
        measured = np.asarray(values, dtype=np.float64)
        measured = measured[~np.isnan(measured)]
        if len(measured) < MIN_FACES:
            return 0.0
        return float(FLOOR_SHARE * np.median(measured))

    return QualityGate(
        side_floor=floor(sides),
        sharpness_floor=floor(sharpness),
        typicality_floor=typicality_floor,
        direction=direction.astype(np.float32),
        faces=total,
    )

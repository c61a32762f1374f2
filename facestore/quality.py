"""Face quality: signals measured when a face is embedded, and a gate calibrated per
space from the verified faces. Pure (numpy and PIL only).

A photo library's crops include blurred faces, faces a few pixels wide, crops saved as
coarse JPEGs and detector false positives (a sleeve, hair, a wall). A backbone embeds
them all the same, and their vectors can land near someone; a name on such a crop is
exactly the one a user cannot check by eye. Four signals, from what the embed pass
already has:

- `side`: the crop's shorter side in pixels, before any resizing;
- `sharpness`: the variance of the Laplacian of the crop in grey at a
  SHARPNESS_SIDE-pixel short side, over the variance of its intensities (so that
  dim and bright crops compare): a blurred or upscaled crop has little fine detail;
- `jpeg_quality`: the JPEG quality its bytes were saved at, read from the header's
  quantisation table (LOSSLESS for PNG): a crop saved at quality 10 has lost its
  detail to 8x8 blocks, whose edges keep the Laplacian high;
- `face_score`: how much the crop looks like a face at all, the face probability of
  MTCNN's output network (facestore.faceness) on a THUMBNAIL_SIDE-pixel copy: a
  sleeve, a wall or half a face scores near 0, a face near 1, whatever the backbone.

The gate (`calibrate_gate`) puts a floor under each signal at FLOOR_SHARE of the
verified faces' median (the faces the user vouched for; a median, so that blurred or
tiny faces the user verified, up to half of them, do not lower it); under the face
score only where that median is FACE_DECISION or more. A face's `quality` is the
lowest of its signals measured against its floor (1.0: at the floor); below 1.0 it is
low quality: no name, no group. Faces embedded before a signal was recorded (NULL)
are not judged on it.

No signal reads the backbone's vector. The first gate also floored "typicality", the
cosine of a face's vector to the verified faces' mean direction: on real faces of both backbone
families it gated every face of people who look unlike those named (with 20 people
named on ORL, all ten of one person's with dlib), while non-face crops lay nearer
that direction than those people do (docs/accuracy.md). A non-face that passes the
image signals is left to the open-set rule, which names a face only near a person.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

SHARPNESS_SIDE = 64
THUMBNAIL_SIDE = 48  # the face detector's input (MTCNN's output network)
FLOOR_SHARE = 0.3  # of the verified faces' median (ORL: size and sharpness ~ half their 1%)
MIN_FACES = 10  # fewer verified faces (or measured signals): no floor
GATE_KIND = "quality-floors/v3"  # v3: face score; v1 typicality (read, ignored)
READABLE_KINDS = ("quality-floors/v1", "quality-floors/v2", GATE_KIND)
DEFAULT_MIN_QUALITY = 1.0  # below the calibrated floor of some signal: low quality
# The face score gets a floor only where the detector takes the verified crops for faces
# (their median above its own decision point): a library of odd crops is not gated on it.
FACE_DECISION = 0.5


@dataclass(frozen=True)
class ImageSignals:
    side: int  # the crop's shorter side in pixels
    sharpness: float
    jpeg_quality: float  # compression_quality of its bytes; NaN: not told
    face_score: float = float("nan")  # facestore.faceness; NaN: not scored (yet)
    # the crop at THUMBNAIL_SIDE x THUMBNAIL_SIDE, RGB uint8, until it is scored
    thumbnail: np.ndarray | None = field(default=None, compare=False, repr=False)


def thumbnail_of(image: Image.Image) -> np.ndarray:
    """The crop squeezed to THUMBNAIL_SIDE square, RGB uint8 (the face detector's input)."""
    side = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    return np.asarray(image.convert("RGB").resize(side, Image.Resampling.BILINEAR), np.uint8)


def image_signals(image: Image.Image, blob: bytes) -> ImageSignals:
    """The image signals of one decoded crop (its own size, a small grey copy) and of
    the bytes it was decoded from (their header); its face score is still to come, from
    the thumbnail it carries (facestore.faceness.scored)."""
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
    sharpness = float(laplacian.var() / (pixels.var() + 1.0))
    return ImageSignals(
        min(width, height), sharpness, compression_quality(blob), thumbnail=thumbnail_of(image)
    )


# The IJG (libjpeg) luminance quantisation table at quality 50, in zigzag order
# (the order a DQT segment stores it in); quality q scales it by 5000/q % below 50,
# by 200 - 2q % above.
IJG_LUMINANCE = (
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40,
    26, 24, 22, 22, 24, 49, 35, 37, 29, 40, 58, 51, 61, 60, 57, 51,
    56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
    95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
)  # fmt: skip
LOSSLESS = 100.0  # the compression signal of a crop stored without loss


def compression_quality(blob: bytes) -> float:
    """The JPEG quality (1-100) the crop's bytes were saved at, read from the header: the
    scale of its luminance quantisation table against IJG's. LOSSLESS for PNG and
    lossless WebP; NaN where the bytes do not tell (lossy WebP, a JPEG without tables).
    Coarse quantisation wipes out the detail a backbone tells people apart by, while the
    blocks it leaves keep the Laplacian (sharpness) high."""
    if blob[:8] == b"\x89PNG\r\n\x1a\n":
        return LOSSLESS
    if blob[:4] == b"RIFF" and blob[8:16] == b"WEBPVP8L":
        return LOSSLESS
    table = _luminance_table(blob) if blob[:2] == b"\xff\xd8" else None
    if table is None:
        return float("nan")
    values = np.asarray(table, dtype=np.float64)
    base = np.asarray(IJG_LUMINANCE, dtype=np.float64)
    inside = (values > 1) & (values < 255)  # entries clamped at 1 or 255 say little
    if not inside.any():
        return LOSSLESS if values.max() <= 1 else 1.0
    # libjpeg: value = (base * scale + 50) // 100, so scale ~ (100 * value - 50) / base
    scale = float(np.median((100.0 * values[inside] - 50.0) / base[inside]))
    quality = 100.0 - scale / 2.0 if scale <= 100.0 else 5000.0 / max(scale, 1e-9)
    return float(np.clip(quality, 1.0, LOSSLESS))


def _luminance_table(blob: bytes) -> list[int] | None:
    """Table 0 of the JPEG's DQT segments (before the first scan), zigzag order."""
    pos = 2
    while pos + 4 <= len(blob):
        if blob[pos] != 0xFF:
            return None
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image: no table came
            return None
        length = int.from_bytes(blob[pos + 2 : pos + 4], "big")
        if marker == 0xDB:
            segment, i = blob[pos + 4 : pos + 2 + length], 0
            while i < len(segment):
                wide, table_id = segment[i] >> 4, segment[i] & 0x0F
                size = 128 if wide else 64
                raw = segment[i + 1 : i + 1 + size]
                if table_id == 0 and len(raw) == size:
                    if not wide:
                        return list(raw)
                    return [int.from_bytes(raw[k : k + 2], "big") for k in range(0, 128, 2)]
                i += 1 + size
        pos += 2 + length
    return None


@dataclass(frozen=True)
class SignalArrays:
    """The image signals of n faces, one array each (NaN: not measured)."""

    sides: np.ndarray
    sharpness: np.ndarray
    jpeg_quality: np.ndarray
    face_score: np.ndarray


def signal_arrays(signals: Sequence[ImageSignals | None] | None, n: int) -> SignalArrays | None:
    """The signals as arrays, NaN where a face's signals were not measured."""
    if signals is None:
        return None

    def column(name: str) -> np.ndarray:
        return np.array(
            [np.nan if s is None else getattr(s, name) for s in signals], dtype=np.float64
        )

    arrays = SignalArrays(
        column("side"), column("sharpness"), column("jpeg_quality"), column("face_score")
    )
    assert len(arrays.sides) == n, "one signals entry per face"
    return arrays


@dataclass(frozen=True)
class Judgement:
    quality: np.ndarray  # (n,) the lowest signal against its floor; < 1.0: low quality
    reasons: list[str]  # per face: the signal that set it ("" when above every floor)


@dataclass(frozen=True)
class QualityGate:
    side_floor: float
    sharpness_floor: float
    jpeg_quality_floor: float  # 0: gates nothing (none of the verified faces measured)
    face_score_floor: float  # 0: gates nothing (a gate from before v3, or none scored)
    faces: int  # verified faces it was calibrated on

    def judge(self, signals: SignalArrays | None, n: int) -> Judgement:
        """quality of n faces (NaN signals, or None, are not measured: they do not count)."""
        if signals is None:
            return Judgement(np.full(n, 1e6), [""] * n)
        floors = {
            "size": (signals.sides, self.side_floor),
            "sharpness": (signals.sharpness, self.sharpness_floor),
            "compression": (signals.jpeg_quality, self.jpeg_quality_floor),
            "face score": (signals.face_score, self.face_score_floor),
        }
        names = list(floors)
        table = np.vstack(
            [
                np.asarray(values, dtype=np.float64) / floor if floor > 0 else np.full(n, np.inf)
                for values, floor in floors.values()
            ]
        )  # a floor of 0 gates nothing, not even a signal of 0
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
            "jpeg_quality_floor": round(self.jpeg_quality_floor, 2),
            "face_score_floor": round(self.face_score_floor, 4),
            "faces": self.faces,
        }

    def to_bytes(self) -> bytes:
        return json.dumps(self.describe()).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> QualityGate:
        params = json.loads(data)
        if params.get("kind") not in READABLE_KINDS:
            raise ValueError(f"unknown quality gate {params.get('kind')!r}")
        return cls(
            side_floor=float(params["side_floor_px"]),
            sharpness_floor=float(params["sharpness_floor"]),
            jpeg_quality_floor=float(params.get("jpeg_quality_floor", 0.0)),  # v1: none
            face_score_floor=float(params.get("face_score_floor", 0.0)),  # v1, v2: none
            faces=int(params["faces"]),
        )


def calibrate_gate(signals: SignalArrays) -> QualityGate | None:
    """The gate from the signals of a space's verified faces; None with fewer than
    MIN_FACES faces. Signals not measured (NaN) are left out; a signal measured on
    fewer than MIN_FACES faces gets a floor of 0 (it gates nothing), and so does the
    face score where the verified faces' median is below FACE_DECISION."""
    faces = len(signals.sides)
    if faces < MIN_FACES:
        return None

    def floor(values: np.ndarray) -> float:
        measured = np.asarray(values, dtype=np.float64)
        measured = measured[~np.isnan(measured)]
        if len(measured) < MIN_FACES:
            return 0.0
        return float(FLOOR_SHARE * np.median(measured))

    face_scores = signals.face_score[~np.isnan(signals.face_score)]
    seen_as_faces = len(face_scores) > 0 and float(np.median(face_scores)) >= FACE_DECISION
    return QualityGate(
        side_floor=floor(signals.sides),
        sharpness_floor=floor(signals.sharpness),
        jpeg_quality_floor=floor(signals.jpeg_quality),
        face_score_floor=floor(signals.face_score) if seen_as_faces else 0.0,
        faces=faces,
    )

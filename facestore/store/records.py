"""The store's value types: crops, results, counts and summaries, and vector bytes. Pure."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from numpy.typing import DTypeLike

from facestore.quality import ImageSignals, SignalArrays

VECTOR_DTYPE = np.dtype("<f4")


def crop_sha256(blob: bytes | None) -> str:
    return hashlib.sha256(blob or b"").hexdigest()


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vectors(blobs: Sequence[bytes]) -> np.ndarray:
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.frombuffer(b, dtype=VECTOR_DTYPE) for b in blobs]).astype(np.float32)


ID_CHUNK = 5000  # ids per IN (...) list: SQLite binds at most 32,766 parameters, psycopg 65,535


def id_chunks(ids: Iterable[int]) -> list[list[int]]:
    """Sorted ids in lists of at most ID_CHUNK, one IN (...) list each."""
    ordered = sorted(ids)
    return [ordered[i : i + ID_CHUNK] for i in range(0, len(ordered), ID_CHUNK)]


class VectorMatrix:
    """Stored vectors appended a chunk at a time to one matrix: no array per row, no list
    of chunks to concatenate (1M x 512 float32 are 2 GB; a copy would be 4).

    `dtype` float16 halves that for a training matrix (training.TRAINING_DTYPE). Should a
    vector not fit float16 (a component beyond +-65,504), the matrix turns float32."""

    def __init__(self, capacity: int, dtype: DTypeLike = np.float32) -> None:
        self._capacity = max(1, capacity)
        self._dtype = np.dtype(dtype)
        self._matrix: np.ndarray | None = None
        self._rows = 0

    def extend(self, blobs: Sequence[bytes]) -> None:
        if not blobs:
            return
        chunk = np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), -1)
        if self._dtype != VECTOR_DTYPE and not _fits(chunk, self._dtype):
            self._dtype = VECTOR_DTYPE
            if self._matrix is not None:
                self._matrix = self._matrix.astype(VECTOR_DTYPE)
        if self._matrix is None:
            shape = (max(self._capacity, len(chunk)), chunk.shape[1])
            self._matrix = np.empty(shape, self._dtype)
        end = self._rows + len(chunk)
        if end > len(self._matrix):  # more rows than the estimate: grow (rare)
            self._matrix.resize(
                (max(end, len(self._matrix) * 5 // 4), chunk.shape[1]), refcheck=False
            )
        self._matrix[self._rows : end] = chunk
        self._rows = end

    def finish(self) -> np.ndarray:
        """The matrix of the rows appended; its unused tail is given back in place."""
        if self._matrix is None:
            return np.zeros((0, 0), dtype=self._dtype)
        if self._rows < len(self._matrix):
            self._matrix.resize((self._rows, self._matrix.shape[1]), refcheck=False)
        return self._matrix


def _fits(chunk: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every finite value of chunk stays finite in dtype."""
    if not np.issubdtype(dtype, np.floating) or not len(chunk):
        return True
    finite = np.abs(chunk[np.isfinite(chunk)])
    return not len(finite) or float(finite.max()) <= float(np.finfo(dtype).max)


@dataclass(frozen=True)
class Crop:
    face_id: int
    blob: bytes
    error: str | None = None  # why the stored value cannot be a crop (it is not image bytes)


def crop_from(face_id: int, value: Any, sql_type: str | None = None) -> Crop:
    """The crop of a face_crop_blob value of any type; anything but bytes carries an error.

    sql_type is SQLite's typeof() of the value (the value itself is read CAST AS BLOB,
    so TEXT that is not valid UTF-8 cannot fail the read).
    """
    if value is None:
        return Crop(face_id, b"", "face_crop_blob is NULL: the app stored no crop for this face")
    if isinstance(value, str):
        data, kind = value.encode("utf-8", "surrogateescape"), "text"
    elif isinstance(value, bytes | bytearray | memoryview):
        data, kind = bytes(value), sql_type or "blob"
    else:
        data, kind = str(value).encode(), type(value).__name__
    if kind == "blob":
        return Crop(face_id, data)
    hint = (
        " (it looks like base64 of an image: store the decoded bytes)"
        if _base64_image(data)
        else ""
    )
    return Crop(
        face_id,
        data,
        f"face_crop_blob holds {kind}, not image bytes{hint}: the app must store the crop "
        "as a BLOB of JPEG, PNG or WebP data",
    )


def _base64_image(data: bytes) -> bool:
    try:
        head = base64.b64decode(data[:64], validate=True)
    except (binascii.Error, ValueError):
        return False
    return head.startswith((b"\xff\xd8", b"\x89PNG", b"RIFF"))


# The embedding table's quality-signal columns, in ImageSignals' order (facestore.quality)
SIGNAL_COLUMNS = ("crop_side", "sharpness", "jpeg_quality", "face_score")


@dataclass(frozen=True)
class VectorResult:
    face_id: int
    crop_sha256: str
    vector: np.ndarray
    signals: ImageSignals | None = None  # measured on its crop (facestore.quality)

    def signal_columns(self) -> dict[str, int | float | None]:
        """The embedding row's signal columns (NULL: not measured)."""
        s = self.signals
        if s is None:
            return dict.fromkeys(SIGNAL_COLUMNS)
        values = (s.side, s.sharpness, s.jpeg_quality, s.face_score)
        return {
            name: None if isinstance(v, float) and math.isnan(v) else v
            for name, v in zip(SIGNAL_COLUMNS, values, strict=True)
        }


class UnverifiedFace(NamedTuple):
    """An unverified face with a vector in a space, as the suggestion pass reads it."""

    face_id: int
    crop_sha256: str
    vector: np.ndarray
    signals: ImageSignals | None  # None: embedded before the signals were recorded
    low_quality: float | None  # the quality the current verdict found low, or None


@dataclass(frozen=True)
class FailureResult:
    face_id: int
    crop_sha256: str
    error: str


@dataclass(frozen=True)
class IdRanges:
    """Face ids lo <= id < hi (hi None: no end): the part of the library one timer pass
    checks, so that its cost does not grow with the library."""

    spans: tuple[tuple[int, int | None], ...]

    def clause(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.or_(
            *(
                sa.and_(column >= lo, column < hi) if hi is not None else column >= lo
                for lo, hi in self.spans
            )
        )

    def __str__(self) -> str:
        return ", ".join(f"{lo}..{'' if hi is None else hi - 1}" for lo, hi in self.spans)


@dataclass(frozen=True)
class WriteOutcome:
    embedded: int
    failed: int
    changed: int  # results dropped because the crop changed while they were computed
    written: tuple[int, ...] = ()  # the faces whose vectors were stored


@dataclass(frozen=True)
class TrainingRows:
    face_ids: list[int]
    person_ids: list[Any]
    vectors: np.ndarray
    signals: SignalArrays  # quality signals per row, NaN where not measured


@dataclass(frozen=True)
class SpaceSummary:
    """One embedding space: its vectors, the verified faces it lacks, its failures."""

    backbone: str
    config_hash: str
    active: bool
    vectors: int
    missing: int | None  # None: not counted (status without --exact on a large library)
    failed: int
    created_at: str | None  # ISO 8601 UTC
    activated_at: str | None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CacheCounts:
    faces: int
    verified: int
    embedded: int
    pending: int
    failed: int
    stale: int  # vectors of other spaces

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class QueueCounts:
    queued: int
    leased: int  # under a live lease

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PruneCounts:
    vectors: int
    failures: int
    spaces: int


@dataclass(frozen=True)
class FailureRow:
    face_id: int
    person_id: Any
    error: str
    attempts: int
    failed_at: str | None  # ISO 8601 UTC

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


MAX_ERROR_CHARS = 500


def printable(error: str) -> str:
    """An error message any database stores (PostgreSQL text cannot hold NUL), kept short."""
    text = error.replace("\x00", "\\x00")
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def signals_of(
    side: int | None,
    sharpness: float | None,
    jpeg_quality: float | None,
    face_score: float | None,
) -> ImageSignals | None:
    """A face's stored quality signals (None: not measured when it was embedded; a NULL
    jpeg_quality alone: embedded before revision 0009, or its bytes do not tell; a NULL
    face_score: embedded before revision 0010)."""
    if side is None or sharpness is None:
        return None

    def measured(value: float | None) -> float:
        return float("nan") if value is None else float(value)

    return ImageSignals(int(side), float(sharpness), measured(jpeg_quality), measured(face_score))


def signals_of_row(row: Any) -> ImageSignals | None:
    """signals_of a row that selected the SIGNAL_COLUMNS."""
    return signals_of(*(getattr(row, name) for name in SIGNAL_COLUMNS))

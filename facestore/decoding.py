"""Decoding beside the model: pools that turn a claimed batch of crops into the
model's input while the model embeds the previous batch. No database here.

What each route gives (`Decoded`, `DecodePool`) and the thread route live here; the
other routes import them, and facestore.decode_pools picks the route for a backbone.

- `ProcessDecoding` (facestore.process_decoding), the CPU route for backbones whose
  preprocessing runs in another process (`ProcessPreparable`: facenet): worker
  processes sized to the cores decode and prepare straight into shared-memory slots,
  so no pixel array is pickled. A worker that dies is replaced; a crop that kills a
  fresh worker twice fails alone.
- `ThreadDecoding` (here): threads, for backbones whose preparation needs this
  process's state (dlib's landmark model), or where shared memory is short.
- `DeviceDecoding` (facestore.device_decoding), the GPU route: JPEGs the batched
  device decoder takes (`tensor_preprocess.gpu_route`) are decoded, letterboxed and
  normalised on the model's device; the rest of the same batch goes to the CPU route,
  as do crops the device decoder refuses.

Every route measures each crop's quality signals (facestore.quality) from its decode.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from facestore.backbones import Backbone, PreparedBackbone
from facestore.quality import ImageSignals, image_signals
from facestore.store import Crop, crop_sha256

log = logging.getLogger(__name__)

DECODE_MODES = ("auto", "processes", "threads")


@dataclass(frozen=True)
class Decoded:
    face_id: int
    crop_sha256: str
    pixels: Any  # the backbone's prepared array (a row view, a tensor row), or a PIL image
    error: str | None
    signals: ImageSignals | None = None  # the crop's quality signals (facestore.quality)


@runtime_checkable
class ProcessPreparable(Protocol):
    """A backbone whose `prepare` is a plain module-level function of the image alone,
    so that worker processes can run it; its output always has `prepared_shape`."""

    prepared_shape: tuple[int, ...]

    @property
    def prepare_function(self) -> Callable[[Any], np.ndarray]: ...


class DecodingBatch(Protocol):
    def result(self) -> list[Decoded]: ...

    def release(self) -> None:
        """The model is done with the pixels: their memory may take the next batch."""


class DecodePool(Protocol):
    workers: int
    kind: str

    def submit(self, crops: Sequence[Crop]) -> DecodingBatch: ...

    def close(self) -> None: ...


def decoder(backbone: Backbone) -> Callable[[Crop], Decoded]:
    """Crop -> Decoded in this process: the image (prepared, on the fast path) or why
    it cannot be one."""
    from facestore.errors import ImageDecodeError
    from facestore.images import decode_crop

    prepare = backbone.prepare if isinstance(backbone, PreparedBackbone) else None

    def decode(crop: Crop) -> Decoded:
        sha = crop_sha256(crop.blob)
        if crop.error is not None:
            return Decoded(crop.face_id, sha, None, crop.error)
        try:
            image = decode_crop(crop.blob)
        except ImageDecodeError as exc:
            return Decoded(crop.face_id, sha, None, str(exc))
        try:
            pixels = prepare(image) if prepare else image
            return Decoded(crop.face_id, sha, pixels, None, image_signals(image, crop.blob))
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the batch
            return Decoded(crop.face_id, sha, None, f"the backbone cannot prepare it: {exc}")

    return decode


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(kind: str) -> int:
    """Processes: every core but the one feeding the model; threads: at most 4."""
    cpus = available_cpus()
    return max(1, cpus - 1) if kind == "processes" else min(4, cpus)


class _ThreadBatch:
    def __init__(self, futures: list[Future[Decoded]]) -> None:
        self._futures = futures

    def result(self) -> list[Decoded]:
        return [f.result() for f in self._futures]

    def release(self) -> None:
        for future in self._futures:
            future.cancel()


class ThreadDecoding:
    """Decode and prepare in threads of this process."""

    kind = "threads"

    def __init__(self, decode: Callable[[Crop], Decoded], workers: int | None = None) -> None:
        self.workers = workers or default_workers(self.kind)
        self._decode = decode
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="facestore-decode")

    def submit(self, crops: Sequence[Crop]) -> DecodingBatch:
        return _ThreadBatch([self._pool.submit(self._decode, crop) for crop in crops])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

"""Crops to vectors: decode (and prepare) in threads, run the model in chunks, and make
one bad face fail alone. No database here.

A stop request waits for at most one chunk of the model's work: chunks are sized to
about CHUNK_SECONDS from the measured time per face (bench/shutdown.py).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from facestore.backbones import Backbone, PreparedBackbone
from facestore.errors import ImageDecodeError
from facestore.images import decode_crop
from facestore.store import Crop, FailureResult, VectorResult, crop_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decoded:
    face_id: int
    crop_sha256: str
    pixels: Any  # the backbone's prepared array, or a PIL image
    error: str | None


def decoder(backbone: Backbone) -> Callable[[Crop], Decoded]:
    """Crop -> Decoded: the image (prepared, on the fast path) or why it cannot be one."""
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
            return Decoded(crop.face_id, sha, prepare(image) if prepare else image, None)
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the batch
            return Decoded(crop.face_id, sha, None, f"the backbone cannot prepare it: {exc}")

    return decode


def decode_ahead(
    batches: Iterable[list[Crop]], pool: ThreadPoolExecutor, decode: Callable[[Crop], Decoded]
) -> Generator[list[Decoded], None, None]:
    """Yield decoded batches while the next batch is already decoding in the pool.

    Closed early (a stop, a deadline), it cancels the decoding still queued.
    """
    in_flight: deque[list[Future[Decoded]]] = deque()
    try:
        for batch in batches:
            in_flight.append([pool.submit(decode, crop) for crop in batch])
            if len(in_flight) > 1:
                yield [f.result() for f in in_flight.popleft()]
        while in_flight:
            yield [f.result() for f in in_flight.popleft()]
    finally:
        for futures in in_flight:
            for future in futures:
                future.cancel()


def _embed(backbone: Backbone, decoded: list[Decoded]) -> np.ndarray:
    pixels = [d.pixels for d in decoded]
    if isinstance(backbone, PreparedBackbone):
        vectors = backbone.embed_prepared(np.stack(pixels))
    else:
        vectors = backbone.embed_images(pixels)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape != (len(decoded), backbone.dim):
        raise RuntimeError(
            f"Backbone {backbone.name} returned shape {vectors.shape}, "
            f"expected {(len(decoded), backbone.dim)}"
        )
    return vectors


# A stop request waits for at most one chunk of the model's work (under a second on
# the slowest machines measured; bench/shutdown.py).
CHUNK_SECONDS = 0.5
FIRST_CHUNK = 8


class Chunker:
    """Splits a batch for the model into chunks of about CHUNK_SECONDS each, so that a
    stop request is seen between chunks; on a fast device a chunk is the whole batch."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.size = min(batch_size, FIRST_CHUNK)

    def chunks(self, items: list[Decoded]) -> Iterator[list[Decoded]]:
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            started = time.perf_counter()
            yield chunk
            per_face = (time.perf_counter() - started) / len(chunk)
            self.size = max(1, min(self.batch_size, int(CHUNK_SECONDS / max(per_face, 1e-6))))
            start += len(chunk)


def embed_batch(
    backbone: Backbone,
    decoded: list[Decoded],
    chunker: Chunker,
    stop: threading.Event | None,
    model_works: Callable[[], bool],
) -> tuple[list[VectorResult], list[FailureResult]] | None:
    """Vectors for the decodable faces, failures for the rest; None if stopped meanwhile."""
    results: list[VectorResult] = []
    failures = [
        FailureResult(d.face_id, d.crop_sha256, d.error) for d in decoded if d.error is not None
    ]
    for chunk in chunker.chunks([d for d in decoded if d.error is None]):
        if stop is not None and stop.is_set():
            return None
        vectors, errors = _embed_isolated(backbone, chunk, model_works)
        results += [VectorResult(d.face_id, d.crop_sha256, v) for d, v in vectors]
        failures += [FailureResult(d.face_id, d.crop_sha256, e) for d, e in errors]
    return results, failures


def _embed_isolated(
    backbone: Backbone, chunk: list[Decoded], model_works: Callable[[], bool]
) -> tuple[list[tuple[Decoded, np.ndarray]], list[tuple[Decoded, str]]]:
    """Embed a chunk; if the model fails on it, face by face, so one face fails alone.

    If every face fails on its own too, and the model also fails on a plain probe
    image, the fault is not the faces' (a broken model, a device out of memory): that
    error is raised, and nothing is recorded as failed.
    """
    try:
        return list(zip(chunk, _embed(backbone, chunk), strict=True)), []
    except Exception as exc:  # noqa: BLE001 - decided below: a face's fault or the model's
        if len(chunk) > 1:
            log.warning("The model failed on %d faces (%s); one by one now", len(chunk), exc)
        first = exc
    vectors: list[tuple[Decoded, np.ndarray]] = []
    errors: list[tuple[Decoded, str]] = []
    for d in chunk if len(chunk) > 1 else []:
        try:
            vectors.append((d, _embed(backbone, [d])[0]))
        except Exception as exc:  # noqa: BLE001
            errors.append((d, f"the backbone failed on this face: {exc}"))
    if len(chunk) == 1:
        errors = [(chunk[0], f"the backbone failed on this face: {first}")]
    if not vectors and not model_works():
        raise first
    return vectors, errors


PROBE_SIZE = (112, 112)


def probe(backbone: Backbone, decode: Callable[[Crop], Decoded]) -> Callable[[], bool]:
    """Whether the model embeds a plain grey image now; asked only when faces fail."""
    image = io.BytesIO()
    Image.new("RGB", PROBE_SIZE, (128, 128, 128)).save(image, "PNG")
    probe = Crop(0, image.getvalue())

    def model_works() -> bool:
        prepared = decode(probe)
        try:
            return prepared.error is None and len(_embed(backbone, [prepared])) == 1
        except Exception:  # noqa: BLE001 - the answer is "no"
            return False

    return model_works

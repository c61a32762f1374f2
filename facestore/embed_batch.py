"""Decoded crops to vectors: run the model in chunks, and make one bad face fail alone.
No database here (decoding: facestore.decoding).

A stop request waits for at most one chunk of the model's work: chunks are sized to
about CHUNK_SECONDS from the measured time per face (bench/shutdown.py).
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image

from facestore.backbones import Backbone, PreparedBackbone
from facestore.decoding import Decoded
from facestore.faceness import scored
from facestore.store import Crop, FailureResult, VectorResult

log = logging.getLogger(__name__)


def _embed(backbone: Backbone, decoded: list[Decoded]) -> np.ndarray:
    pixels = [d.pixels for d in decoded]
    if isinstance(backbone, PreparedBackbone):
        vectors = backbone.embed_prepared(backbone.stack_prepared(pixels))
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
    stop request is seen between chunks; on a fast device a chunk is the whole batch.

    Sizes are FIRST_CHUNK times powers of two (capped at the batch size), grown one
    doubling at a time and halved when a chunk takes too long: a model runs each new
    batch shape slowly the first time, so few distinct shapes keep it fast (sizes
    fitted to each measurement gave 8, 23, 1, 14, 18 and cost ~5% here).
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.size = min(batch_size, FIRST_CHUNK)

    def chunks(self, items: list[Decoded]) -> Iterator[list[Decoded]]:
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            started = time.perf_counter()
            yield chunk
            if len(chunk) == self.size:  # a remainder teaches nothing about the size
                fits = CHUNK_SECONDS * len(chunk) / max(time.perf_counter() - started, 1e-9)
                self.size = self.next_size(fits)
            start += len(chunk)

    def next_size(self, fits: float) -> int:
        """Double if twice the chunk fits the time, halve while the chunk does not."""
        size = self.size * 2 if fits >= self.size * 2 else self.size
        while size > 1 and size > fits:
            size //= 2
        return max(1, min(self.batch_size, size))


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
        signals = scored([d.signals for d, _ in vectors])
        results += [
            VectorResult(d.face_id, d.crop_sha256, v, s)
            for (d, v), s in zip(vectors, signals, strict=True)
        ]
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

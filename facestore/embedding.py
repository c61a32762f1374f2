"""The incremental pipeline: queue -> claim a batch -> decode in parallel -> embed -> write.

Decoding of the next batch runs in worker threads while the model embeds the
current one. Claims and writes are short transactions of their own; none is
held while decoding or while the model runs. Each run is one lease owner, so
several runs (processes, machines) share the queue without doing a face twice.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from PIL import Image

from facestore.backbones import Backbone, Space, space_of
from facestore.errors import ImageDecodeError, SpaceMismatchError
from facestore.images import decode_crop
from facestore.store import (
    Crop,
    FailureResult,
    LeaseOwner,
    Store,
    VectorResult,
    crop_sha256,
    worker_host,
)

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]

DEFAULT_LEASE_SECONDS = 120.0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def claimed_batches(
    store: Store,
    space_hash: str,
    batch_size: int,
    owner: str,
    lease_seconds: float,
    verified: bool = True,
    scan: bool = True,
) -> Iterator[list[Crop]]:
    """Claim batches until the queue has nothing free.

    With scan, first (and again when the queue runs dry) scan the face table for
    pending faces the triggers did not queue; without, trust the queue: the cost
    then does not grow with the number of faces. Leases of killed workers on
    this host are freed at once; other hosts' expire.
    """
    released = store.queue.release_dead(worker_host(), process_alive)
    if released:
        log.info("Freed %d faces leased by workers on this host that are gone", released)
    if scan:
        store.queue.enqueue_pending(space_hash, verified)
    while True:
        batch = store.queue.claim(space_hash, batch_size, owner, lease_seconds, verified)
        if batch:
            yield batch
        elif not scan or store.queue.enqueue_pending(space_hash, verified) == 0:
            return


@dataclass(frozen=True)
class EmbedReport:
    embedded: int
    failed: int
    pending: int | None  # None: not counted (a queue-only pass)
    seconds: float
    more: bool = False  # stopped at the deadline with work left

    def as_json(self) -> dict[str, Any]:
        return {
            "embedded": self.embedded,
            "failed": self.failed,
            "pending": self.pending,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class _Decoded:
    face_id: int
    crop_sha256: str
    pixels: Any  # the backbone's prepared array, or a PIL image
    error: str | None


@contextlib.contextmanager
def _releasing(store: Store, owner: str) -> Iterator[None]:
    """On the way out (stop, error), free the leases of batches claimed but not written."""
    try:
        yield
    finally:
        try:
            released = store.queue.release(owner)
        except sa.exc.SQLAlchemyError as exc:  # they expire anyway
            log.warning("Could not release leases (they will expire): %s", exc)
        else:
            if released:
                log.info("Released %d leased faces for other workers", released)


def ensure_active_space(store: Store, space: Space) -> None:
    """Record the space on first use; refuse to mix it with a different active space."""
    active = store.spaces.active()
    if active is None:
        store.spaces.activate(space)
        log.info("Recorded %s as the active embedding space", space.label)
        return
    if active.config_hash != space.config_hash:
        raise SpaceMismatchError(
            f"The configured backbone gives embedding space {space.label}, but the database's "
            f"active space is {active.label}. Vectors from different spaces never mix: run "
            "'facestore reembed' to move the store to the new backbone, or pass the weights "
            "and backbone of the active space."
        )


def _decoder(backbone: Backbone) -> Callable[[Crop], _Decoded]:
    prepare = getattr(backbone, "prepare", None)

    def decode(crop: Crop) -> _Decoded:
        sha = crop_sha256(crop.blob)
        if crop.error is not None:
            return _Decoded(crop.face_id, sha, None, crop.error)
        try:
            image = decode_crop(crop.blob)
        except ImageDecodeError as exc:
            return _Decoded(crop.face_id, sha, None, str(exc))
        try:
            return _Decoded(crop.face_id, sha, prepare(image) if prepare else image, None)
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the batch
            return _Decoded(crop.face_id, sha, None, f"the backbone cannot prepare it: {exc}")

    return decode


def _decode_ahead(
    batches: Iterable[list[Crop]], pool: ThreadPoolExecutor, decode: Callable[[Crop], _Decoded]
) -> Iterator[list[_Decoded]]:
    """Yield decoded batches while the next batch is already decoding in the pool."""
    in_flight: deque[list[Future[_Decoded]]] = deque()
    for batch in batches:
        in_flight.append([pool.submit(decode, crop) for crop in batch])
        if len(in_flight) > 1:
            yield [f.result() for f in in_flight.popleft()]
    while in_flight:
        yield [f.result() for f in in_flight.popleft()]


def _embed(backbone: Backbone, decoded: list[_Decoded]) -> np.ndarray:
    pixels = [d.pixels for d in decoded]
    embed_prepared = getattr(backbone, "embed_prepared", None)
    if embed_prepared is not None and hasattr(backbone, "prepare"):
        vectors = embed_prepared(np.stack(pixels))
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


class _Chunker:
    """Splits a batch for the model into chunks of about CHUNK_SECONDS each, so that a
    stop request is seen between chunks; on a fast device a chunk is the whole batch."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.size = min(batch_size, FIRST_CHUNK)

    def chunks(self, items: list[_Decoded]) -> Iterator[list[_Decoded]]:
        start = 0
        while start < len(items):
            chunk = items[start : start + self.size]
            started = time.perf_counter()
            yield chunk
            per_face = (time.perf_counter() - started) / len(chunk)
            self.size = max(1, min(self.batch_size, int(CHUNK_SECONDS / max(per_face, 1e-6))))
            start += len(chunk)


def _embed_batch(
    backbone: Backbone,
    decoded: list[_Decoded],
    chunker: _Chunker,
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
    backbone: Backbone, chunk: list[_Decoded], model_works: Callable[[], bool]
) -> tuple[list[tuple[_Decoded, np.ndarray]], list[tuple[_Decoded, str]]]:
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
    vectors: list[tuple[_Decoded, np.ndarray]] = []
    errors: list[tuple[_Decoded, str]] = []
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


def _probe(backbone: Backbone, decode: Callable[[Crop], _Decoded]) -> Callable[[], bool]:
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


def embed_pending(
    store: Store,
    backbone: Backbone,
    *,
    batch_size: int = 32,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    space: Space | None = None,
    verified: bool = True,
    target_space: bool = False,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    scan: bool = True,
    deadline: float | None = None,
) -> EmbedReport:
    """Embed every pending verified face of the backbone's space. Resumable at any point.

    With verified=False, embed the unverified faces instead (for suggestions).
    With target_space=True the space is only recorded, not required to be the
    active one: `facestore reembed` builds a new space beside the active one.
    A batch not written within `lease_seconds` may be claimed by another worker.
    With scan=False (the daemon woken by a change) only the queue the triggers
    fill is worked through: no orphan sweep, no scan of the face table, no count
    of what is left (`pending` is None), so the cost does not grow with the store.
    With a deadline (time.monotonic()), no new batch starts after it: the daemon
    works in bounded slices, and `more` says the slice ended with work left.
    A set `stop` is seen between chunks of a batch (about CHUNK_SECONDS of model
    work); the unwritten faces go back to the queue.
    """
    started = time.perf_counter()
    space = space or space_of(backbone)
    if target_space:
        store.spaces.record(space)
    else:
        ensure_active_space(store, space)
    device_info = getattr(backbone, "device_info", None)
    if isinstance(device_info, dict):
        store.spaces.record_device_info(space.config_hash, device_info)
    if scan:
        store.cache.sweep_orphans()
    decode = _decoder(backbone)
    chunker = _Chunker(batch_size)
    model_works = _probe(backbone, decode)
    embedded = failed = 0
    more = False
    workers = workers or min(4, os.cpu_count() or 1)
    owner = str(LeaseOwner.new())
    pool = ThreadPoolExecutor(workers, thread_name_prefix="facestore-decode")
    try:
        with _releasing(store, owner):
            batches = claimed_batches(
                store, space.config_hash, batch_size, owner, lease_seconds, verified, scan
            )
            for decoded in _decode_ahead(batches, pool, decode):
                if stop is not None and stop.is_set():
                    break
                batch_started = time.perf_counter()
                embedded_batch = _embed_batch(backbone, decoded, chunker, stop, model_works)
                if embedded_batch is None:
                    log.info("Stopping mid-batch; its %d faces go back to the queue", len(decoded))
                    break
                results, failures = embedded_batch
                outcome = store.cache.write_results(space.config_hash, results, failures, owner)
                for f in failures:
                    log.warning("Face %d failed to embed: %s", f.face_id, f.error)
                embedded += outcome.embedded
                failed += outcome.failed
                log.info(
                    "Embedded %d faces in %.0f ms (%d failed, %d changed meanwhile)",
                    outcome.embedded,
                    (time.perf_counter() - batch_started) * 1000,
                    outcome.failed,
                    outcome.changed,
                )
                if progress is not None:
                    progress(len(decoded))
                if deadline is not None and time.monotonic() >= deadline:
                    more = True
                    break
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return EmbedReport(
        embedded=embedded,
        failed=failed,
        pending=store.queue.count_pending(space.config_hash, verified) if scan else None,
        seconds=time.perf_counter() - started,
        more=more,
    )

"""The incremental pipeline: queue -> claim a batch -> decode in parallel -> embed -> write.

Decoding of the next batch runs in worker threads while the model embeds the
current one. Claims and writes are short transactions of their own; none is
held while decoding or while the model runs. Each run is one lease owner, so
several runs (processes, machines) share the queue without doing a face twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from facestore.backbones import Backbone, Space, space_of
from facestore.db import write_transaction
from facestore.errors import ImageDecodeError, SpaceMismatchError
from facestore.images import decode_crop
from facestore.store import Crop, FailureResult, Store, VectorResult, crop_sha256

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]

DEFAULT_LEASE_SECONDS = 120.0


def worker_host() -> str:
    """Which machine this worker is, for leases: FACESTORE_WORKER_HOST, else hostname/pid-ns.

    The pid namespace tells apart containers that share a hostname, whose pids
    mean nothing to each other.
    """
    configured = os.environ.get("FACESTORE_WORKER_HOST")
    if configured:
        return configured.replace(":", "_")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}/{namespace}"


def lease_owner() -> str:
    """host:pid:random, unique per run, readable in `embedding_job.lease_owner`."""
    return f"{worker_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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
    released = store.release_dead(worker_host(), process_alive)
    if released:
        log.info("Freed %d faces leased by workers on this host that are gone", released)
    if scan:
        store.enqueue_pending(space_hash, verified)
    while True:
        batch = store.claim(space_hash, batch_size, owner, lease_seconds, verified)
        if batch:
            yield batch
        elif not scan or store.enqueue_pending(space_hash, verified) == 0:
            return


@dataclass(frozen=True)
class EmbedReport:
    embedded: int
    failed: int
    pending: int | None  # None: not counted (a queue-only pass)
    seconds: float

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
            released = store.release(owner)
        except sa.exc.SQLAlchemyError as exc:  # they expire anyway
            log.warning("Could not release leases (they will expire): %s", exc)
        else:
            if released:
                log.info("Released %d leased faces for other workers", released)


def ensure_active_space(store: Store, space: Space) -> None:
    """Record the space on first use; refuse to mix it with a different active space."""
    active = store.active_space()
    if active is None:
        with write_transaction(store.engine) as conn:
            store.activate_space(space, conn)
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
        try:
            image = decode_crop(crop.blob)
            return _Decoded(crop.face_id, sha, prepare(image) if prepare else image, None)
        except ImageDecodeError as exc:
            return _Decoded(crop.face_id, sha, None, str(exc))

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
) -> EmbedReport:
    """Embed every pending verified face of the backbone's space. Resumable at any point.

    With verified=False, embed the unverified faces instead (for suggestions).
    With target_space=True the space is only recorded, not required to be the
    active one: `facestore reembed` builds a new space beside the active one.
    A batch not written within `lease_seconds` may be claimed by another worker.
    With scan=False (the daemon woken by a change) only the queue the triggers
    fill is worked through: no orphan sweep, no scan of the face table, no count
    of what is left (`pending` is None), so the cost does not grow with the store.
    """
    started = time.perf_counter()
    space = space or space_of(backbone)
    if target_space:
        with write_transaction(store.engine) as conn:
            store.record_space(space, conn)
    else:
        ensure_active_space(store, space)
    device_info = getattr(backbone, "device_info", None)
    if isinstance(device_info, dict):
        store.record_device_info(space.config_hash, device_info)
    if scan:
        store.sweep_orphans()
    decode = _decoder(backbone)
    embedded = failed = 0
    workers = workers or min(4, os.cpu_count() or 1)
    owner = lease_owner()
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="facestore-decode") as pool,
        _releasing(store, owner),
    ):
        batches = claimed_batches(
            store, space.config_hash, batch_size, owner, lease_seconds, verified, scan
        )
        for decoded in _decode_ahead(batches, pool, decode):
            if stop is not None and stop.is_set():
                break
            batch_started = time.perf_counter()
            ok = [d for d in decoded if d.error is None]
            vectors = _embed(backbone, ok) if ok else np.zeros((0, backbone.dim), np.float32)
            results = [
                VectorResult(d.face_id, d.crop_sha256, v) for d, v in zip(ok, vectors, strict=True)
            ]
            failures = [
                FailureResult(d.face_id, d.crop_sha256, d.error)
                for d in decoded
                if d.error is not None
            ]
            outcome = store.write_results(space.config_hash, results, failures, owner)
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
    return EmbedReport(
        embedded=embedded,
        failed=failed,
        pending=store.count_pending(space.config_hash, verified) if scan else None,
        seconds=time.perf_counter() - started,
    )

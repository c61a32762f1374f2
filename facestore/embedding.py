"""The incremental pipeline: queue -> claim a batch -> decode -> embed -> write.

One `Embedder` per process holds the backbone, its decode pool (worker processes,
threads, or the GPU route: facestore.decoding) and the model runner; `embed`,
`reembed` and the daemon call its `run_pass()`. Claiming, decoding, the model and
writing overlap (facestore.pipeline). Claims and writes are short transactions of
their own; none is held while decoding or while the model runs. Each pass is one
lease owner, so several workers (processes, machines) share the queue without
doing a face twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import sqlalchemy as sa

from facestore.backbones import Backbone, PreparedBackbone, Space, batch_size_of, space_of
from facestore.decode_pools import make_decode_pool
from facestore.decoding import DecodePool, decoder
from facestore.embed_batch import Chunker, embed_batch, probe
from facestore.errors import SpaceMismatchError
from facestore.pipeline import BatchObserver, run_stages
from facestore.settings import DEFAULT_LEASE_SECONDS
from facestore.store import Crop, IdRanges, LeaseOwner, Store, worker_host

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int], None]


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
    scan_ids: IdRanges | None = None,
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
        store.queue.enqueue_pending(space_hash, verified, scan_ids)
    while True:
        batch = store.queue.claim(space_hash, batch_size, owner, lease_seconds, verified)
        if batch:
            yield batch
        elif not scan or store.queue.enqueue_pending(space_hash, verified, scan_ids) == 0:
            return


@dataclass(frozen=True)
class EmbedReport:
    embedded: int
    failed: int
    pending: int | None  # None: not counted (a queue-only pass)
    seconds: float
    more: bool = False  # stopped at the deadline with work left
    written: tuple[int, ...] = ()  # the faces whose vectors this pass stored

    def as_json(self) -> dict[str, Any]:
        return {
            "embedded": self.embedded,
            "failed": self.failed,
            "pending": self.pending,
            "seconds": round(self.seconds, 3),
        }


@contextlib.contextmanager
def _releasing(store: Store, owner: str, unreleased: set[str]) -> Iterator[None]:
    """On the way out (stop, error), free the leases of batches claimed but not written.
    If the database is unreachable then, the owner joins `unreleased`: the next pass
    frees them (a worker that outlives an outage gets its faces back without waiting
    for the leases to expire)."""
    try:
        yield
    finally:
        unreleased.add(owner)
        release_leases(store, unreleased)


def release_leases(store: Store, owners: set[str]) -> None:
    """Free every lease of these owners; those that fail stay in the set."""
    for owner in sorted(owners):
        try:
            released = store.queue.release(owner)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("Could not release leases (retried next pass): %s", exc)
            return
        owners.discard(owner)
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


@dataclass(frozen=True)
class PassKind:
    """What an embedding pass does besides embedding the queue."""

    name: str
    scan: bool  # look through the face table for faces nothing queued, and count what is left
    sweep: bool  # delete cache rows of deleted faces first, and prune the change log
    beside_active: bool = False  # the space may be other than the active one (reembed)


# `facestore embed`: everything pending, orphans swept, what is left counted
EMBED = PassKind("embed", scan=True, sweep=True)
# `facestore reembed`: the same, into a space built beside the active one
BUILD = PassKind("build", scan=True, sweep=True, beside_active=True)
# the daemon woken by a change: the queue the triggers fill, a cost that follows the change
QUEUE = PassKind("queue", scan=False, sweep=False)
# the daemon's timer: scan (a rolling slice); the daemon sweeps that slice itself
CHECK = PassKind("check", scan=True, sweep=False)


class Embedder:
    """One per process: the backbone, its decode pool, the model runner, a stop flag.

    A set `stop` is seen between chunks of a batch (about inference.CHUNK_SECONDS of
    model work); the unwritten faces go back to the queue. A batch not written
    within `lease_seconds` may be claimed by another worker. `decode` picks the CPU
    route's pool ("auto": processes where the backbone allows, see
    facestore.decoding); a backbone with a `decode_device` also takes the GPU route.
    """

    def __init__(
        self,
        store: Store,
        backbone: Backbone,
        *,
        batch_size: int | None = None,
        workers: int | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        stop: threading.Event | None = None,
        decode: str = "auto",
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.store = store
        self.backbone = backbone
        self.on_batch = on_batch  # (embedded, failed, seconds) after each batch is written
        self.batch_size = batch_size or batch_size_of(backbone)
        self.lease_seconds = lease_seconds
        self.stop = stop or threading.Event()
        self._chunker = Chunker(self.batch_size)
        self._model_works = probe(backbone, decoder(backbone))
        self._noted: set[str] = set()  # spaces whose device info this process recorded
        self._unreleased: set[str] = set()  # lease owners a failed pass could not free
        self.pool: DecodePool = make_decode_pool(
            backbone,
            self.batch_size,
            mode=decode,
            workers=workers,
            device_decode=backbone.decode_device
            if isinstance(backbone, PreparedBackbone)
            else None,
        )
        log.debug("Decoding with %d %s", self.pool.workers, self.pool.kind)

    def __enter__(self) -> Embedder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.pool.close()

    def run_pass(
        self,
        space: Space | None = None,
        kind: PassKind = EMBED,
        *,
        verified: bool = True,
        deadline: float | None = None,
        scan_ids: IdRanges | None = None,
        progress: ProgressCallback | None = None,
    ) -> EmbedReport:
        """Embed the pending faces of the space (default: the backbone's), the verified
        ones or (verified=False, for suggestions) the unverified ones; `kind` says what
        else the pass does (EMBED, BUILD, QUEUE, CHECK).

        With a deadline (time.monotonic()) no new batch starts after it, and `more` says
        work is left. scan_ids limits the scan to those faces (the daemon's rolling
        check); what is left is not counted then.
        """
        started = time.perf_counter()
        space = space or space_of(self.backbone)
        store = self.store
        if kind.beside_active:
            store.spaces.record(space)
        else:
            ensure_active_space(store, space)
        if isinstance(self.backbone, PreparedBackbone) and space.config_hash not in self._noted:
            store.spaces.record_device_info(space.config_hash, self.backbone.device_info)
            self._noted.add(space.config_hash)  # a process's device does not change
        if kind.sweep:
            store.cache.sweep_orphans(scan_ids)
            store.changes.prune()  # where no daemon runs, `embed` keeps the log bounded
        if self._unreleased:
            release_leases(store, self._unreleased)
        owner = str(LeaseOwner.new())
        with _releasing(store, owner, self._unreleased):
            batches = claimed_batches(
                store,
                space.config_hash,
                self.batch_size,
                owner,
                self.lease_seconds,
                verified,
                kind.scan,
                scan_ids,
            )
            totals = run_stages(
                batches,
                self.pool,
                lambda decoded: embed_batch(
                    self.backbone, decoded, self._chunker, self.stop, self._model_works
                ),
                lambda results, failures: store.cache.write_results(
                    space.config_hash, results, failures, owner
                ),
                stop=self.stop,
                deadline=deadline,
                progress=progress,
                on_batch=self.on_batch,
            )
        return EmbedReport(
            embedded=totals.embedded,
            failed=totals.failed,
            pending=(
                store.queue.count_pending(space.config_hash, verified)
                if kind.scan and scan_ids is None
                else None
            ),
            seconds=time.perf_counter() - started,
            more=totals.more,
            written=tuple(totals.written),
        )


def embed_pending(
    store: Store,
    backbone: Backbone,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    space: Space | None = None,
    kind: PassKind = EMBED,
    verified: bool = True,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    deadline: float | None = None,
) -> EmbedReport:
    """One pass of a one-off Embedder (see Embedder.run_pass). Resumable at any point."""
    with Embedder(
        store,
        backbone,
        batch_size=batch_size,
        workers=workers,
        lease_seconds=lease_seconds,
        stop=stop,
    ) as embedder:
        return embedder.run_pass(
            space, kind, verified=verified, deadline=deadline, progress=progress
        )

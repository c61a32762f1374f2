"""One embedding pass as overlapping stages:

    claim (database) -> decode (pool) -> model (the calling thread) -> write (database)

The claimer and the writer are threads of their own, and decoding runs in the pool,
so the model never waits on the database: while it embeds batch k, batch k+1 is
decoding and batch k+2 being claimed, and batch k-1 is being written. The depth is
bounded (one batch waits for the model, one for the writer), which is what the
decode pool's SLOTS are sized for. No new batch starts in the model after the
deadline or a stop; batches claimed ahead go back to the queue with the pass's leases.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from facestore.decoding import Decoded, DecodePool, DecodingBatch
from facestore.store import Crop, FailureResult, VectorResult, WriteOutcome

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1  # how often a blocked stage looks whether the pass was abandoned
T = TypeVar("T")

EmbedStep = Callable[[list[Decoded]], tuple[list[VectorResult], list[FailureResult]] | None]
WriteStep = Callable[[list[VectorResult], list[FailureResult]], WriteOutcome]
BatchObserver = Callable[[int, int, float], None]  # embedded, failed, seconds


@dataclass
class StageTotals:
    embedded: int = 0
    failed: int = 0
    more: bool = False  # the deadline ended the pass with claimed work possibly left
    written: list[int] = field(default_factory=list)  # faces whose vectors were stored


class _End:
    """The end of a stage's stream, carrying the stage's error if it failed."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def run_stages(
    batches: Iterator[list[Crop]],
    pool: DecodePool,
    embed: EmbedStep,
    write: WriteStep,
    *,
    stop: threading.Event,
    deadline: float | None = None,
    progress: Callable[[int], None] | None = None,
    on_batch: BatchObserver | None = None,
) -> StageTotals:
    """Run the pass; errors of any stage are raised here once the others have stopped."""
    abandon = threading.Event()
    to_model: queue.Queue[tuple[list[Crop], DecodingBatch] | _End] = queue.Queue(maxsize=1)
    to_writer: queue.Queue[tuple[Any, ...] | _End] = queue.Queue(maxsize=1)
    totals = StageTotals()
    writer_error: list[BaseException] = []

    def claimer() -> None:
        try:
            for number, batch in enumerate(batches):
                if abandon.is_set() or stop.is_set():
                    break
                if number > 0 and _past(deadline):  # one batch at least, as the model does
                    totals.more = True
                    break
                handle = pool.submit(batch)
                if not _put(to_model, (batch, handle), abandon):
                    handle.release()
                    break
        except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
            _put(to_model, _End(exc), abandon)
            return
        _put(to_model, _End(), abandon)

    def writer() -> None:
        while True:
            item = to_writer.get()
            if isinstance(item, _End):
                return
            if writer_error:
                continue  # the pass is failing: leave the rest to the queue
            results, failures, size, started = item
            try:
                outcome = write(results, failures)
            except BaseException as exc:  # noqa: BLE001 - raised in the calling thread
                writer_error.append(exc)
                abandon.set()
                continue
            for f in failures:
                log.warning("Face %d failed to embed: %s", f.face_id, f.error)
            totals.embedded += outcome.embedded
            totals.failed += outcome.failed
            totals.written.extend(outcome.written)
            log.info(
                "Embedded %d faces in %.0f ms (%d failed, %d changed meanwhile)",
                outcome.embedded,
                (time.perf_counter() - started) * 1000,
                outcome.failed,
                outcome.changed,
            )
            if progress is not None:
                progress(size)
            if on_batch is not None:
                on_batch(outcome.embedded, outcome.failed, time.perf_counter() - started)

    threads = [
        threading.Thread(target=claimer, name="facestore-claim", daemon=True),
        threading.Thread(target=writer, name="facestore-write", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        while True:
            item = _get(to_model, abandon)
            if item is None:  # the writer failed
                break
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                break
            batch, handle = item
            if stop.is_set() or abandon.is_set():
                handle.release()
                break
            started = time.perf_counter()
            try:
                done = embed(handle.result())
            finally:
                handle.release()
            if done is None:
                log.info("Stopping mid-batch; its %d faces go back to the queue", len(batch))
                break
            _put(to_writer, (*done, len(batch), started), abandon)
            if _past(deadline):
                totals.more = True
                break
    finally:
        abandon.set()
        _drain(to_model)
        threads[0].join()
        _drain(to_model)
        to_writer.put(_End())
        threads[1].join()
    if writer_error:
        raise writer_error[0]
    return totals


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _put(q: queue.Queue[T], item: T, abandon: threading.Event) -> bool:
    """Put, unless the pass is abandoned while waiting for room."""
    while True:
        try:
            q.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            if abandon.is_set():
                return False


def _get(q: queue.Queue[T], abandon: threading.Event) -> T | None:
    """Get, unless the pass is abandoned (by a failing writer) while waiting."""
    while True:
        try:
            return q.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if abandon.is_set():
                return None


def _drain(q: queue.Queue[Any]) -> None:
    """Free what an abandoned pass left queued (decoded batches hold pool slots)."""
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, tuple) and len(item) == 2:
            item[1].release()

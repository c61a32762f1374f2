"""The CPU route in worker processes: crops decoded and prepared straight into
shared-memory slots (facestore.decode_worker runs in the workers), so that no pixel
array is pickled. A worker that dies is replaced; a crop that kills a fresh worker
twice fails alone."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import secrets
import shutil
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context, shared_memory
from typing import Any

import numpy as np

from facestore import decode_worker
from facestore.decode_worker import DecodedRow
from facestore.decoding import (
    Decoded,
    DecodingBatch,
    ProcessPreparable,
    default_workers,
)
from facestore.logs import LogSetup
from facestore.store import Crop, crop_sha256

log = logging.getLogger(__name__)

SLOTS = 3  # the batch the model holds, the one queued for it, the one decoding
WORKER_DIED = "the decode worker process died on this crop twice (a crash in the image decoder)"


@contextlib.contextmanager
def _workers_skip_main() -> Iterator[None]:
    """While decode workers start, hide the main module from multiprocessing's spawn,
    which would otherwise import it again in each worker: a script without an
    `if __name__ == "__main__":` guard would run again there, and the command line's
    imports (torch, scikit-learn) would cost every worker time and memory. The
    workers need only facestore.decode_worker."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def shared_memory_free() -> int | None:
    """Free bytes for shared memory (/dev/shm), or None where that cannot be told."""
    try:
        return shutil.disk_usage("/dev/shm").free
    except OSError:
        return None


class _ProcessBatch:
    def __init__(
        self,
        pool: ProcessDecoding,
        slot: int,
        crops: Sequence[Crop],
        parts: list[tuple[int, Future[list[DecodedRow]], ProcessPoolExecutor]],
    ) -> None:
        self._pool, self._slot, self._crops, self._parts = pool, slot, crops, parts
        self._released = False

    def result(self) -> list[Decoded]:
        rows: list[DecodedRow] = []
        bounds = [start for start, _, _ in self._parts] + [len(self._crops)]
        for (start, future, executor), end in zip(self._parts, bounds[1:], strict=True):
            try:
                rows += future.result()
            except BrokenProcessPool:
                rows += self._pool.redo(self._slot, start, self._crops[start:end], executor)
        view = self._pool.slot_view(self._slot)
        return [
            Decoded(crop.face_id, sha, view[row] if error is None else None, error, signals)
            for row, (crop, (sha, error, signals)) in enumerate(zip(self._crops, rows, strict=True))
        ]

    def release(self) -> None:
        if not self._released:
            self._released = True
            for _, future, _ in self._parts:
                future.cancel()
            self._pool.free_slot(self._slot, [f for _, f, _ in self._parts])


class ProcessDecoding:
    """Decode and prepare in worker processes, into SLOTS shared-memory batches."""

    kind = "processes"

    def __init__(
        self, backbone: ProcessPreparable, batch_size: int, workers: int | None = None
    ) -> None:
        self.workers = workers or default_workers(self.kind)
        self.batch_size = batch_size
        self._prepare = backbone.prepare_function
        shape = (SLOTS, batch_size, *backbone.prepared_shape)
        self._memory = shared_memory.SharedMemory(
            name=f"facestore-{os.getpid()}-{secrets.token_hex(4)}",
            create=True,
            size=self.bytes_needed(backbone, batch_size),
        )
        self._shape = shape
        self._slots: np.ndarray | None = decode_worker.slot_array(self._memory.buf, shape)
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(SLOTS):
            self._free.put(slot)
        self._lock = threading.Lock()
        self._executor = self._start()

    @staticmethod
    def bytes_needed(backbone: ProcessPreparable, batch_size: int) -> int:
        """The shared memory of the slots: SLOTS batches of float32 inputs."""
        return SLOTS * batch_size * math.prod(backbone.prepared_shape) * 4

    @property
    def memory_name(self) -> str:
        return self._memory.name

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            self.workers,
            mp_context=get_context("spawn"),  # no fork of a process that holds torch threads
            initializer=decode_worker.attach,
            initargs=(
                self._memory.name,
                self._shape,
                self._prepare,
                os.getpid(),
                LogSetup.current(),
            ),
        )
        with _workers_skip_main():
            for _ in range(self.workers):  # start them now, while the pass sets up
                executor.submit(decode_worker.ready)
        return executor

    def worker_pids(self) -> list[int]:
        with self._lock:
            return [p.pid for p in (self._executor._processes or {}).values() if p.pid]

    def slot_view(self, slot: int) -> np.ndarray:
        assert self._slots is not None, "the pool is closed"
        return self._slots[slot]

    def submit(self, crops: Sequence[Crop]) -> DecodingBatch:
        if len(crops) > self.batch_size:
            raise ValueError(f"{len(crops)} crops do not fit a slot of {self.batch_size}")
        slot = self._free.get()
        size = math.ceil(len(crops) / min(self.workers, max(1, len(crops))))
        parts = []
        for start in range(0, len(crops), size):
            work = [(c.blob, c.error) for c in crops[start : start + size]]
            parts.append((start, *self._submit(slot, start, work)))
        return _ProcessBatch(self, slot, crops, parts)

    def _submit(
        self, slot: int, start: int, work: list[tuple[bytes, str | None]]
    ) -> tuple[Future[list[DecodedRow]], ProcessPoolExecutor]:
        with self._lock:
            executor = self._executor
            try:
                with _workers_skip_main():  # a submit may start a worker
                    task = executor.submit(decode_worker.decode_rows, slot, start, work)
                return task, executor
            except BrokenProcessPool:
                future: Future[list[DecodedRow]] = Future()
                future.set_exception(BrokenProcessPool("the pool broke before this batch"))
                return future, executor

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executor is broken:
                log.warning("A decode worker process died; starting new workers")
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._start()

    def redo(
        self, slot: int, start: int, crops: Sequence[Crop], broken: ProcessPoolExecutor
    ) -> list[DecodedRow]:
        """Decode crops again, one task each, after their worker died: a crop that takes
        down a fresh worker twice fails alone."""
        self._replace(broken)
        rows: list[DecodedRow] = []
        for row, crop in enumerate(crops, start=start):
            for attempt in (1, 2):
                future, executor = self._submit(slot, row, [(crop.blob, crop.error)])
                try:
                    rows += future.result()
                    break
                except BrokenProcessPool:
                    self._replace(executor)
                    if attempt == 2:
                        rows.append((crop_sha256(crop.blob), WORKER_DIED, None))
        return rows

    def free_slot(self, slot: int, futures: list[Future[Any]]) -> None:
        """Give the slot back once no worker can still write into it."""
        for future in futures:
            if not future.cancelled():
                with contextlib.suppress(CancelledError):  # cancelled meanwhile: never ran
                    future.exception()  # waits until the worker stopped writing
        self._free.put(slot)

    def close(self) -> None:
        with self._lock:
            self._executor.shutdown(wait=True, cancel_futures=True)
        self._slots = None
        with contextlib.suppress(BufferError):  # a row view is still referenced somewhere
            self._memory.close()
        self._memory.unlink()

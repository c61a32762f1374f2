"""Decoding beside the model: pools that turn a claimed batch of crops into the
model's input while the model embeds the previous batch. No database here.

- `ProcessDecoding`, the CPU route for backbones whose preprocessing runs in another
  process (`ProcessPreparable`: facenet): worker processes sized to the cores decode
  and prepare straight into shared-memory slots, so no pixel array is pickled. A
  worker that dies is replaced; a crop that kills a fresh worker twice fails alone.
- `ThreadDecoding`: threads, for backbones whose preparation needs this process's
  state (dlib's landmark model), or where shared memory is short.
- `DeviceDecoding`, the GPU route: JPEGs the batched device decoder takes
  (`tensor_preprocess.gpu_route`) are decoded, letterboxed and normalised on the
  model's device; the rest of the same batch goes to the CPU route, as do crops the
  device decoder refuses.
"""

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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context, shared_memory
from typing import Any, Protocol, runtime_checkable

import numpy as np

from facestore import decode_worker
from facestore.backbones import Backbone, PreparedBackbone
from facestore.decode_worker import DecodedRow
from facestore.quality import ImageSignals, image_signals
from facestore.store import Crop, crop_sha256

log = logging.getLogger(__name__)

DECODE_MODES = ("auto", "processes", "threads")
SLOTS = 3  # the batch the model holds, the one queued for it, the one decoding
WORKER_DIED = "the decode worker process died on this crop twice (a crash in the image decoder)"


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
            return Decoded(crop.face_id, sha, pixels, None, image_signals(image))
        except Exception as exc:  # noqa: BLE001 - one odd image must not stop the batch
            return Decoded(crop.face_id, sha, None, f"the backbone cannot prepare it: {exc}")

    return decode


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
            initargs=(self._memory.name, self._shape, self._prepare, os.getpid()),
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


class _DeviceBatch:
    def __init__(
        self,
        size: int,
        on_device: Future[list[tuple[int, Decoded]]],
        on_cpu: DecodingBatch,
        cpu_rows: list[int],
    ) -> None:
        self._size, self._on_device = size, on_device
        self._on_cpu, self._cpu_rows = on_cpu, cpu_rows

    def result(self) -> list[Decoded]:
        decoded: list[Decoded | None] = [None] * self._size
        for row, item in zip(self._cpu_rows, self._on_cpu.result(), strict=True):
            decoded[row] = item
        for row, item in self._on_device.result():
            decoded[row] = item
        assert all(d is not None for d in decoded), "every crop is decoded by one route"
        return decoded  # type: ignore[return-value]

    def release(self) -> None:
        self._on_device.cancel()
        self._on_cpu.release()


class DeviceDecoding:
    """The GPU route: crops `gpu_route` accepts are decoded on `device` (nvjpeg on CUDA;
    torchvision's CPU decoder on a CPU device, which is how the tests run it); the rest
    go to `cpu`, and so do crops the device decoder refuses."""

    kind = "device"

    def __init__(self, device: Any, cpu: DecodePool, decode: Callable[[Crop], Decoded]) -> None:
        self.device = device
        self.cpu = cpu
        self.workers = cpu.workers
        self._decode = decode
        # one thread: device work is queued in order on the device's default stream
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="facestore-device-decode")

    def submit(self, crops: Sequence[Crop]) -> DecodingBatch:
        from facestore.backbones.tensor_preprocess import gpu_route

        routed = [i for i, c in enumerate(crops) if c.error is None and gpu_route(c.blob)]
        taken = set(routed)
        cpu_rows = [i for i in range(len(crops)) if i not in taken]
        on_cpu = self.cpu.submit([crops[i] for i in cpu_rows])
        on_device = self._thread.submit(self._decode_on_device, [(i, crops[i]) for i in routed])
        return _DeviceBatch(len(crops), on_device, on_cpu, cpu_rows)

    def _decode_on_device(self, rows: list[tuple[int, Crop]]) -> list[tuple[int, Decoded]]:
        from facestore.backbones.tensor_preprocess import decode_batch

        if not rows:
            return []
        batch, taken, refused, signals = decode_batch([c.blob for _, c in rows], self.device)
        out = [
            (
                rows[i][0],
                Decoded(rows[i][1].face_id, crop_sha256(rows[i][1].blob), pixels, None, measured),
            )
            for i, pixels, measured in zip(taken, batch, signals, strict=True)
        ]
        # refused by the device decoder: the CPU route decides (it may decode it, or say why not)
        out += [(rows[i][0], self._decode(rows[i][1])) for i in refused]
        return out

    def close(self) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)
        self.cpu.close()


def make_decode_pool(
    backbone: Backbone,
    batch_size: int,
    *,
    mode: str = "auto",
    workers: int | None = None,
    device_decode: Any = None,
) -> DecodePool:
    """The pool for a backbone: processes where it can (and shared memory suffices),
    else threads; wrapped in the GPU route when `device_decode` names a device."""
    decode = decoder(backbone)
    cpu: DecodePool
    if mode not in DECODE_MODES:
        raise ValueError(f"Unknown decode mode {mode!r}; use one of {', '.join(DECODE_MODES)}")
    if mode == "threads" or not isinstance(backbone, ProcessPreparable):
        cpu = ThreadDecoding(decode, workers)
    else:
        need = ProcessDecoding.bytes_needed(backbone, batch_size)
        free = shared_memory_free()
        if free is not None and need > free // 2:
            log.warning(
                "Decoding in threads: %d MiB of shared memory (/dev/shm) would be needed for "
                "batches of %d, and %d MiB is free. Enlarge /dev/shm (docker: --shm-size) or "
                "lower --batch-size to decode in processes.",
                need >> 20,
                batch_size,
                free >> 20,
            )
            cpu = ThreadDecoding(decode, workers)
        else:
            cpu = ProcessDecoding(backbone, batch_size, workers)
    if device_decode is not None:
        return DeviceDecoding(device_decode, cpu, decode)
    return cpu

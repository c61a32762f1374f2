"""The GPU route: JPEGs the batched device decoder takes (tensor_preprocess.gpu_route)
are decoded, letterboxed and normalised on the model's device; the rest of the same
batch goes to the CPU route, as do crops the device decoder refuses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from facestore.decoding import Decoded, DecodePool, DecodingBatch
from facestore.store import Crop, crop_sha256

log = logging.getLogger(__name__)


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

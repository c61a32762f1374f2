"""The decode route for a backbone (facestore.decoding describes them): worker
processes where its preparation can run there and shared memory suffices, else
threads; wrapped in the GPU route when a device decodes."""

from __future__ import annotations

import logging
from typing import Any

from facestore.backbones import Backbone
from facestore.decoding import (
    DECODE_MODES,
    DecodePool,
    ProcessPreparable,
    ThreadDecoding,
    decoder,
)
from facestore.device_decoding import DeviceDecoding
from facestore.process_decoding import ProcessDecoding, shared_memory_free

log = logging.getLogger(__name__)


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

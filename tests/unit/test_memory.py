"""The daemon gives freed memory back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import platform

import numpy as np
import pytest

from facestore.memory import give_back_memory


def rss_mib() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) // 1024


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_memory_freed_in_small_blocks_goes_back_to_the_system() -> None:
    blocks = [np.ones(1000) for _ in range(100_000)]  # 800 MB in 8 kB blocks: the heap
    held = rss_mib()
    del blocks
    assert give_back_memory() is True
    assert rss_mib() < held - 500

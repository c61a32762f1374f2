"""Giving freed memory back to the system.

glibc's allocator keeps the memory a large pass freed (a suggestion pass over 100k
faces, a model load) for later use, so a long-running daemon's RSS stays at its
highest. `malloc_trim(0)` returns the free pages at the top of the heap and in each
arena. Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    return trim


def give_back_memory() -> bool:
    """Return the allocator's free memory to the system; False where it cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

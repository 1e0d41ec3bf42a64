"""Keep freed tensor memory in the process instead of handing it back to the kernel at every layer (glibc).

glibc serves a request above its mmap threshold (dynamic, at most 32 MiB) with a fresh mmap and unmaps it on
free, so every large activation is mapped, zero-filled page by page by the kernel, and unmapped again. With
evaluation batches of 256-1,024 CIFAR images that is 60-600 minor page faults per image and 10-28 % of the
time in the kernel (measured: benchmarks/speed.py --cell). Raising the mmap and trim thresholds makes freed
buffers come back from the heap, as jemalloc or tcmalloc would, at the cost of keeping the peak resident.
It changes where buffers live, never what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
THRESHOLD = 1 << 30  # requests up to 1 GiB come from the heap; freed memory above it is kept, not trimmed


@functools.cache
def reuse_freed_memory() -> bool:
    """Tune glibc's malloc in this process (once); False where the C library is not glibc or refuses."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only: musl and macOS have no mallopt with these meanings
    except (OSError, AttributeError):
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD, THRESHOLD))

"""Allocator settings that keep a long scan's resident memory near what it actually holds.

Why: Beam's local runners allocate and free large buffers stage after stage (a grouped shuffle is one
multi-megabyte bytes block). glibc raises its mmap threshold after each large free, so later large blocks
come from the heap, which fragments and is rarely given back: on 80,000 T0 records this alone kept
~270 MB resident (1.12 GB -> 0.85 GB peak RSS with a fixed threshold, bench/soak_bench.py). Fixing the
mmap and trim thresholds returns large blocks to the system when they are freed. Child processes
(``multi_processing`` and portable workers) get the same settings through the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_THRESHOLD = 128 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def tune_allocator() -> bool:
    """Apply the settings to this process (glibc only; a no-op elsewhere) and export them to children.
    An explicit ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` from the user wins."""
    user_set = "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(_THRESHOLD))
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", str(_THRESHOLD))
    if user_set:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))

"""Allocator settings that keep a long scan's resident memory near what it actually holds.

Why: Beam's local runners allocate and free large buffers stage after stage (a grouped shuffle is one
multi-megabyte bytes block). glibc raises its mmap threshold after each large free, so later large blocks
come from the heap, which fragments and is rarely given back: on 80,000 T0 records this alone kept
~270 MB resident (1.12 GB -> 0.85 GB peak RSS with a fixed threshold, bench/soak_bench.py). Fixing the
mmap and trim thresholds returns large blocks to the system when they are freed. That has a CPU price, as
every block above 128 KB is a fresh mapping whose pages fault in: T0 dedup on 2 workers took 38 / 122 CPU-s
(1x / 4x) with the thresholds and 27 / 89 without, for 25-60 MB less per process (bench/dedup_speed.py
--modes beam-mp), and the 1x soak 202 s against 188 s. Memory is what the local runs ran out of, so they
stay.

glibc also gives each thread that allocates its own arena (up to 8 per core), and memory freed in one arena
is reused only by allocations made there. Beam's runner and SDK workers run bundles, gRPC readers and
senders on short-lived pool threads, so each stage's buffers landed in whichever arena its thread had and
every arena kept its own high-water mark. Two arenas: T0 dedup on 2 workers (bench/dedup_speed.py --modes
beam-mp, 1x) went from runner 650 / largest worker 543 MB to 389 / 457 MB, with no CPU cost measured (the
GIL serialises most allocation anyway). Child processes (``multi_processing`` workers) get the same
settings through the environment. ``lazaret scan`` applies them for the in-process runners only
(``lazaret.runners.spill.runs_in_process``): a Flink, Spark or portable run, whose job server JVM and LOOPBACK
workers are children or threads of the scan process, keeps glibc's defaults.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import time

_THRESHOLD = 128 * 1024
ARENAS = 2
# (environment variable glibc reads at process start, the same parameter for mallopt from <malloc.h>, value)
_SETTINGS = (("MALLOC_MMAP_THRESHOLD_", -3, _THRESHOLD), ("MALLOC_TRIM_THRESHOLD_", -1, _THRESHOLD),
             ("MALLOC_ARENA_MAX", -8, ARENAS))


def _libc():
    """The C library, or None where it cannot be loaded."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune_allocator() -> bool:
    """Apply the settings to this process (glibc only; a no-op elsewhere) and export them to children.
    An explicit ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_ARENA_MAX`` from the user
    wins: then this process is left as it is, and children get the user's values (and these defaults for the
    ones the user did not set)."""
    user_set = any(name in os.environ for name, _param, _value in _SETTINGS)
    for name, _param, value in _SETTINGS:
        os.environ.setdefault(name, str(value))
    mallopt = getattr(_libc(), "mallopt", None)
    if user_set or mallopt is None:
        return False
    return all([bool(mallopt(param, value)) for _name, param, value in _SETTINGS])


# A tidy runs when its own CPU so far is at most TIDY_CPU_SHARE of the process's CPU, and at most every
# TIDY_EVERY_S seconds. Why a share of CPU and not wall time alone: a full collection costs ~0.1-0.2 s on a
# large heap, so on a loaded or single core a wall-time limit let it take a larger share of the CPU (6.7% of
# the samples of a one-core T0 dedup scan under load, docs/shuffles.md); trimming after every bundle cost +35%
# CPU on 4x T0 dedup (freed pages are faulted back in by the next bundle).
TIDY_EVERY_S = 5.0
TIDY_CPU_SHARE = 0.02


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is no glibc (macOS, musl)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim.argtypes = [ctypes.c_size_t]
        trim.restype = ctypes.c_int
    return trim


class Tidy:
    """Called after a unit of work (a bundle, a round of bundles): a full garbage collection, then
    ``malloc_trim(0)``, when the tidies so far cost at most ``TIDY_CPU_SHARE`` of the process's CPU time and
    the last one is at least ``TIDY_EVERY_S`` seconds old.

    Why: a bundle leaves reference cycles (Beam's per-bundle operation objects, generator frames) that hold
    its data; with a large long-lived heap Python's oldest generation is collected rarely, so bundles'
    leftovers added to the process's baseline, and glibc then kept the freed pages. Measured on 4x T0 dedup
    with 2 workers (bench/dedup_speed.py --modes beam-mp, one run each, shared machine): largest worker
    706 MB without, 664 MB with this, 601-610 MB when it ran after *every* bundle (which cost +35% CPU).
    ``LAZARET_NO_TIDY=1`` switches it off (for comparisons).
    """

    def __init__(self) -> None:
        self._clock = time.monotonic
        self._cpu = time.process_time
        self._last = self._clock()
        self._spent = 0.0  # CPU seconds of this process spent in tidies so far
        self._trim = _malloc_trim()

    def __call__(self) -> None:
        if self._clock() - self._last < TIDY_EVERY_S or self._spent > TIDY_CPU_SHARE * self._cpu():
            return
        start = self._cpu()
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self._spent += self._cpu() - start
        self._last = self._clock()


def tidy_enabled() -> bool:
    return not os.environ.get("LAZARET_NO_TIDY")


@contextlib.contextmanager
def frozen_start_up():
    """For the ``with`` block (a local run): what the process holds when it starts (modules, the pipeline,
    Beam's runner) moves out of the collector's generations (``gc.freeze``), after one full collection so
    that no garbage is frozen with it; the block's end puts it back (``gc.unfreeze``).

    Why: every full collection (Python's own, and ``Tidy``'s) traverses every tracked object, and most of
    them are the start-up's, which live for the whole run. On a one-core T0 dedup scan the full collections
    cost 1.85 CPU-s in 16 of them, 0.98 CPU-s in 29 with the start-up frozen (docs/shuffles.md, "The
    in-process data channel, page faults, start-up"). Unfrozen after, so a process that runs several scans
    (the tests) leaks nothing."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()

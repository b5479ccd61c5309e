"""Keep freed memory in the process, so that XLA's per-step buffers are not page-faulted in again.

XLA's CPU runtime allocates the buffers of one execution of the train step (activations kept for the
backward pass, gradients, attention scores) with ``malloc`` and frees them when the step ends. glibc
serves an allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and returns it to
the kernel on ``free``, and it trims the top of its heaps back to the kernel too; either way the next
step writes to pages the kernel has to fault in and zero again. At the s06 demo scale (batch 32 x 64)
that was about 10,800 page faults, 44 MB, per step, a third of the step's time; see BENCHMARKS.md.

:func:`retain_freed_memory` sets glibc's ``malloc`` to serve every allocation from its heaps
(``M_MMAP_MAX = 0``; one too large for a thread's heap falls back to the main heap) and never to trim
them (``M_TRIM_THRESHOLD``). The process then holds on to its peak heap, which a training process
reaches on its first step anyway. It is a no-op where the C library has no ``mallopt`` (macOS, musl)
and when ``ATLAS_RETAIN_MEMORY=0``. ``bench/train_throughput.py --compare-allocator`` measures it
against glibc's defaults, in alternate processes. (One arena for all threads,
``M_ARENA_MAX = 1``, removed a few more faults but made the smallest scale slower: not set.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

__all__ = ["retain_freed_memory"]

# glibc's malloc.h parameter numbers.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_NEVER_TRIM = 2**31 - 1  # mallopt takes an int: 2 GB of free heap top before glibc would trim


@functools.cache
def _mallopt():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def retain_freed_memory() -> bool:
    """Keep freed heap memory in the process (module docstring); ``True`` if the C library took it."""
    fn = _mallopt()
    if fn is None or os.environ.get("ATLAS_RETAIN_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return all(fn(param, value) == 1 for param, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM)))

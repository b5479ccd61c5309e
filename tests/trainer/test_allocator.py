"""``trainer.allocator``: with freed memory kept, a large buffer comes from the heap and stays there.

That is what spares XLA's per-step buffers from being page-faulted in again (the speed-up itself is
measured by ``bench/train_throughput.py --compare-allocator``; page-fault counts depend on the kernel's
huge pages and are not asserted here). Each check runs in a fresh process: the setting is process-wide.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from trainer import allocator

# mallinfo2 (glibc >= 2.33): hblkhd = bytes in mmapped blocks, fordblks = free bytes kept in the heap.
_SCRIPT = textwrap.dedent("""
    import ctypes, importlib.util, json, sys
    spec = importlib.util.spec_from_file_location("allocator", sys.argv[2])  # not trainer/__init__ (JAX)
    allocator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(allocator)
    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Info
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    took = allocator.retain_freed_memory() if sys.argv[1] == "retain" else None
    size = 64 << 20  # above glibc's largest mmap threshold (32 MB): always mmapped by default
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    mapped = libc.mallinfo2().hblkhd - before
    libc.free(p)
    print(json.dumps({"took": took, "mapped": mapped, "kept_free": libc.mallinfo2().fordblks}))
""")


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode, allocator.__file__], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(allocator._mallopt() is None, reason="needs glibc's mallopt")
def test_large_buffers_come_from_the_heap_and_stay():
    default, kept = _run("default"), _run("retain")
    assert default["mapped"] >= 64 << 20 and default["kept_free"] < 64 << 20, default  # glibc: mmap, munmap
    assert kept["took"] is True
    assert kept["mapped"] == 0, kept  # served from the heap...
    assert kept["kept_free"] >= 64 << 20, kept  # ...and still there after free: no fault on the next step


def test_opt_out(monkeypatch):
    monkeypatch.setenv("ATLAS_RETAIN_MEMORY", "0")
    assert allocator.retain_freed_memory() is False

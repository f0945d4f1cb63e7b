r"""Why a fresh large array is slow, and how the backend keeps its arrays warm.

Every call of a compiled cell allocates a few arrays of ``T·B·G·H`` numbers (the
pre-activations and gate values, the hidden states, the gate gradients).  With
glibc's default settings, ``malloc`` serves a block above its *mmap threshold*
(128 KiB at start) by mapping fresh pages from the kernel, and ``free`` hands them
straight back.  The next call maps them again, and the first write to each 4 KiB
page is a page fault: the kernel stops the thread, finds a zeroed page and maps
it.  On a virtual machine such a fault costs several microseconds (measured here:
about 9 µs), so a training step of the GRU loop at ``B=32, T=64, H=64`` spent
more time faulting than computing: 386 µs per time step against 76 µs with the
pages kept (``benchmarks/results/interference-*.md``).

NumPy's reference does not notice (its per-step arrays are small and recycled by
``malloc`` itself) and PyTorch keeps its own caching allocator.  The Numba backend
does the equivalent with one call at import: it raises glibc's mmap threshold, so
large blocks come from the heap, and its trim threshold, so freed heap memory is
kept for the next call instead of being returned to the kernel::

    mallopt(M_MMAP_THRESHOLD, 32 MiB)     # blocks up to 32 MiB from the heap
    mallopt(M_TRIM_THRESHOLD, 256 MiB)    # keep up to 256 MiB of freed heap

The cost is that the process keeps up to that much freed memory mapped.  The
setting is process-wide (it affects every ``malloc`` in the process, not only
this backend's), so it is made only on Linux with glibc, only once, and not at
all with ``RNNBOOK_MALLOC_TUNING=0`` in the environment.

**Alignment.**  ``malloc`` (and so NumPy) returns blocks aligned to 16 bytes; a 64-byte
vector load from an address that is not a multiple of 64 touches two cache lines.  For
the recurrent weight, which every step streams through the cache, that is the whole
difference between two speeds: LSTM B=1 H=128, one thread, 3.9/6.4 µs/step forward/
backward with ``W_hh`` on a 64-byte boundary, 6.1/8.0 µs/step on any other -- which
one a process got depended on where ``malloc`` happened to put the copy (it looked
like run-to-run noise).  The cells therefore hand their kernels weight operands made
by :func:`empty_aligned`.
"""
import ctypes
import ctypes.util
import math
import operator
import os
import sys

import numpy as np

#: glibc's ``mallopt`` parameter numbers (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: the values set (bytes)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20

#: what :func:`keep_large_blocks` did, for reports: "set", or why not
STATUS = "not tried"


def keep_large_blocks() -> str:
    """Raise glibc's mmap and trim thresholds (see the module docstring); returns :data:`STATUS`."""
    global STATUS
    if STATUS == "set":
        return STATUS
    if os.environ.get("RNNBOOK_MALLOC_TUNING", "1") == "0":
        STATUS = "off (RNNBOOK_MALLOC_TUNING=0)"
    elif not sys.platform.startswith("linux"):
        STATUS = f"not glibc ({sys.platform})"
    else:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):
            STATUS = "no mallopt in this C library"
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            STATUS = "set" if ok else "mallopt refused"
    return STATUS


#: bytes of alignment of :func:`empty_aligned` (one cache line, one AVX-512 vector)
ALIGNMENT = 64


def empty_aligned(shape, dtype):
    """``np.empty(shape, dtype)``, C-contiguous, its first element on a multiple of ``ALIGNMENT``.

    Called once per call of a loop for its weight operand, so written for a few µs: one
    allocation of bytes and one array on it at the right offset (the form with ``np.ndim``,
    a slice, a view and a reshape took 5.9 µs, this one 2.6)."""
    dtype = np.dtype(dtype)
    if dtype.hasobject:                     # (an object array on uninitialised bytes would crash)
        raise TypeError(f"empty_aligned holds plain numbers, not {dtype}")
    if isinstance(shape, (tuple, list)) or np.ndim(shape) > 0:   # (np.ndim only for the rare forms:
        shape = tuple(map(operator.index, shape))                # an array or range of sizes)
    else:
        shape = (operator.index(shape),)
    if min(shape, default=0) < 0:           # (np.ndarray lets a shape of (-1,) through)
        raise ValueError(f"negative dimensions are not allowed: {shape}")
    n = math.prod(shape) * dtype.itemsize
    raw = np.empty(n + ALIGNMENT, np.uint8)
    return np.ndarray(shape, dtype, raw, -raw.__array_interface__["data"][0] % ALIGNMENT)

"""``numba_cpu.memory``: large freed blocks stay in the heap, so the next call does not fault them in;
weight operands start on a 64-byte boundary.

Each case runs in a fresh interpreter, because the setting is process-wide and glibc
adapts its thresholds to what a process has allocated before.
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("numba")

_PROBE = r"""
import resource, numpy as np
import rnnbook.numba_cpu
from rnnbook.numba_cpu import memory
def touch(n):                       # allocate n bytes, write every page, count the page faults
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.empty(n, np.uint8); a[::4096] = 1
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
touch(16 << 20)                     # the first call of a size always faults its pages in
print(memory.STATUS, "|", touch(16 << 20))   # the second: only if the block went back to the kernel
"""


def _probe(**env):
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env})
    assert out.returncode == 0, out.stderr
    status, faults = out.stdout.strip().rsplit("|", 1)
    return status.strip(), int(faults)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"),
                    reason="mallopt thresholds are a glibc feature")
def test_large_blocks_are_reused_instead_of_faulted_in_again():
    status, faults = _probe()
    assert status == "set"
    assert faults < 64, f"{faults} page faults re-touching a freed 16 MiB block"
    status, faults_default = _probe(RNNBOOK_MALLOC_TUNING="0")
    assert status == "off (RNNBOOK_MALLOC_TUNING=0)"
    # glibc's default maps the first 16 MiB block, unmaps it on free and adapts its threshold
    # only then: the second block comes from a heap that has to grow, page by page
    assert faults_default > max(4 * faults, 64), (faults_default, faults)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (7, 1, 9), (0, 4)])
def test_empty_aligned(shape, dtype):
    from rnnbook.numba_cpu import memory
    for _ in range(5):                                      # several allocations: any malloc offset
        a = memory.empty_aligned(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.size == 0 or a.ctypes.data % memory.ALIGNMENT == 0    # (no memory, no address)
        a[...] = 1                                           # the whole view is usable memory


def test_empty_aligned_takes_shapes_as_np_empty_does():
    """An int for a 1-D shape, and NumPy integers (whose product could wrap around in their
    own width) among the sizes."""
    from rnnbook.numba_cpu import memory
    assert memory.empty_aligned(5, np.float32).shape == (5,)
    assert memory.empty_aligned(np.int64(3), np.float64).shape == (3,)
    a = memory.empty_aligned((np.int32(3), np.int8(100)), np.float32)
    assert a.shape == (3, 100) and a.ctypes.data % memory.ALIGNMENT == 0
    for shape in ((-1,), -1, (2, -3)):                   # refused, as np.empty refuses them
        with pytest.raises(ValueError, match="negative"):
            memory.empty_aligned(shape, np.float32)
    with pytest.raises(TypeError):
        memory.empty_aligned((2.5, 3), np.float32)
    for shape in (np.array([2, 3]), range(2, 4), [2, 3]):  # other sequences of sizes
        assert memory.empty_aligned(shape, np.float32).shape == (2, 3)
    with pytest.raises(TypeError, match="plain numbers"):
        memory.empty_aligned((2, 3), object)


def test_weight_operands_are_aligned():
    """Every form of a weight the kernels read starts on a 64-byte boundary (see memory.py)."""
    from rnnbook.numba_cpu import gemm
    rng = np.random.default_rng(2)
    for dtype in (np.float32, np.float64):
        for K, N in ((3, 5), (128, 512), (33, 70)):
            M = rng.standard_normal((N, K)).astype(dtype).T     # a transposed view, as W_hh.T
            for product in (gemm.LOOPS, gemm.BLAS, gemm.PANELS, True, False):
                P = gemm.operand(M, product)
                assert P.ctypes.data % 64 == 0 and P.flags.c_contiguous
                if product != gemm.PANELS:
                    np.testing.assert_array_equal(P, M)

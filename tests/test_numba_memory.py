"""``numba_cpu.memory``: large freed blocks stay in the heap, so the next call does not fault them in.

Each case runs in a fresh interpreter, because the setting is process-wide and glibc
adapts its thresholds to what a process has allocated before.
"""
import os
import platform
import subprocess
import sys

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

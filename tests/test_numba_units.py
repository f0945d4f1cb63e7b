"""The tile kernels' row helpers (``numba_cpu/units.py``): ``put_units``, ``fill_units``,
``copy``, ``add``, ``fill``, compiled into small kernels and checked against NumPy.

Random rows of every length around the vector width (the last vector is masked), random
unit ranges ``j0 .. j1`` and blocks, store and add, float32 and float64.  ``dst`` is a view
into a NaN-filled buffer, with NaNs before and after it: a write outside the tile's units
(another block's, or past the row's end) changes a value there, and the units inside must
come out exactly as NumPy computes them (a store is a copy, an add one rounding).  The
host's vector width is what the backend uses; a subprocess repeats the check compiled for
AVX2 and for SSE only.
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("numba")
from numba import njit  # noqa: E402
from numba.core.errors import TypingError  # noqa: E402

from rnnbook.numba_cpu import panels, units  # noqa: E402


@njit
def _put(dst, src, j0, j1, n_blocks, accumulate):
    units.put_units(dst, src, j0, j1, n_blocks, accumulate)


@njit
def _fill_units(dst, value, j0, j1):
    units.fill_units(dst, value, j0, j1)


@njit
def _whole(dst, src, value, how):
    if how == 0:
        units.copy(dst, src)
    elif how == 1:
        units.add(dst, src)
    else:
        units.fill(dst, value)


def framed(rng, n, dtype, margin=3):
    """``(buffer, row)``: a random row of ``n`` in the middle of a NaN buffer."""
    buffer = np.full(n + 2 * margin, np.nan, dtype)
    row = buffer[margin:margin + n]
    row[:] = rng.standard_normal(n)
    return buffer, row


def check_units(n_blocks, H, j0, j1, mode, dtype, seed):
    """One call of ``put_units`` (``mode`` "store" or "add") or ``fill_units`` ("fill") on
    rows of ``n_blocks·H`` against NumPy, nothing outside units ``j0 .. j1`` of each block
    touched (``fill_units`` has no blocks: elements ``j0 .. j1`` of the row)."""
    rng = np.random.default_rng(seed)
    buffer, dst = framed(rng, n_blocks * H, dtype)
    src = rng.standard_normal(n_blocks * H).astype(dtype)
    value = dtype(rng.standard_normal())
    expect = buffer.copy()
    inside = np.zeros(n_blocks * H, bool)
    for q in range(n_blocks if mode != "fill" else 1):
        inside[q * H + j0:q * H + j1] = True
    view = expect[3:3 + n_blocks * H]
    if mode == "store":
        view[inside] = src[inside]
        _put(dst, src, j0, j1, n_blocks, False)
    elif mode == "add":
        view[inside] = view[inside] + src[inside]
        _put(dst, src, j0, j1, n_blocks, True)
    else:
        view[inside] = value
        _fill_units(dst, value, j0, j1)
    np.testing.assert_array_equal(buffer, expect)          # NaN == NaN here: the margins too


@settings(max_examples=60, deadline=None)
@given(data=st.data(), n_blocks=st.integers(1, 4), H=st.integers(1, 70), mode=st.sampled_from(["store", "add", "fill"]),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31))
def test_units_on_random_tiles(data, n_blocks, H, mode, dtype, seed):
    j0 = data.draw(st.integers(0, H))
    j1 = data.draw(st.integers(j0, H))
    check_units(n_blocks, H, j0, j1, mode, dtype, seed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["store", "add", "fill"])
def test_units_around_the_vector_width(mode, dtype):
    """Every unit count from 0 to three vectors and one, whole rows and inner ranges."""
    lanes = panels.VECTOR_BYTES // np.dtype(dtype).itemsize
    for H in range(1, 3 * lanes + 2):
        check_units(1, H, 0, H, mode, dtype, H)
        check_units(4, H, H // 3, H - H // 4, mode, dtype, 1000 + H)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_empty_range_writes_nothing(dtype):
    for j0, j1 in [(0, 0), (5, 5), (7, 3)]:
        for mode in ("store", "add", "fill"):
            check_units(3, 8, j0, j1, mode, dtype, j0 + 10 * j1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_whole_row_helpers(dtype):
    rng = np.random.default_rng(3)
    lanes = panels.VECTOR_BYTES // np.dtype(dtype).itemsize
    for n in [1, lanes - 1, lanes, lanes + 1, 5 * lanes + 3]:
        src = rng.standard_normal(n).astype(dtype)
        value = dtype(rng.standard_normal())
        for how in range(3):
            buffer, dst = framed(rng, n, dtype)
            expect = buffer.copy()
            expect[3:3 + n] = src if how == 0 else expect[3:3 + n] + src if how == 1 else value
            _whole(dst, src, value, how)
            np.testing.assert_array_equal(buffer, expect)


def test_integer_and_other_typed_values_are_cast_to_the_row():
    dst = np.full(9, np.nan, np.float32)
    _fill_units(dst, 0, 2, 7)
    np.testing.assert_array_equal(dst[2:7], 0)
    assert np.isnan(dst[:2]).all() and np.isnan(dst[7:]).all()
    d64 = np.zeros(5)
    _fill_units(d64, np.float32(0.5), 0, 5)
    np.testing.assert_array_equal(d64, 0.5)


def test_rows_of_other_kinds_are_refused():
    """Not contiguous 1-D rows of one float dtype: a typing error, not a wrong answer."""
    f32, f64 = np.zeros(8, np.float32), np.zeros(8, np.float64)
    with pytest.raises(TypingError):
        _put(f32, f64, 0, 8, 1, False)                       # two dtypes
    with pytest.raises(TypingError):
        _put(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), 0, 4, 1, False)   # 2-D
    with pytest.raises(TypingError):
        _put(np.zeros(16, np.float32)[::2], f32, 0, 8, 1, False)                            # strided
    with pytest.raises(TypingError):
        _fill_units(np.zeros(8, np.int64), 0, 0, 8)                                        # not floats


_NARROW = r"""
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from test_numba_units import check_units
from rnnbook.numba_cpu import panels
assert panels.VECTOR_BYTES == {bytes}, panels.VECTOR_BYTES
for dtype in (np.float32, np.float64):
    lanes = panels.VECTOR_BYTES // np.dtype(dtype).itemsize
    for n, (G, H, j0, j1) in enumerate([(1, 1, 0, 1), (1, lanes + 1, 0, lanes + 1), (3, 2 * lanes + 3, 1, 2 * lanes),
                                        (4, 37, 5, 31)]):
        for mode in ("store", "add", "fill"):
            check_units(G, H, j0, j1, mode, dtype, n)
print("ok")
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 targets")
@pytest.mark.parametrize("vector_bytes", [32, 16])
def test_narrower_vector_widths(tmp_path, vector_bytes):
    from test_numba_panels import NARROW_TARGETS
    name, features = NARROW_TARGETS[vector_bytes]
    env = dict(os.environ, NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    script = _NARROW.replace("{bytes}", str(vector_bytes)).replace("{tests!r}", repr(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "ok"

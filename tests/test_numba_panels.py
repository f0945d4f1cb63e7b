"""The packed-panel product of the Numba backend (``numba_cpu/panels.py``), and BLAS's column panels.

The layout of ``pack``, and ``gemm.matmul_tile(..., PANELS)`` against a float64 product
on random tiles: any rows ``r0 .. r1-1`` (not a multiple of the kernel's rows), any
columns ``c0 .. c1-1`` (not on panel edges), ``A`` wider than ``K`` and with a row
stride, and nothing outside the tile touched.  The host's vector width is what the
backend uses; subprocesses compile for AVX2 and SSE-only CPUs (Numba's target settings) and
repeat the check with those narrower shapes.  The BLAS path of ``matmul_tile`` cuts a
few-row product above OpenBLAS's small-matrix limit into column panels
(``gemm.blas_panel_width``); the same tile check runs there.
"""
import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

pytest.importorskip("numba")
from numba.core.codegen import get_host_cpu_features  # noqa: E402

from rnnbook.numba_cpu import gemm, panels  # noqa: E402

TOL = {np.float32: 2e-6, np.float64: 1e-13}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pack_layout(dtype):
    rng = np.random.default_rng(5)
    nr = panels.panel_width(dtype)
    K, N = 7, 2 * nr + 3
    M = rng.standard_normal((K, N)).astype(dtype)
    P = panels.pack(M)
    assert P.shape == (3, K, nr) and P.dtype == dtype and P.flags.c_contiguous
    for p in range(3):
        for k in range(K):
            row = P[p, k]
            width = min(nr, N - p * nr)
            np.testing.assert_array_equal(row[:width], M[k, p * nr:p * nr + width])
            assert not row[width:].any()                               # zero padding
    assert panels.panel_width(dtype) == panels.VECTORS * panels.VECTOR_BYTES // np.dtype(dtype).itemsize


def check_tile(B, K, N, r0, r1, c0, c1, extra, dtype, seed, product=gemm.PANELS, descending=0):
    """``matmul_tile(..., product, descending)`` on one tile against float64 (``descending``:
    the panels, and a single row's ``k``, in reverse order).  ``A`` has ``extra`` NaN columns
    past ``K`` and ``C`` is a view, ``extra + 1`` columns short of its rows' stride, into a
    NaN-filled buffer with a NaN row after it: a read past ``K`` or a write outside the tile
    (into the margins or the next row) shows as NaN or as a changed value."""
    rng = np.random.default_rng(seed)
    A = np.full((B, K + extra), np.nan, dtype)
    A[:, :K] = rng.standard_normal((B, K))
    A = A[:, :K]
    M = rng.standard_normal((K, N)).astype(dtype)
    buffer = np.full((B + 1, N + extra + 1), np.nan, dtype)
    C = buffer[:B, :N]
    C[...] = rng.standard_normal((B, N))
    before = buffer.copy()
    gemm.matmul_tile(A, gemm.operand(M, product), C, r0, r1, c0, c1, product, descending)
    ref = before[:B, :N].astype(np.float64)
    ref[r0:r1, c0:c1] += A[r0:r1].astype(np.float64) @ M[:, c0:c1].astype(np.float64)
    scale = max(1.0, np.abs(ref).max()) * np.sqrt(K)
    np.testing.assert_allclose(C, ref, rtol=0, atol=TOL[dtype] * scale)
    outside = np.ones(buffer.shape, bool)
    outside[r0:r1, c0:c1] = False
    np.testing.assert_array_equal(buffer[outside], before[outside])   # untouched, bit for bit (NaN == NaN here)


@settings(max_examples=60, deadline=None)
@given(data=st.data(), B=st.integers(1, 21), K=st.integers(1, 70), N=st.integers(1, 100),
       extra=st.integers(0, 3), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16),
       descending=st.integers(0, 1))
def test_panel_product_on_random_tiles(data, B, K, N, extra, dtype, seed, descending):
    r0 = data.draw(st.integers(0, B - 1))
    r1 = data.draw(st.integers(r0 + 1, B))
    c0 = data.draw(st.integers(0, N - 1))
    c1 = data.draw(st.integers(c0 + 1, N))
    check_tile(B, K, N, r0, r1, c0, c1, extra, dtype, seed, descending=descending)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_panel_product_fixed_shapes(dtype):
    rows = panels.ROWS
    N = 4 * panels.panel_width(dtype) + 5
    check_tile(2 * rows + 3, 129, N, 1, 2 * rows + 2, 3, N - 2, 2, dtype, 1)
    check_tile(1, 1, 1, 0, 1, 0, 1, 0, dtype, 2)                       # the smallest product
    check_tile(rows, 64, 256, 0, rows, 0, 256, 0, dtype, 3)            # whole panels, whole blocks
    check_tile(5, 3, 40, 0, 5, 16, 32, 0, dtype, 4)                     # one unit block of a gate
    check_tile(4, 6, 9, 2, 2, 0, 9, 0, dtype, 5)                        # empty row range: no-op
    for descending in (0, 1):                                           # a single row, panels in either order
        check_tile(1, 67, N, 0, 1, 3, N - 2, 1, dtype, 6, descending=descending)
        check_tile(3, 64, N, 2, 3, 0, N, 0, dtype, 7, descending=descending)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_form_of_the_operand_compiles_only_its_own_paths(dtype):
    """Panels (3-D) compile to the panel path alone, a matrix to the loop and BLAS paths alone
    (``gemm``'s module docstring: a first call compiles only what its size uses).  The
    compiled code is read for the panel kernels' and BLAS's function names."""
    rng = np.random.default_rng(7)
    B, K, N = rng.integers(1, 12), rng.integers(1, 40), rng.integers(1, 90)
    for product in (gemm.LOOPS, gemm.BLAS, gemm.PANELS):
        check_tile(B, K, N, 0, B, 0, N, 1, dtype, int(rng.integers(2**16)), product)
    seen = set()
    for sig, code in gemm.matmul_tile.inspect_llvm().items():
        if str(sig[2].dtype) != np.dtype(dtype).name:
            continue
        bits = 8 * np.dtype(dtype).itemsize
        panel_code = f"rnnbook_panel_block_f{bits}" in code
        blas_code = f"rnnbook_{'s' if bits == 32 else 'd'}gemm" in code      # bound even without a BLAS
        assert (panel_code, blas_code) == ((True, False) if sig[1].ndim == 3 else (False, True))
        seen.add(sig[1].ndim)
    assert seen == {2, 3}


@given(rows=st.integers(1, 64), K=st.integers(1, 4096), cols=st.integers(1, 4096))
def test_blas_column_panels_stay_under_the_small_matrix_limit(rows, K, cols):
    width = gemm.blas_panel_width(rows, K, cols)
    if width == cols:                     # one call: small enough, or no panel of MIN_PANEL fits
        assert rows * K * cols <= gemm.SMALL_GEMM_MNK or \
            min(gemm.MAX_PANEL, gemm.SMALL_GEMM_MNK // (rows * K)) // 16 * 16 < gemm.MIN_PANEL
        return
    n_panels = -(-cols // width)
    assert width % 16 == 0 and gemm.MIN_PANEL <= width <= gemm.MAX_PANEL
    assert rows * K * width <= gemm.SMALL_GEMM_MNK                    # each call stays unpacked
    fewest = -(-cols // (min(gemm.MAX_PANEL, gemm.SMALL_GEMM_MNK // (rows * K)) // 16 * 16))
    assert n_panels == fewest                                         # no more calls than needed
    assert cols - (n_panels - 1) * width > width - 16 * n_panels      # the last panel is not a sliver


def test_blas_panels_even_out_the_columns():
    assert gemm.blas_panel_width(4, 1024, 256) == 128                 # not 240 + 16
    assert gemm.blas_panel_width(4, 256, 1024) == 256
    assert gemm.blas_panel_width(4, 128, 512) == 512                  # under the limit: one call


@pytest.mark.skipif(not gemm.HAVE_BLAS, reason="NumPy carries no usable BLAS")
@settings(max_examples=12, deadline=None)
@given(data=st.data(), K=st.integers(260, 1100), N=st.integers(250, 420), extra=st.integers(0, 2),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_blas_product_in_column_panels(data, K, N, extra, dtype, seed):
    B = data.draw(st.integers(4, 9))
    r0 = data.draw(st.integers(0, B - 4))
    r1 = data.draw(st.integers(r0 + 4, B))
    c0 = data.draw(st.integers(0, 17))
    c1 = data.draw(st.integers(N - 17, N))
    if (r1 - r0) * K * (c1 - c0) > gemm.SMALL_GEMM_MNK:
        assert gemm.blas_panel_width(r1 - r0, K, c1 - c0) < c1 - c0   # really in panels
    check_tile(B, K, N, r0, r1, c0, c1, extra, dtype, seed, product=gemm.BLAS)


@pytest.mark.skipif(not gemm.HAVE_BLAS, reason="NumPy carries no usable BLAS")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_blas_product_fixed_panelled_shapes(dtype):
    check_tile(8, 1024, 256, 0, 4, 0, 256, 1, dtype, 7, product=gemm.BLAS)    # the LSTM B=8 H=256 backward tile
    check_tile(9, 700, 400, 2, 8, 5, 391, 2, dtype, 8, product=gemm.BLAS)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("K", list(range(1, 11)) + [37, 128])
def test_single_row_kernel_every_remainder_of_the_split(K, dtype):
    """A block of one row runs ``_emit_row``: its loop over ``k`` goes ``SPLIT_K`` at a time
    (up, or down with ``descending``), then one at a time; every remainder, and a lone last
    row after a full block, in both orders."""
    nr = panels.panel_width(dtype)
    for descending in (0, 1):
        check_tile(1, K, 2 * nr + 5, 0, 1, 3, 2 * nr + 2, 1, dtype, K, descending=descending)
        check_tile(panels.ROWS + 1, K, nr + 1, 0, panels.ROWS + 1, 0, nr + 1, 0, dtype, K + 100,
                   descending=descending)


def _bits(a):
    """``a``'s elements as unsigned integers: equal only when bit for bit equal (-0.0 is not 0.0)."""
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 300), cols=st.integers(0, 300), dtype=st.sampled_from([np.float32, np.float64]),
       layout=st.sampled_from(["transposed", "contiguous", "sliced", "reversed"]), forced=st.booleans(),
       symbol=st.booleans(), seed=st.integers(0, 2**16))
def test_copy_matrix_is_an_exact_copy(rows, cols, dtype, layout, forced, symbol, seed):
    """``gemm.copy_matrix``: bit for bit ``out[...] = M`` (signed zeros, infinities and quiet
    NaNs among the values), through ``somatcopy`` (float32 transposes, forced at every size)
    or NumPy (everything else, and everything where OpenBLAS lacks the symbol); empty
    matrices never reach OpenBLAS, which prints an error for them."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, cols)).astype(dtype)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    base.flat[rng.integers(0, max(base.size, 1), min(base.size, 5))] = specials[:min(base.size, 5)]
    M = {"transposed": base.T, "contiguous": base, "sliced": base[:, ::2].T,
         "reversed": base[::-1].T}[layout]
    out = np.full(M.shape, np.nan, dtype)
    calls = []
    real = gemm._somatcopy
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gemm, "OMATCOPY_MIN_SIZE", 0 if forced else gemm.OMATCOPY_MIN_SIZE)
        mp.setattr(gemm, "_somatcopy", None if real is None or not symbol else
                   lambda *a: calls.append(a[2:4]) or real(*a))
        gemm.copy_matrix(M, out)
    np.testing.assert_array_equal(_bits(out), _bits(np.ascontiguousarray(M)))
    through_blas = (real is not None and symbol and dtype == np.float32 and M.T.flags.c_contiguous
                    and 0 < M.size and (forced or M.size >= gemm.OMATCOPY_MIN_SIZE))
    assert calls == ([M.T.shape] if through_blas else [])


@pytest.mark.parametrize("forced", [False, True])
def test_copy_matrix_keeps_numpys_checks(forced, monkeypatch):
    """A read-only ``out`` raises as NumPy's assignment does (``somatcopy`` would write into
    it, or crash), and an ``out`` that overlaps ``M`` (a square matrix transposed into
    itself) gets the right result, which a copy that writes while it reads would not."""
    monkeypatch.setattr(gemm, "OMATCOPY_MIN_SIZE", 0 if forced else gemm.OMATCOPY_MIN_SIZE)
    rng = np.random.default_rng(5)
    A = rng.standard_normal((128, 128)).astype(np.float32)
    frozen = np.zeros_like(A)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gemm.copy_matrix(A.T, frozen)
    assert not frozen.any()
    expected = A.T.copy()
    gemm.copy_matrix(A.T, A)
    np.testing.assert_array_equal(A, expected)


def test_large_float32_transposes_go_through_somatcopy(monkeypatch):
    """``W_hh.T`` of a float32 LSTM with H = 64 (64 × 256) is copied by OpenBLAS; float64 and
    small ones by NumPy."""
    if gemm._somatcopy is None:
        pytest.skip("this OpenBLAS has no cblas_somatcopy")
    calls = []
    real = gemm._somatcopy
    monkeypatch.setattr(gemm, "_somatcopy", lambda *a: calls.append(a[2:4]) or real(*a))
    rng = np.random.default_rng(1)
    for H, dtype, taken in ((64, np.float32, True), (64, np.float64, False), (32, np.float32, False)):
        W = rng.standard_normal((4 * H, H)).astype(dtype)
        P = gemm.operand(W.T, gemm.BLAS)
        np.testing.assert_array_equal(P, W.T)
        assert (calls[-1:] == [(4 * H, H)]) == taken
        calls.clear()


def test_operand_is_the_matrix_unless_panels():
    M = np.arange(12.0).reshape(3, 4).T                                 # not C-contiguous
    for product in (gemm.LOOPS, gemm.BLAS):
        got = gemm.operand(M, product)
        assert got.flags.c_contiguous and np.array_equal(got, M)
    np.testing.assert_array_equal(gemm.operand(M, gemm.PANELS), panels.pack(M))


_NARROW = r"""
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_numba_panels import check_tile
from rnnbook.numba_cpu import panels
assert panels.VECTOR_BYTES == {bytes}, panels.VECTOR_BYTES
rows = panels.ROWS
for dtype in (np.float32, np.float64):
    nr = panels.panel_width(dtype)
    for n, (B, K, N, r0, r1, c0, c1, extra) in enumerate([
            (13, 37, 45, 0, 13, 0, 45, 0), (9, 5, 70, 2, 9, 7, 61, 2), (1, 1, 1, 0, 1, 0, 1, 1),
            (2 * rows + 3, 64, 3 * nr + 5, 1, 2 * rows + 2, 3, 3 * nr + 1, 3)]):
        check_tile(B, K, N, r0, r1, c0, c1, extra, dtype, n)
print("ok", rows, panels.panel_width(np.float32))
"""


#: Numba targets without AVX-512 (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES) and the vector width the
#: kernel must then use.  Numba's cache is keyed by these, so no kernel compiled for the host's
#: width is loaded there.
NARROW_TARGETS = {
    32: ("haswell", "+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+cx8,+f16c,+fma,+fxsr,+lzcnt,+mmx,"
                    "+movbe,+popcnt,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave"),
    16: ("x86-64", "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2"),
}


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 targets")
@pytest.mark.parametrize("vector_bytes", [32, 16])
def test_narrower_vector_shapes(tmp_path, vector_bytes):
    """The AVX2 (32-byte) and SSE (16-byte) shapes of the kernel, compiled for those CPUs here."""
    if vector_bytes == panels.VECTOR_BYTES:
        pytest.skip("that is the host's own shape, tested above")
    name, features = NARROW_TARGETS[vector_bytes]
    host = set(get_host_cpu_features().split(","))
    if not {f for f in features.split(",") if f.startswith("+")} <= host:
        pytest.skip(f"this CPU cannot run code compiled for {name}")
    env = dict(os.environ, NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    script = _NARROW.replace("{bytes}", str(vector_bytes)).replace("{tests!r}", repr(os.path.dirname(__file__)))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows, width = map(int, out.stdout.split()[1:])
    assert rows == 6 and width == 2 * vector_bytes // 4

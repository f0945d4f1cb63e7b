r"""The recurrent matrix product, for compiled kernels: a plain loop, BLAS, or packed panels.

Every cell spends its time in one product per step, applied to a tile of batch rows
and output columns (``matmul_tile``; ``matmul_rows`` is the tile of all columns)::

    C[r, c0:c1] += A[r, :] @ M[:, c0:c1]      for r in rows r0 .. r1-1
    A (B, K)   M (K, N) row-major   C (B, N)

(forward: ``A = h_{t-1}``, ``M = W_hh^T``; backward: ``A = dz_t``, ``M = W_hh``; a thread
that owns hidden units ``j0 .. j1-1`` takes those columns of each gate block,
``matmul_gates``).  Three ways to compute it, chosen per sequence by ``product``
(``LOOPS``, ``BLAS``, ``PANELS``; the row kernels of the other cells pass a bool,
loops or BLAS):

* **loops** -- row by row, ``C[r, n] += A[r, k] · M[k, n]`` with ``n`` innermost:
  contiguous in ``M`` and ``C``, so it compiles to SIMD multiply-adds.  No call
  overhead, best when the product is small (the latency regime, ``B·H`` tiny).
* **BLAS** -- one ``?gemm`` over the block of rows, called *from inside* the
  compiled loop (no Python between steps).  Its small-matrix kernels block for
  registers and use the full vector width, so it wins once the product has any
  size.  It runs single-threaded (:func:`single_threaded_blas`): the threads go
  over blocks of batch rows instead, with no synchronisation between steps.
* **panels** -- ``M`` packed once per sequence into column panels and a
  register-blocked kernel per step (``panels.py``): what BLAS does inside, minus the
  repacking of ``M`` at every call, which is most of BLAS's cost when ``B`` is small.

The packed panels are a 3-D array and a matrix is 2-D, and Numba compiles a kernel once
per combination of its arguments' types: a kernel handed panels is compiled with the
panel path alone, one handed a matrix with the loop and BLAS paths alone (Numba drops a
branch on ``M.ndim`` before it types the code).  Every path costs compile time on a
kernel's first call (with all three, ``matmul_tile`` took 0.9 s of the GRU forward
kernel's 2.7 s on a slow day), so a first call compiles only the paths its size can take:
measured, 5-16% off a forward kernel's first call on a matrix, 29-47% on panels.

The BLAS is the OpenBLAS that NumPy's wheels carry (``numpy.libs``); its CBLAS
``?gemm`` is registered with LLVM under the names ``rnnbook_sgemm`` /
``rnnbook_dgemm`` and compiled code calls it by name, so the on-disk compile cache
stays valid across processes.  Where no such library is found (NumPy built
against another BLAS), the names are bound to compiled loops instead and the
backend simply never chooses the BLAS path (``HAVE_BLAS`` is False).
"""
import ctypes
import glob
import os
import threading

import numpy as np
from llvmlite import binding as _llvm
from numba import cfunc, njit, types

from .functions import KERNEL_OPTIONS
from .memory import empty_aligned
from .panels import ROWS, matmul_panels, pack
from .sync import address
from .units import put_units

#: how ``matmul_tile`` computes a product (``product`` argument; ``bptt.plan_tiles`` chooses)
LOOPS, BLAS, PANELS = 0, 1, 2

_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112

# cblas_?gemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc), 64-bit integers
_SIG = {dt: types.void(types.int32, types.int32, types.int32, types.int64, types.int64, types.int64,
                       ft, types.voidptr, types.int64, types.voidptr, types.int64,
                       ft, types.voidptr, types.int64)
        for dt, ft in (("s", types.float32), ("d", types.float64))}
_CNAMES = ("scipy_cblas_{}gemm64_", "cblas_{}gemm64_")   # ILP64 CBLAS symbols NumPy's OpenBLAS exports


def _find_numpy_blas():
    """``(library, {"s": address, "d": address})`` of NumPy's bundled ILP64 CBLAS gemm, or ``None``."""
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern in _CNAMES:
            try:
                fns = {dt: getattr(lib, pattern.format(dt)) for dt in "sd"}
            except AttributeError:
                continue
            return lib, {dt: ctypes.cast(fn, ctypes.c_void_p).value for dt, fn in fns.items()}
    return None


def _loop_gemm(dt):
    """A compiled stand-in with the CBLAS signature (row-major, no transposes, alpha = beta = 1)."""
    ctype = types.float32 if dt == "s" else types.float64

    @cfunc(_SIG[dt])
    def gemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc):  # pragma: no cover
        a = _carray(A, M * lda, ctype)
        b = _carray(B, K * ldb, ctype)
        c = _carray(C, M * ldc, ctype)
        for m in range(M):
            for k in range(K):
                amk = a[m * lda + k]
                for n in range(N):
                    c[m * ldc + n] += amk * b[k * ldb + n]
    return gemm


def _carray(ptr, n, dtype):
    from numba import carray
    return carray(ptr, n, dtype)


_found = _find_numpy_blas()
HAVE_BLAS = _found is not None
#: where the BLAS came from (for reports), or why there is none
BLAS_SOURCE = _found[0]._name if HAVE_BLAS else "none found in numpy.libs: using compiled loops only"
if HAVE_BLAS:
    for _dt, _addr in _found[1].items():
        _llvm.add_symbol(f"rnnbook_{_dt}gemm", _addr)
else:  # pragma: no cover - only where NumPy carries another BLAS
    _fallbacks = {dt: _loop_gemm(dt) for dt in "sd"}
    for _dt, _fn in _fallbacks.items():
        _llvm.add_symbol(f"rnnbook_{_dt}gemm", _fn.address)


def _thread_control():
    """OpenBLAS's get/set_num_threads, or ``None``."""
    if not HAVE_BLAS:
        return None
    for get_name, set_name in (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                               ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
                               ("openblas_get_num_threads", "openblas_set_num_threads")):
        try:
            get, put = getattr(_found[0], get_name), getattr(_found[0], set_name)
        except AttributeError:
            continue
        get.restype, put.restype, put.argtypes = ctypes.c_int, None, [ctypes.c_int]
        return get, put
    return None


_threads = _thread_control()


_blas_lock = threading.Lock()
_blas_holders = 0        # Python threads inside at least one block of single_threaded_blas
_blas_mine = threading.local()   # .depth: the blocks this thread is inside (what a forked child keeps)
_blas_saved = None       # OpenBLAS's thread count before the first of them


def single_threaded_blas():
    """``with single_threaded_blas():`` -- inside the block NumPy's OpenBLAS runs every call
    on the calling thread.

    The per-step products are small (``B`` rows): spread over threads *inside* each
    call, they would pay a wake-up and a barrier every step.  The recurrence threads
    over blocks of batch rows instead (``bptt.run_tiles``), each block calling BLAS on
    its own thread, and the big GEMMs outside the recurrence split their rows over the
    same threads (``bptt.on_threads``).  The setting is process-wide: the first thread
    to enter a block saves OpenBLAS's thread count and the last to leave its blocks
    restores it, so blocks that overlap in several Python threads leave it as they found it.
    """
    return _SINGLE_THREADED_BLAS


class _SingleThreadedBlas:
    """The block of :func:`single_threaded_blas`.  A class rather than a generator: a block
    inside another (every call of a backend inside ``rb.host_blas``, several per call) only
    counts up and down on its thread, ~0.3 µs; the generator form with its lock took ~1.7."""
    __slots__ = ()

    def __enter__(self):
        global _blas_holders, _blas_saved
        depth = getattr(_blas_mine, "depth", 0)
        if depth == 0 and _threads is not None:
            with _blas_lock:
                if _blas_holders == 0:
                    _blas_saved = _threads[0]()
                    _threads[1](1)
                _blas_holders += 1
        _blas_mine.depth = depth + 1
        return self

    def __exit__(self, *exc):
        global _blas_holders
        depth = getattr(_blas_mine, "depth", 0) - 1
        if depth < 0:
            raise RuntimeError("single_threaded_blas: a block left on a thread that did not enter it")
        _blas_mine.depth = depth
        if depth == 0 and _threads is not None:
            with _blas_lock:
                _blas_holders -= 1
                if _blas_holders == 0:
                    _threads[1](_blas_saved)
        return False


_SINGLE_THREADED_BLAS = _SingleThreadedBlas()


def _reset_in_child():
    """In a child made by ``fork``: only the thread that forked exists there.  The blocks of
    :func:`single_threaded_blas` that the parent's *other* threads were inside will never be
    left, so the child counts only the forking thread (if it is inside blocks: they are
    still open, and left in the child as usual), restores OpenBLAS's thread count if it is
    not, and starts with a fresh lock (another thread may have held the old one at the fork)."""
    global _blas_lock, _blas_holders
    inside = getattr(_blas_mine, "depth", 0) > 0
    if _threads is not None and _blas_holders > 0 and not inside:
        _threads[1](_blas_saved)
    _blas_lock, _blas_holders = threading.Lock(), int(inside)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)


_sgemm = types.ExternalFunction("rnnbook_sgemm", _SIG["s"])
_dgemm = types.ExternalFunction("rnnbook_dgemm", _SIG["d"])


@njit(inline="always")
def _row_ptr(a, r):
    """Address of ``a[r, 0]`` in a 2-D array whose rows are contiguous."""
    return a.ctypes.data + r * a.strides[0]


#: OpenBLAS's small-matrix GEMM kernels (no packing) serve products up to M·N·K = 100³
SMALL_GEMM_MNK = 1_000_000
#: column panels for few-row products, between these widths (multiples of 16)
MAX_PANEL, MIN_PANEL = 256, 64


@njit(inline="always")
def blas_panel_width(rows, K, cols):
    """Columns per BLAS call for a ``(rows, K) @ (K, cols)`` product in :func:`matmul_tile`.

    A few rows against a wide matrix is the case OpenBLAS handles worst: above its
    small-matrix limit (:data:`SMALL_GEMM_MNK`) it packs the whole matrix on every call.
    Column panels that stay under the limit run unpacked, straight from cache (measured:
    4 rows × 256 × 1024 went from 34 to 111 GFLOP/s).  The panels are as even as multiples
    of 16 allow: 256 columns at K = 1024 as 2 × 128, not 240 + 16 (the LSTM B=8 H=256
    backward step went from 27.4 to 21.8 µs).  ``cols`` (one call) when no panel of at
    least ``MIN_PANEL`` columns fits under the limit, or none is needed.
    """
    if rows * K * cols <= SMALL_GEMM_MNK:
        return cols
    panel = SMALL_GEMM_MNK // (rows * K)                 # comparisons, not min/max: see functions.tanh_f32
    panel = (MAX_PANEL if panel > MAX_PANEL else panel) // 16 * 16
    if panel < MIN_PANEL:
        return cols
    n_panels = (cols + panel - 1) // panel
    return ((cols + n_panels - 1) // n_panels + 15) // 16 * 16


def _row_stride(a):
    """Elements between the rows of a 2-D array, BLAS's leading dimension (a single row may
    carry any stride in NumPy: its length, at least 1).  Plain Python where Python code asks
    (no compilation on a first call), compiled as :func:`_leading_dim` for compiled code."""
    if a.shape[0] > 1:
        return a.strides[0] // a.itemsize
    return a.shape[1] if a.shape[1] > 1 else 1                # not max(): see functions.tanh_f32


_leading_dim = njit(inline="always")(_row_stride)


@njit(**KERNEL_OPTIONS)
def matmul_rows(A, M, C, r0, r1, use_blas):
    """``C[r] += A[r] @ M`` for rows ``r0 <= r < r1``; ``A (B, K)``, ``M (K, N)``, ``C (B, N)``.

    Each array's rows must be contiguous (a column slice such as ``A[:, :2H]`` is fine).
    """
    matmul_tile(A, M, C, r0, r1, 0, M.shape[1], use_blas, 0)


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def project_rows(X, M, b, G, r0, r1, product):
    """``G[t, r] = b + X[t, r] @ M`` for every step ``t`` and batch rows ``r0 <= r < r1``:
    one row block's share of an input projection, through the recurrence's own product.

    ``X (T, B, K)``, ``M = operand(W_ih^T, product)`` (``K × N``), ``b (N)``, ``G (T, B, N)``.
    Each step writes the bias into its rows first and adds the product into them while
    they are still in the L1 cache (``bptt.input_projection``, whose ``batch_rows`` this is);
    as in a recurrence, odd steps read the panels in reverse.  The bias goes in through the
    row helper ``units.put_units``: with the slice assignment ``G[t, r, :] = b`` this
    function's first compile took 2.2-2.3 s, with a loop over the row 0.5 s (measured alone).
    """
    N = G.shape[2]
    for t in range(X.shape[0]):
        for r in range(r0, r1):
            put_units(G[t, r], b, 0, N, 1, False)                       # G[t, r] = b ...
        matmul_tile(X[t], M, G[t], r0, r1, 0, N, product, t % 2)       # ... + X[t, r] @ M


#: rows per step of :func:`project_rows` when :func:`project_block` runs a block of a whole
#: input projection through it: four panel row blocks, so that each panel of ``W_ih^T`` serves
#: 32 rows while it is in L1.  Measured on the development VM (one core, float32, 2048 rows,
#: GFLOP/s at 8 / 16 / 32 / 64 rows against BLAS): K×N = 128×128 90 / 105 / 103 / 105 against
#: 82, 128×512 94 / 97 / 97 / 97 against 87, 256×1024 106 / 104 / 100 / 102 against 90.
PROJECTION_ROWS = 32


def project_block(X, M, b, out, r0, r1):
    """``out[r] = b + X[r] @ M`` for the rows ``r0 <= r < r1`` of a whole input projection,
    through the packed panels: :func:`project_rows` on the block seen as steps of
    :data:`PROJECTION_ROWS` rows, then the rows left over (:func:`projection_steps`).

    ``X (R, K)``, ``M = operand(W_ih^T, PANELS)`` (``K × N``), ``b (N)``, ``out (R, N)``;
    C-contiguous, one dtype.  ``project_rows`` releases the GIL, so threads run their blocks
    at the same time.  Every row's sum is the bias plus the products in the order of ``k``
    (as OpenBLAS's kernels added them on the development VM), whatever block and step it
    falls in, unless the block is a single row.  The first call in a process compiles
    ``project_rows`` (0.7-1.1 s with an empty cache, 0.01 s from the cache).
    """
    K, N = X.shape[1], out.shape[1]
    for s0, s1, rows in projection_steps(r0, r1):
        project_rows(X[s0:s1].reshape(-1, rows, K), M, b, out[s0:s1].reshape(-1, rows, N),
                     0, rows, PANELS)


def projection_steps(r0, r1):
    """``(s0, s1, rows)``: rows ``r0 .. r1-1`` cut into steps of ``rows`` rows each, for
    :func:`project_block`: :data:`PROJECTION_ROWS` a step, then the rest.  No step leaves a
    row alone in a block of the panels (``rows % panels.ROWS == 1``) unless the block is one
    row: a row alone takes the single-row kernel, whose sums run in another order
    (``panels._emit_row``), so that row would round differently from one block to another.
    """
    n = r1 - r0
    full, left = divmod(n, PROJECTION_ROWS)
    sizes = [PROJECTION_ROWS] * full + ([left] if left else [])
    if n > 1 and sizes[-1] % ROWS == 1:
        last = sizes.pop()
        if last == 1:                        # one row after whole steps: the last step lends it two
            sizes[-1:] = [PROJECTION_ROWS - 2, 3]
        else:
            sizes += [last - 2, 2]
    out, s = [], r0
    for size in sizes:                       # equal steps side by side as one call
        if out and out[-1][2] == size:
            out[-1] = (out[-1][0], s + size, size)
        else:
            out.append((s, s + size, size))
        s += size
    return out


def operand(M, product):
    """``M`` in the form ``matmul_tile`` reads for ``product``: packed panels for ``PANELS``
    (once per sequence, ``panels.pack``), else a C-contiguous copy; either way a fresh array
    on a 64-byte boundary (``memory.empty_aligned``: a misaligned weight made every step of
    the LSTM B=1 H=128 forward 1.6x slower)."""
    if product == PANELS:
        return pack(M)
    out = empty_aligned(M.shape, M.dtype)
    copy_matrix(M, out)
    return out


@njit(**KERNEL_OPTIONS)
def matmul_tile(A, M, C, r0, r1, c0, c1, product, descending):
    """``C[r, c0:c1] += A[r] @ M[:, c0:c1]`` for rows ``r0 <= r < r1``: one tile of the product.

    The tile is what one thread computes when the threads split the output columns
    (the hidden units) between them instead of the rows (``bptt.plan_tiles``).
    ``M`` is ``operand(M, product)``: for ``PANELS`` the packed panels, a 3-D array
    (``K`` is read off it), else the matrix; ``product`` then says ``LOOPS`` or ``BLAS``
    (a bool: loops or BLAS).  ``descending`` (0 or 1): the panels are read in reverse
    (``panels.py``: a recurrence passes its step's parity, so that each step starts on the
    part of ``M`` the step before left in the L1 cache); the other paths ignore it.
    """
    rows, cols = r1 - r0, c1 - c0
    if rows <= 0 or cols <= 0:
        return
    if M.ndim == 3:         # a constant when compiled: the other paths are not compiled (module docstring)
        matmul_panels(A, M, C, r0, r1, c0, c1, descending)
        return
    K = M.shape[0]
    if product:
        lda, ldm, ldc = _leading_dim(A), _leading_dim(M), _leading_dim(C)
        a_ptr, m_ptr, c_ptr = _row_ptr(A, r0), M.ctypes.data, _row_ptr(C, r0)
        width = blas_panel_width(rows, K, cols)
        for j in range(c0, c1, width):
            n = width if width < c1 - j else c1 - j
            off = j * C.itemsize
            if C.itemsize == 4:
                _sgemm(_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_NO_TRANS, rows, n, K,
                       np.float32(1.0), a_ptr, lda, m_ptr + off, ldm, np.float32(1.0), c_ptr + off, ldc)
            else:
                _dgemm(_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_NO_TRANS, rows, n, K,
                       1.0, a_ptr, lda, m_ptr + off, ldm, 1.0, c_ptr + off, ldc)
        return
    # loops: where BLAS does, only tiny products come here (``bptt.BLAS_MIN_MACS``), but
    # without a usable BLAS (NumPy on Accelerate) every product with few rows does.  One row
    # of M per pass: the four-rows-per-pass form this replaced ran as fast and made every
    # cell kernel's cold compile ~0.15 s longer (GRU reset-before forward 2.0 -> 1.85 s)
    for r in range(r0, r1):
        c = C[r, c0:c1]                  # views: a loop over them compiles to SIMD code
        a = A[r]
        for k in range(K):
            ak = a[k]
            m = M[k, c0:c1]
            for n in range(cols):
                c[n] += ak * m[n]


def add_product_rows(X, W, out, r0, r1):
    """``out[r] += X[r] @ W^T`` for rows ``r0 <= r < r1``: one BLAS GEMM with ``beta = 1``.

    ``X (R, D)``, ``W (G, D)``, ``out (R, G)``: C-contiguous, one dtype (float32 or float64);
    needs ``HAVE_BLAS``.  ``bptt.input_projection`` wrote the bias into ``out`` first and added
    the product into it through this (one write pass instead of a read-and-write pass after
    the product) until its blocks went through the panels (:func:`project_block`);
    ``benchmarks/input_bias.py`` still times this form.  Called from Python through ctypes,
    which lets go of the GIL for the call, so threads run their rows at the same time (and
    nothing here needs compiling).
    """
    rows, D, G = r1 - r0, X.shape[1], W.shape[0]
    if rows <= 0:
        return
    fn, scalar = _ctypes_gemm[out.dtype.char]
    fn(_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS, rows, G, D, scalar(1.0),
       X.ctypes.data + r0 * X.strides[0], D, W.ctypes.data, D, scalar(1.0),
       out.ctypes.data + r0 * out.strides[0], G)


#: multiply-adds from which :func:`add_sum_of_products` adds through ``beta = 1`` rather than
#: NumPy's ``matmul`` and an add: a ctypes call with its 14 converted arguments costs ~5 µs
#: (measured: 128 × 128 × 32 in 15 µs through ctypes, 10 µs through ``matmul``)
CTYPES_MIN_MACS = 1 << 20


#: elements of an outer product (:func:`transposed_product` with one row) from which it goes to
#: BLAS rather than to NumPy's ``multiply``: a ctypes call costs ~8 µs whatever the size
#: (measured, float32, one core: 128 × 128 in 6.5 µs by ``multiply``, 8.8 through BLAS; 512 ×
#: 128 in 20.5 against 11.4; NumPy's ``matmul`` 19 and 74)
OUTER_BLAS_MIN_SIZE = 1 << 15


def transposed_product(A, X, out=None):
    """``Aᵀ X`` for ``A (R, G)``, ``X (R, K)`` -> ``(G, K)`` (into ``out`` if given).

    Through NumPy's ``matmul``, but for ``R = 1`` (an outer product, as the weight gradient
    of a single step at batch size 1 is): ``matmul`` computes a product whose shared
    dimension is 1 without BLAS, in a plain loop (512 × 1 by 1 × 128: 74-113 µs, where 512 ×
    2 by 2 × 128 took 6 µs).  That one goes to ``multiply``, or from
    :data:`OUTER_BLAS_MIN_SIZE` elements on to BLAS directly where it can (:func:`_gemm_tn`).
    Each element is a single product either way: the same values (the sign of a zero
    product may differ between the paths).  Shapes that do not fit raise, as ``matmul`` does.
    """
    if A.ndim != 2 or X.ndim != 2 or A.shape[0] != X.shape[0] or (
            out is not None and out.shape != (A.shape[1], X.shape[1])):
        raise ValueError(f"transposed_product: A {A.shape}, X {X.shape} and out "
                         f"{None if out is None else out.shape} do not fit (A (R, G), X (R, K), out (G, K))")
    if A.shape[0] != 1:
        return np.matmul(A.T, X, out=out)
    if out is None:
        out = np.empty((A.shape[1], X.shape[1]), np.result_type(A.dtype, X.dtype))
    if out.size < OUTER_BLAS_MIN_SIZE or not _gemm_tn(A, X, out, True):
        np.multiply(A[0][:, None], X[0][None, :], out=out)
    return out


def _gemm_tn(A, X, C, first):
    """``C = Aᵀ X`` (``first``) or ``C += Aᵀ X`` as one BLAS GEMM, if BLAS can take the arrays
    as they are (:func:`_tn_fits_blas`); whether it did."""
    add = _blas_blocks(A, X, C)
    if add is not None:
        add(0, A.shape[0], first)
    return add is not None


def _tn_fits_blas(A, X, C):
    """Whether BLAS can compute ``C = Aᵀ X (+ C)`` on the arrays as they are (:func:`_fits_blas`)."""
    return (A.ndim == X.ndim == 2 and A.shape[0] == X.shape[0]
            and _fits_blas(A, X, C, (A.shape[1], X.shape[1])))


def _nn_fits_blas(A, M, C):
    """Whether BLAS can compute ``C = A M`` on the arrays as they are (:func:`_fits_blas`)."""
    return (A.ndim == M.ndim == 2 and A.shape[1] == M.shape[0]
            and _fits_blas(A, M, C, (A.shape[0], M.shape[1])))


def _fits_blas(A, B, C, shape):
    """Whether BLAS can write a product of the 2-D ``A`` and ``B`` into ``C`` of ``shape`` as they
    are: 2-D, one dtype it has, ``A`` and ``B`` rows it can read (:func:`_blas_rows`) and ``C``
    an array it may write (:func:`_blas_may_write`)."""
    return (HAVE_BLAS and C.ndim == 2 and A.dtype == B.dtype == C.dtype and C.dtype.char in _ctypes_gemm
            and C.shape == shape and _blas_rows(A) and _blas_rows(B) and _blas_may_write(C, A, B))


def _blas_may_write(out, *sources):
    """Whether a BLAS routine may write its result straight into ``out``: C-contiguous,
    writeable, not empty, and apart from every array it reads (NumPy's own operations check
    or handle these; a BLAS routine would crash, or overwrite what it has still to read)."""
    return (out.flags.c_contiguous and out.flags.writeable and out.size > 0
            and not any(np.may_share_memory(out, a) for a in sources))


def add_sum_of_products(A, X, C, first):
    """``C = Aᵀ X`` (``first``: through NumPy into ``C``) or ``C += Aᵀ X`` (one BLAS GEMM with
    ``beta = 1``), over the rows of ``A (R, G)`` and ``X (R, K)``, into ``C (G, K)``.

    What a weight gradient ``Σ_t dZ_tᵀ x_t`` needs when it is summed block of steps by block of
    steps (``bptt.weight_gradient`` alongside the loop): each block adds its terms in place,
    without a temporary.  BLAS takes ``A`` and ``X`` with rows of their own in memory, one
    after another (:func:`_blas_rows`: any row stride from the row's length up, as a column
    slice of a wider array has), ``C`` C-contiguous, all of one dtype, float32 or float64.
    Anything else -- a user's input read backwards (``x[::-1]``), broadcast, unaligned or a
    field of a record array, small or empty products, no usable BLAS -- goes through NumPy
    (:func:`transposed_product`) and an add (:data:`CTYPES_MIN_MACS`).
    """
    R, G, K = A.shape[0], A.shape[1], X.shape[1]
    if first:
        transposed_product(A, X, C)
    elif R * G * K < max(CTYPES_MIN_MACS, 1) or not _gemm_tn(A, X, C, False):
        np.add(C, transposed_product(A, X), out=C)


def sum_of_products_by_blocks(A, X, C):
    """``add(r0, r1, first)``: :func:`add_sum_of_products` for the rows ``r0 .. r1-1`` of
    ``A (R, G)`` and ``X (R, K)`` into ``C (G, K)`` (``C = A[r0:r1]ᵀ X[r0:r1]`` with ``first``,
    else ``C += …``), with what a block's BLAS call needs worked out once for all blocks.

    A weight gradient summed alongside the loop adds 10-20 blocks per call
    (``bptt.weight_gradient``).  Through :func:`add_sum_of_products` each block pays its
    checks and a ctypes call with 14 converted arguments, ~9 µs beside the product (measured,
    one core, float32, 128 × 256 × 64: 53 µs against 44 for the bare BLAS call).  Whether BLAS
    can read ``A`` and ``X`` and write ``C`` holds for every block of rows if it holds for the
    whole arrays, so it is asked once, here; a block is then pointer arithmetic and one
    ``?gemm`` (``β = 0`` for the first block, which BLAS does not read ``C`` for, ``β = 1`` for
    the others), ~2 µs beside the product.  That wins at every size, so there is no
    threshold (measured, 256 × 64 with R rows: R=1 2.8 µs against 11.1 through NumPy, R=8
    4.7 against 7.1, R=32 11.4 against 13.8).  Arrays BLAS cannot take go block by block
    through :func:`add_sum_of_products`.  Rows that are not a block of ``0 .. R-1`` raise
    ``ValueError`` (a BLAS call would read outside the arrays).
    """
    add = _blas_blocks(A, X, C)
    if add is not None:
        return add
    R = A.shape[0]

    def add_through_numpy(r0, r1, first):
        _check_block(r0, r1, R)
        add_sum_of_products(A[r0:r1], X[r0:r1], C, first)
    return add_through_numpy


def _blas_blocks(A, X, C):
    """``add(r0, r1, first)``, one ``?gemm`` call for ``C = A[r0:r1]ᵀ X[r0:r1]`` (``first``:
    ``β = 0``, BLAS does not read ``C``) or ``C += …`` (``β = 1``), with the call's arguments
    worked out once; ``None`` where BLAS cannot take the whole arrays (:func:`_tn_fits_blas`:
    then it can take no block of their rows either)."""
    if not _tn_fits_blas(A, X, C):
        return None
    R, G, K = A.shape[0], A.shape[1], X.shape[1]
    fn, scalar = _ctypes_gemm[C.dtype.char]
    zero, one, lda, ldx = scalar(0.0), scalar(1.0), _row_stride(A), _row_stride(X)
    a, x, c, a_row, x_row = A.ctypes.data, X.ctypes.data, C.ctypes.data, A.strides[0], X.strides[0]

    def add(r0, r1, first):
        _check_block(r0, r1, R)
        fn(_CBLAS_ROW_MAJOR, _CBLAS_TRANS, _CBLAS_NO_TRANS, G, K, r1 - r0, one,
           a + r0 * a_row, lda, x + r0 * x_row, ldx, zero if first else one, c, K)
    add.arrays = (A, X, C)                     # BLAS reads them by address: alive as long as add is
    return add


# A product that compiled code computes block of rows by block of rows, with no Python between the
# blocks (``bptt._gradients_alongside``): one row of int64, what its ?gemm calls need::
#
#     kind  P  Q  a  lda  b  ldb  c  ldc  itemsize        (addresses in bytes, leading dimensions in elements)
#
#     SUM_OF_PRODUCTS   C (P, Q)  =  Σ_r A[r]ᵀ B[r]     a block of rows r0 .. r1-1 adds its terms
#                       (the first block stores them: β = 0), A (R, P), B (R, Q)
#     PRODUCT_ROWS      C[r]  =  A[r] B  for r0 ≤ r < r1,  A (R, P), B (P, Q), C (R, Q)
SUM_OF_PRODUCTS, PRODUCT_ROWS = 0, 1
_KIND, _P, _Q, _A, _LDA, _B, _LDB, _C, _LDC, _ITEMSIZE = range(10)
BLOCK_PRODUCT_SIZE = _ITEMSIZE + 1


def block_product(kind, A, Bm, C):
    """The row of int64 that :func:`run_block` takes for the product ``kind`` of ``A``, ``Bm`` and
    ``C`` (2-D arrays, shapes as above), or ``None`` where BLAS cannot take them as they are:
    no usable BLAS, dtypes that differ or that it has not, rows it cannot read
    (:func:`_blas_rows`), a ``C`` it may not write (:func:`_blas_may_write`), shapes that do not
    fit.  The row holds the arrays' addresses, not the arrays: whoever runs it keeps them alive."""
    if not (_tn_fits_blas if kind == SUM_OF_PRODUCTS else _nn_fits_blas)(A, Bm, C):
        return None
    P, Q = A.shape[1], Bm.shape[1]
    return np.array([kind, P, Q, address(A), _row_stride(A), address(Bm), _row_stride(Bm),
                     address(C), _row_stride(C), C.itemsize], np.int64)


@njit(inline="always")
def run_block(product, r0, r1, first):
    """Rows ``r0 .. r1-1`` of a product of :func:`block_product`, one ``?gemm`` (compiled, no GIL):
    a sum's terms stored (``first``) or added, or the block's rows of a product by rows."""
    rows, P, Q = r1 - r0, product[_P], product[_Q]
    lda, ldb, ldc, size = product[_LDA], product[_LDB], product[_LDC], product[_ITEMSIZE]
    a = product[_A] + r0 * lda * size
    if product[_KIND] == SUM_OF_PRODUCTS:   # C (P, Q) (+)= A[r0:r1]ᵀ B[r0:r1]: the rows are the shared dimension
        trans_a, M, N, K, beta = _CBLAS_TRANS, P, Q, rows, 0.0 if first else 1.0
        b, c = product[_B] + r0 * ldb * size, product[_C]
    else:                                    # C[r0:r1] = A[r0:r1] B
        trans_a, M, N, K, beta = _CBLAS_NO_TRANS, rows, Q, P, 0.0
        b, c = product[_B], product[_C] + r0 * ldc * size
    if size == 4:
        _sgemm(_CBLAS_ROW_MAJOR, trans_a, _CBLAS_NO_TRANS, M, N, K, np.float32(1.0), a, lda,
               b, ldb, np.float32(beta), c, ldc)
    else:
        _dgemm(_CBLAS_ROW_MAJOR, trans_a, _CBLAS_NO_TRANS, M, N, K, 1.0, a, lda, b, ldb, beta, c, ldc)


def _check_block(r0, r1, R):
    """Refuse rows that are not a block of ``0 .. R-1`` (a BLAS call would read outside the arrays)."""
    if not 0 <= r0 < r1 <= R:
        raise ValueError(f"rows {r0} .. {r1 - 1} are not a block of the {R} rows")


def _blas_rows(a):
    """Whether BLAS can read the 2-D array ``a`` as rows with a leading dimension: aligned, its
    elements contiguous within a row, and the rows a whole number of elements apart, at least
    a row's length (not reversed, broadcast or overlapping, which NumPy views may be and BLAS
    rejects, nor a field of a packed record, whose rows are an odd number of bytes apart and
    which BLAS would read at the wrong places).  (NumPy's ``aligned`` covers the strides too
    where a type's alignment is its size, as for floats on x86-64; the modulo says it anywhere.)"""
    rows_apart = a.strides[0] >= a.shape[1] * a.itemsize and a.strides[0] % a.itemsize == 0
    return a.flags.aligned and a.strides[1] == a.itemsize and (a.shape[0] <= 1 or rows_apart)


def _ctypes_gemms():
    """``{"f": (sgemm, c_float), "d": (dgemm, c_double)}`` through ctypes, or ``{}`` without BLAS."""
    if not HAVE_BLAS:
        return {}
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    out = {}
    for char, dt, scalar in (("f", "s", ctypes.c_float), ("d", "d", ctypes.c_double)):
        fn = ctypes.CFUNCTYPE(None, i32, i32, i32, i64, i64, i64, scalar, ptr, i64, ptr, i64,
                              scalar, ptr, i64)(_found[1][dt])
        out[char] = (fn, scalar)
    return out


_ctypes_gemm = _ctypes_gemms()

_OMATCOPY_NAMES = ("scipy_cblas_somatcopy64_", "cblas_somatcopy64_")   # OpenBLAS's extension, ILP64


def _ctypes_somatcopy():
    """OpenBLAS's scaled float32 copy with an optional transpose, ``B = alpha · op(A)``, through
    ctypes; ``None`` where it is missing."""
    if not HAVE_BLAS:
        return None
    for name in _OMATCOPY_NAMES:
        fn = getattr(_found[0], name, None)
        if fn is not None:
            i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
            fn.argtypes, fn.restype = [i32, i32, i64, i64, ctypes.c_float, ptr, i64, ptr, i64], None
            return fn
    return None


_somatcopy = _ctypes_somatcopy()

#: elements from which :func:`copy_matrix` transposes through ``somatcopy``: the smallest size
#: measured to gain (one core, ``somatcopy`` vs NumPy: 64 × 192 in 5.3 vs 7.9 µs; 48 × 192 in
#: 4.7 vs 3.2 µs, 32 × 128 in 4.3 vs 1.6 µs)
OMATCOPY_MIN_SIZE = 64 * 192


def copy_matrix(M, out):
    """``out[...] = M`` for a 2-D ``M`` and a C-contiguous ``out`` of its shape and dtype.

    Where ``M`` is a float32 transpose of a C-contiguous array (``W_hh.T``, the forward loops'
    operand) of at least :data:`OMATCOPY_MIN_SIZE` elements, the copy goes through OpenBLAS's
    ``somatcopy`` with ``alpha = 1``: exact for every value but a signalling NaN, which comes
    out quiet (``somatcopy`` multiplies by ``alpha``).  NumPy's strided copy walks ``out`` row by row
    and so reads the original array down its columns.  Measured, one core, NumPy vs
    ``somatcopy``: 128 × 512 in 39 vs 16 µs, 256 × 1024 in 302 vs 65 µs, 512 × 2048 in 3.7 vs
    0.34 ms.  (This OpenBLAS's ``domatcopy`` lost to NumPy at 128 × 512, 137 vs 57 µs: float64
    keeps NumPy's copy.)  Everything else goes through NumPy's assignment, which also keeps
    its checks: a read-only ``out``, or ``out`` overlapping ``M`` (``somatcopy`` would write
    over what it has still to read), and empty arrays (for which OpenBLAS reports an error).
    """
    base = M.T
    if (_somatcopy is None or M.ndim != 2 or M.dtype != np.float32 or out.dtype != np.float32
            or M.size < OMATCOPY_MIN_SIZE or not base.flags.c_contiguous or out.shape != M.shape
            or not _blas_may_write(out, M)):
        out[...] = M
        return
    rows, cols = base.shape                     # base (rows, cols), row-major; out = baseᵀ (cols, rows)
    _somatcopy(_CBLAS_ROW_MAJOR, _CBLAS_TRANS, rows, cols, 1.0, base.ctypes.data, cols,
               out.ctypes.data, rows)


# Gate blocks: a cell with G gates keeps rows of G·H values, [gate 0 | gate 1 | ...], and a
# tile owns units j0 .. j1-1 of each block (the row helpers over them: units.py).
@njit(inline="always", **KERNEL_OPTIONS)
def matmul_gates(A, M, C, r0, r1, j0, j1, H, q0, q1, product, descending):
    """``C[r, q·H + j] += (A[r] @ M)[q·H + j]`` for units ``j0 <= j < j1`` of gate blocks
    ``q0 <= q < q1`` (each ``H`` wide): one product when the tile holds every unit, one per
    gate block otherwise; ``descending`` as in :func:`matmul_tile`."""
    whole = j0 == 0 and j1 == H
    span = (q1 - q0) * H if whole else j1 - j0          # columns per product
    for q in range(q0, q0 + 1 if whole else q1):
        c0 = q * H + j0
        # one call site: every extra call of matmul_tile costs its own compilation
        matmul_tile(A, M, C, r0, r1, c0, c0 + span, product, descending)

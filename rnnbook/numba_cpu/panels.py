r"""A register-blocked product against a weight matrix packed once per sequence.

The recurrent product of one step is a few batch rows times a fixed weight matrix::

    C[r, c0:c1] += A[r, :] @ M[:, c0:c1]        A (B, K)   M (K, N)   C (B, N)

and the same ``M`` (``W_hh^T`` forward, ``W_hh`` backward) is used at every one of the
``T`` steps.  A general GEMM does not know that: above its small-matrix limit
OpenBLAS copies ("packs") ``M`` into its own layout on *every* call, and with only
``B`` rows there is little work to pay for that copy.  Here ``M`` is packed once
per sequence (:func:`pack`), into column *panels* of ``NR`` columns, each panel
stored ``k``-major so that the ``NR`` values a step needs next are contiguous::

    P[p, k·NR + n] = M[k, p·NR + n]        P (ceil(N / NR), K·NR), zero past column N

and every step runs one small kernel per (panel, block of ``MR`` rows):
``MR × NR`` sums held in vector registers for the whole loop over ``k``::

    acc[i, :] = 0                                   MR × NR  (MR·NR / LANES registers)
    for k in 0 .. K-1:
        m = P[p, k·NR : k·NR + NR]                  NR/LANES vector loads
        acc[i, :] += A[r+i, k] · m   for each i     one broadcast + NR/LANES FMAs per row
    C[r+i, p·NR + n] += acc[i, n]   for the rows and columns inside the tile (masked)

Per ``k`` that is ``MR·NR/LANES`` fused multiply-adds against ``NR/LANES + MR``
loads, and the sums never leave the registers until the end.  A plain loop over
``C``'s row (``gemm.matmul_tile``'s ``loops`` path) loads and stores ``C`` every few
multiply-adds instead.

The kernel is written directly in LLVM IR (a Numba ``@intrinsic``), with explicit
vector types, because LLVM's loop vectoriser does not keep a 2-D block of sums in
registers by itself.  The vector is the host's widest: ``LANES`` = 16 float32 or 8
float64 with AVX-512 (32 registers: ``MR = 8`` rows × 2 vectors = 16 sums), else
8 / 4 (16 registers: ``MR = 6``).  Measured on the development machine (one core,
float32, 10^8 FLOP per shape, against NumPy's OpenBLAS called the way
``gemm.matmul_tile`` calls it): 16 × 1024 × 256 at 134-144 GFLOP/s against 74,
16 × 256 × 1024 at 114-127 against 74-138, 8 × 128 × 512 at 95-134 against
104-162 (OpenBLAS's small-matrix kernel, no packing, wins the smallest products).

Rows past the block's last (``B`` not a multiple of ``MR``) repeat the last row
(their sums are computed and dropped); columns outside ``[c0, c1)`` are masked, so
a thread that owns only some hidden units never writes another thread's columns.
"""
import os

import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic


def _host_features() -> str:
    return config.CPU_FEATURES or _llvm.get_host_cpu_features().flatten()


_WIDE = "+avx512f" in _host_features().split(",")
#: bytes in one vector register of the host (``RNNBOOK_VECTOR_BYTES=32`` forces the AVX2 shape,
#: for tests on an AVX-512 machine)
VECTOR_BYTES = int(os.environ.get("RNNBOOK_VECTOR_BYTES", 64 if _WIDE else 32))
if VECTOR_BYTES not in (16, 32, 64):
    raise ValueError(f"RNNBOOK_VECTOR_BYTES must be 16, 32 or 64, got {VECTOR_BYTES}")
_WIDE = VECTOR_BYTES == 64
#: rows per kernel call (MR) and vectors per row (NR = VECTORS · lanes)
ROWS = 8 if _WIDE else 6
VECTORS = 2


def panel_width(dtype) -> int:
    """``NR``: columns per panel for ``dtype`` (two vectors of the host's widest)."""
    return VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


def pack(M):
    """``M (K, N)`` -> ``P (ceil(N / NR), K·NR)``: column panels, each ``k``-major, zero-padded."""
    K, N = M.shape
    nr = panel_width(M.dtype)
    n_panels = -(-N // nr)
    padded = np.zeros((K, n_panels * nr), M.dtype)
    padded[:, :N] = M
    return np.ascontiguousarray(padded.reshape(K, n_panels, nr).transpose(1, 0, 2)).reshape(n_panels, K * nr)


# ------------------------------------------------------------------------------------ the kernel
def _vector(builder, value, vty):
    """``value`` in every lane of ``vty`` (a broadcast)."""
    lanes = vty.count
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


def _emit_block(builder, a, lda, rows, p, K, c, ldc, first, last, bits):
    """IR of one ``ROWS × NR`` block (see the module docstring); ``K >= 1``.

    ``a``, ``p``, ``c``: addresses of ``A[r, 0]``, ``P[panel, 0]``, ``C[r, panel·NR]``;
    ``lda``, ``ldc`` in elements; ``rows`` valid rows (1 .. ROWS); columns
    ``first <= n < last`` of the panel are added into ``C``.
    """
    i64, i32 = ir.IntType(64), ir.IntType(32)
    fty = ir.FloatType() if bits == 32 else ir.DoubleType()
    size = bits // 8
    lanes = VECTOR_BYTES // size
    vty = ir.VectorType(fty, lanes)
    mty = ir.VectorType(ir.IntType(1), lanes)
    nr = VECTORS * lanes
    suffix = f"v{lanes}f{bits}"
    module = builder.module
    fma = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty] * 3), f"llvm.fmuladd.{suffix}")
    load = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
                                          f"llvm.masked.load.{suffix}.p0")
    store = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]),
                                           f"llvm.masked.store.{suffix}.p0")
    align = ir.Constant(i32, size)
    ptr = fty.as_pointer()
    a_rows = []                                       # row i reads A[min(i, rows-1)]: always valid memory
    last_row = builder.sub(rows, ir.Constant(i64, 1))
    for i in range(ROWS):
        row = builder.select(builder.icmp_signed("<", ir.Constant(i64, i), rows), ir.Constant(i64, i), last_row)
        a_rows.append(builder.inttoptr(builder.add(a, builder.mul(row, builder.mul(lda, ir.Constant(i64, size)))), ptr))
    p_base = builder.inttoptr(p, ptr)

    entry = builder.block
    loop = builder.append_basic_block("panel.k")
    done = builder.append_basic_block("panel.done")
    builder.branch(loop)
    builder.position_at_end(loop)
    k = builder.phi(i64)
    k.add_incoming(ir.Constant(i64, 0), entry)
    zero = ir.Constant(vty, [0.0] * lanes)
    acc = [[builder.phi(vty) for _ in range(VECTORS)] for _ in range(ROWS)]
    for row in acc:
        for phi in row:
            phi.add_incoming(zero, entry)
    p_k = builder.gep(p_base, [builder.mul(k, ir.Constant(i64, nr))])
    m = [builder.load(builder.bitcast(builder.gep(p_k, [ir.Constant(i64, v * lanes)]), vty.as_pointer()), align=size)
         for v in range(VECTORS)]                                          # m = P[p, k·NR : k·NR + NR]
    new = []
    for i in range(ROWS):
        a_ik = _vector(builder, builder.load(builder.gep(a_rows[i], [k])), vty)   # broadcast A[r+i, k]
        new.append([builder.call(fma, [a_ik, m[v], acc[i][v]]) for v in range(VECTORS)])  # acc += A[r+i, k] · m
    k_next = builder.add(k, ir.Constant(i64, 1))
    k.add_incoming(k_next, loop)
    for i in range(ROWS):
        for v in range(VECTORS):
            acc[i][v].add_incoming(new[i][v], loop)
    builder.cbranch(builder.icmp_signed("<", k_next, K), loop, done)

    builder.position_at_end(done)                                          # C[r+i, cols] += acc[i, cols]
    c_base = builder.inttoptr(c, ptr)
    lane = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
    first_v, last_v = _vector(builder, first, ir.VectorType(i64, lanes)), _vector(builder, last, ir.VectorType(i64, lanes))
    for v in range(VECTORS):
        col = builder.add(lane, ir.Constant(ir.VectorType(i64, lanes), [v * lanes] * lanes))
        cols = builder.and_(builder.icmp_signed(">=", col, first_v), builder.icmp_signed("<", col, last_v))
        for i in range(ROWS):
            inside = _vector(builder, builder.icmp_signed("<", ir.Constant(i64, i), rows), mty)
            mask = builder.and_(cols, inside)
            at = builder.gep(c_base, [builder.add(builder.mul(ir.Constant(i64, i), ldc), ir.Constant(i64, v * lanes))])
            at = builder.bitcast(at, vty.as_pointer())
            old = builder.call(load, [at, align, mask, zero])
            builder.call(store, [builder.fadd(old, new[i][v]), at, align, mask])


@intrinsic
def _block(typingctx, a, lda, rows, p, K, c, ldc, first, last, like):
    """``C[r+i, panel·NR + n] += Σ_k A[r+i, k] · P[panel, k·NR + n]`` for one block (compiled;
    arguments as in :func:`_emit_block`, ``like`` an array of the element type)."""
    if not isinstance(like, types.Array) or like.dtype not in (types.float32, types.float64):
        return None
    bits = like.dtype.bitwidth
    sig = types.void(types.uintp, types.intp, types.intp, types.uintp, types.intp, types.uintp,
                     types.intp, types.intp, types.intp, like)

    def codegen(context, builder, signature, args):
        a_, lda_, rows_, p_, K_, c_, ldc_, first_, last_, _ = args
        _emit_block(builder, a_, lda_, rows_, p_, K_, c_, ldc_, first_, last_, bits)
        return context.get_dummy_value()
    return sig, codegen


@njit(inline="always")
def _address(a, r):
    """Address of ``a[r, 0]``; rows contiguous, any row stride."""
    return a.ctypes.data + r * a.strides[0]


@njit(inline="always")
def _row_stride(a):
    """Elements from one row to the next (a single row may carry any stride: use its length)."""
    return a.strides[0] // a.itemsize if a.shape[0] > 1 else max(a.shape[1], 1)


@njit(inline="always")
def matmul_panels(A, P, C, r0, r1, c0, c1):
    """``C[r, c0:c1] += A[r, :K] @ M[:, c0:c1]`` for rows ``r0 <= r < r1``, with ``P = pack(M)``.

    ``K`` is read off ``P``; ``A`` may have more columns (only the first ``K`` are used).
    Panels outer, row blocks inner: one panel (``K·NR`` numbers) stays in cache while
    every block of rows passes over it.
    """
    nr = VECTORS * VECTOR_BYTES // C.itemsize
    K = P.shape[1] // nr
    if K == 0 or r1 <= r0 or c1 <= c0:
        return
    lda, ldc = _row_stride(A), _row_stride(C)
    for panel in range(c0 // nr, (c1 + nr - 1) // nr):
        base = panel * nr
        first, last = max(c0 - base, 0), min(c1 - base, nr)
        p = _address(P, panel)
        for r in range(r0, r1, ROWS):
            _block(_address(A, r), lda, min(ROWS, r1 - r), p, K, _address(C, r) + base * C.itemsize, ldc,
                   first, last, C)

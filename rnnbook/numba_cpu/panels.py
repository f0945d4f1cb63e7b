r"""A register-blocked product against a weight matrix packed once per sequence.

The recurrent product of one step is a few batch rows times a fixed weight matrix::

    C[r, c0:c1] += A[r, :] @ M[:, c0:c1]        A (B, K)   M (K, N)   C (B, N)

and the same ``M`` (``W_hh^T`` forward, ``W_hh`` backward) is used at every one of the
``T`` steps.  A general GEMM does not know that: above its small-matrix limit
OpenBLAS copies ("packs") ``M`` into its own layout on *every* call, and with only
``B`` rows there is little work to pay for that copy.  Here ``M`` is packed once
per sequence (:func:`pack`), into column *panels* of ``NR`` columns, each panel
stored ``k``-major so that the ``NR`` values a step needs next are contiguous::

    P[p, k, n] = M[k, p·NR + n]        P (ceil(N / NR), K, NR), zero past column N

and every step runs one small kernel per (panel, block of ``ROWS`` rows):
``ROWS × NR`` sums held in vector registers for the whole loop over ``k``::

    acc[i, :] = 0                                   ROWS × NR  (ROWS·NR / lanes registers)
    for k in 0 .. K-1:
        m = P[p, k, :]                              NR/lanes vector loads
        acc[i, :] += A[r+i, k] · m   for each i     one broadcast + NR/lanes FMAs per row
    C[r+i, p·NR + n] += acc[i, n]   for the rows and columns inside the tile (masked)

Per ``k`` that is ``ROWS·NR/lanes`` fused multiply-adds against ``NR/lanes + ROWS``
loads, and the sums never leave the registers until the end.  A plain loop over
``C``'s row (``gemm.matmul_tile``'s ``loops`` path) loads and stores ``C`` every few
multiply-adds instead.

The kernel is written directly in LLVM IR (a Numba ``@intrinsic``), with explicit
vector types, because LLVM's loop vectoriser does not keep a 2-D block of sums in
registers by itself.  The vector is the target's widest (``VECTOR_BYTES``): ``lanes`` =
16 float32 or 8 float64 with AVX-512 (32 registers: ``ROWS = 8`` rows × 2 vectors = 16
sums), 8 / 4 with AVX and 4 / 2 with SSE only (16 registers: ``ROWS = 6``, 12 sums).
The program is written once for all of them: ``llvm.fmuladd`` becomes one FMA
instruction where the CPU has FMA, and a multiply and an add where it does not.
Loading and storing only the tile's columns uses ``llvm.masked.load/store``.

Measured on the development machine (one core, float32, 10^8 FLOP per shape, against
NumPy's OpenBLAS called the way ``gemm.matmul_tile`` calls it): 16 × 1024 × 256 at
134-144 GFLOP/s against 74, 16 × 256 × 1024 at 114-127 against 74-138, 8 × 128 × 512 at
95-134 against 104-162 (OpenBLAS's small-matrix kernel, no packing, wins the smallest
products).

A block of a single row (``B = 1``, or the last row of a batch) runs another kernel
(:func:`_emit_row`): with one row, the ``VECTORS`` sums of the block would each be a chain
of ``K`` dependent multiply-adds, so it splits the loop over ``k`` into :data:`SPLIT_K`
chains and adds them at the end.  ``bptt.plan_tiles`` uses it at ``B = 1`` for products
up to ``bptt.PANEL_ROW_MAX_MACS`` (LSTM and GRU H=32, with ``W_hh`` in L1: 10% off the
training step; LSTM and GRU H=64 and RNN H=128, in L2: 7-11%, read as below).

Every other step runs in reverse (``descending``).  A recurrence reads the same packed
``W_hh`` at every step.  Where it is larger than the L1 cache (32 KB per core on the
development machine; an LSTM at H=64 reads 64 KB per step in float32), reading it in the
same order at every step is the worst case for a least-recently-used cache: each miss
evicts the line that is needed soonest, and every step reads all of it from L2.  Read
every other step backwards -- panels from the last to the first, and in the single-row
kernel ``k`` from the last to the first -- and each step starts on the lines the step
before read last, which are still in L1.  The tile kernels pass the step's parity
(``gemm.matmul_tile``).  The reverse order adds the same products in another order: the
sums differ in rounding only.  Measured on the development machine (B=1, T=1024,
training step, paired in one process, panels over BLAS's matrix-vector product): in
alternating order LSTM H=64 0.92-0.93, GRU H=64 0.91, RNN H=128 0.89; in one order LSTM
H=64 0.98 (``bptt.PANEL_ROW_MAX_MACS``).

Rows past the block's last (``B`` not a multiple of ``ROWS``) repeat the last row
(their sums are computed and dropped); columns outside ``[c0, c1)`` and rows past the
last are masked.  A masked-off lane is never read or written -- not even as a load whose
value is then dropped -- so a block's vectors may run past ``C``'s last column, or past
the end of the array, and a thread that owns only some hidden units never touches
another thread's columns.

Numba caches each compiled cell kernel on disk next to the cell's source file and
notices edits to that file only: after editing this one, delete
``rnnbook/numba_cpu/__pycache__`` so that the cells are compiled again.
"""
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, config
from numba.core.codegen import get_host_cpu_features
from numba.extending import intrinsic

from .memory import empty_aligned


def _target_features() -> set:
    """The CPU features Numba compiles for: ``NUMBA_CPU_FEATURES`` if set, else the host's as
    Numba reads them (``NUMBA_ENABLE_AVX=0`` removes the AVX ones).

    That string is part of the key of Numba's on-disk cache, so a kernel cached for one
    vector width is never loaded where another applies.
    """
    return set((config.CPU_FEATURES or get_host_cpu_features()).split(","))


_FEATURES = _target_features()
#: bytes in one vector register of the target: 64 with AVX-512, 32 with AVX, else 16
VECTOR_BYTES = 64 if "+avx512f" in _FEATURES else 32 if "+avx" in _FEATURES else 16
#: rows per kernel call and vectors per row (NR = VECTORS · lanes columns per panel): 16 sums in
#: registers with AVX-512's 32, 12 with the 16 of AVX/SSE
ROWS = 8 if VECTOR_BYTES == 64 else 6
VECTORS = 2


def panel_width(dtype) -> int:
    """``NR``: columns per panel for ``dtype`` (``VECTORS`` vectors of the target's widest)."""
    return VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize


def pack(M):
    """``M (K, N)`` -> ``P (ceil(N / NR), K, NR)``: column panels, each ``k``-major, zero-padded.

    ``P`` starts on a 64-byte boundary, so with AVX-512 every vector load of a panel is
    aligned (the kernel itself assumes only element alignment).  Three dimensions rather
    than the two of a matrix: ``gemm.matmul_tile`` tells the forms apart by ``ndim``, which
    the compiler knows, so a kernel compiled for panels holds only the panel path and one
    compiled for a matrix only the loop and BLAS paths."""
    K, N = M.shape
    nr = panel_width(M.dtype)
    full, rest = divmod(N, nr)                             # whole panels, columns of a last one
    P = empty_aligned((full + (rest > 0), K, nr), M.dtype)  # starts on a 64-byte boundary
    P[:full] = M[:, :full * nr].reshape(K, full, nr).transpose(1, 0, 2)
    if rest:
        P[full, :, :rest] = M[:, full * nr:]
        P[full, :, rest:] = 0
    return P


# ------------------------------------------------------------------------------------ the kernel
def _vector(builder, value, vty):
    """``value`` in every lane of ``vty`` (a broadcast)."""
    lanes = vty.count
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes))


class _Ops:
    """The IR types and intrinsics both kernels use, for ``bits``-bit floats in the target's
    widest vectors: ``vty`` (``lanes`` of them), its mask type, ``fma``, masked ``load``/``store``."""

    def __init__(self, module, bits):
        i32 = ir.IntType(32)
        self.fty = ir.FloatType() if bits == 32 else ir.DoubleType()
        self.size = bits // 8
        self.lanes = VECTOR_BYTES // self.size
        self.vty = ir.VectorType(self.fty, self.lanes)
        self.mty = ir.VectorType(ir.IntType(1), self.lanes)
        self.nr = VECTORS * self.lanes
        suffix = f"v{self.lanes}f{bits}"
        vty, mty = self.vty, self.mty
        self.fma = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty] * 3), f"llvm.fmuladd.{suffix}")
        self.load = cgutils.get_or_insert_function(module, ir.FunctionType(vty, [vty.as_pointer(), i32, mty, vty]),
                                                   f"llvm.masked.load.{suffix}.p0")
        self.store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), i32, mty]), f"llvm.masked.store.{suffix}.p0")
        self.align = ir.Constant(i32, self.size)
        self.ptr = self.fty.as_pointer()
        self.zero = ir.Constant(vty, [0.0] * self.lanes)

    def columns(self, builder, v, first, end):
        """Mask of the lanes of vector ``v`` of a panel whose column lies in ``[first, end)``."""
        i64 = ir.IntType(64)
        lane = ir.Constant(ir.VectorType(i64, self.lanes), [v * self.lanes + n for n in range(self.lanes)])
        return builder.and_(builder.icmp_signed(">=", lane, _vector(builder, first, ir.VectorType(i64, self.lanes))),
                            builder.icmp_signed("<", lane, _vector(builder, end, ir.VectorType(i64, self.lanes))))

    def panel_at(self, builder, p_base, k):
        """The ``VECTORS`` vectors of ``P[p, k, :]`` (``p_base`` points at ``P[p, 0, 0]``)."""
        i64 = ir.IntType(64)
        p_k = builder.gep(p_base, [builder.mul(k, ir.Constant(i64, self.nr))])
        return [builder.load(builder.bitcast(builder.gep(p_k, [ir.Constant(i64, v * self.lanes)]),
                                             self.vty.as_pointer()), align=self.size)
                for v in range(VECTORS)]

    def sum_loop(self, builder, start, stop, step, sums, body, name):
        """Emit ``for k in range(start, stop, step): sums = body(k, sums)`` with the sums (a list
        of lists of vectors) held in registers (phi nodes), and return their final values.
        The loop runs at least once: the caller makes sure that ``start < stop``."""
        i64 = ir.IntType(64)
        before = builder.block
        loop = builder.append_basic_block(name)
        after = builder.append_basic_block(name + ".end")
        builder.branch(loop)
        builder.position_at_end(loop)
        k = builder.phi(i64)
        k.add_incoming(start, before)
        acc = [[builder.phi(self.vty) for _ in row] for row in sums]
        for phis, values in zip(acc, sums):
            for phi, value in zip(phis, values):
                phi.add_incoming(value, before)
        new = body(k, acc)
        k_next = builder.add(k, ir.Constant(i64, step))
        k.add_incoming(k_next, builder.block)
        for phis, values in zip(acc, new):
            for phi, value in zip(phis, values):
                phi.add_incoming(value, builder.block)
        builder.cbranch(builder.icmp_signed("<", k_next, stop), loop, after)
        builder.position_at_end(after)
        return new

    def add_into(self, builder, at, value, mask):
        """``*at += value`` on the lanes of ``mask`` only (the others are neither read nor written)."""
        at = builder.bitcast(at, self.vty.as_pointer())
        old = builder.call(self.load, [at, self.align, mask, self.zero])
        builder.call(self.store, [builder.fadd(old, value), at, self.align, mask])


def _emit_block(builder, a, lda, rows, p, K, c, ldc, first, end, bits):
    """IR of one ``ROWS × NR`` block (see the module docstring); ``K >= 1``.

    ``a``, ``p``, ``c``: addresses of ``A[r, 0]``, ``P[panel, 0, 0]``, ``C[r, panel·NR]``;
    ``lda``, ``ldc`` in elements; ``rows`` valid rows (1 .. ROWS); columns
    ``first <= n < end`` of the panel are added into ``C``.
    """
    i64 = ir.IntType(64)
    ops = _Ops(builder.module, bits)
    size, lanes, vty, fma, ptr, zero = ops.size, ops.lanes, ops.vty, ops.fma, ops.ptr, ops.zero
    a_rows = []                                       # row i reads A[min(i, rows-1)]: always valid memory
    last_row = builder.sub(rows, ir.Constant(i64, 1))
    for i in range(ROWS):
        row = builder.select(builder.icmp_signed("<", ir.Constant(i64, i), rows), ir.Constant(i64, i), last_row)
        a_rows.append(builder.inttoptr(builder.add(a, builder.mul(row, builder.mul(lda, ir.Constant(i64, size)))), ptr))
    p_base = builder.inttoptr(p, ptr)

    def body(k, acc):
        m = ops.panel_at(builder, p_base, k)                               # m = P[p, k, :]
        new = []
        for i in range(ROWS):
            a_ik = _vector(builder, builder.load(builder.gep(a_rows[i], [k])), vty)   # broadcast A[r+i, k]
            new.append([builder.call(fma, [a_ik, m[v], acc[i][v]]) for v in range(VECTORS)])  # acc += A[r+i, k] · m
        return new
    new = ops.sum_loop(builder, ir.Constant(i64, 0), K, 1, [[zero] * VECTORS for _ in range(ROWS)], body, "panel.k")

    c_base = builder.inttoptr(c, ptr)                                   # C[r+i, cols] += acc[i, cols]
    for v in range(VECTORS):
        cols = ops.columns(builder, v, first, end)
        for i in range(ROWS):
            inside = _vector(builder, builder.icmp_signed("<", ir.Constant(i64, i), rows), ops.mty)
            at = builder.gep(c_base, [builder.add(builder.mul(ir.Constant(i64, i), ldc), ir.Constant(i64, v * lanes))])
            ops.add_into(builder, at, new[i][v], builder.and_(cols, inside))


#: partial sums per vector in the single-row kernel (:func:`_emit_row`): a row's
#: ``VECTORS`` sums alone would be chains of ``K`` dependent multiply-adds
SPLIT_K = 4


def _emit_row(builder, a, p, K, c, first, end, descending, bits):
    """IR of the product for a *single* row against one panel: ``C[r, cols] += A[r, :K] @ panel``,
    over ``k`` from the last down where ``descending`` is non-zero (the module docstring).

    With one row the block of :func:`_emit_block` would hold ``VECTORS`` live sums (the
    other rows are masked copies), each a chain of ``K`` dependent multiply-adds: latency,
    not throughput, would set its speed.  Here ``k`` runs in steps of :data:`SPLIT_K`, each
    of the ``SPLIT_K`` k's adding into sums of its own, which are added together at the end
    (a different order of the same additions: the result differs in rounding only)::

        acc[s, :] += A[r, k+s] · P[p, (k+s)·NR : (k+s)·NR + NR]     s = 0 .. SPLIT_K-1

    The ``k`` of the split loop run 0, 4, 8, ... or, descending, ..., 8, 4, 0; the few ``k``
    past the last multiple of ``SPLIT_K`` run last either way.
    """
    i64 = ir.IntType(64)
    ops = _Ops(builder.module, bits)
    lanes, vty, fma, zero = ops.lanes, ops.vty, ops.fma, ops.zero
    a_base, p_base = builder.inttoptr(a, ops.ptr), builder.inttoptr(p, ops.ptr)

    def step(k, sums):            # sums[v] += A[r, k] · P[p, k, v·lanes ...]
        a_k = _vector(builder, builder.load(builder.gep(a_base, [k])), vty)
        return [builder.call(fma, [a_k, m, acc]) for m, acc in zip(ops.panel_at(builder, p_base, k), sums)]

    entry = builder.block
    split = builder.append_basic_block("row.split")
    rest_test = builder.append_basic_block("row.rest.test")
    rest = builder.append_basic_block("row.rest")
    done = builder.append_basic_block("row.done")
    k_split = builder.sub(K, builder.srem(K, ir.Constant(i64, SPLIT_K)))   # k < k_split in steps of SPLIT_K
    builder.cbranch(builder.icmp_signed(">", k_split, ir.Constant(i64, 0)), split, rest_test)

    builder.position_at_end(split)                                         # the SPLIT_K-way loop
    backwards = builder.icmp_signed("!=", descending, ir.Constant(i64, 0))
    last = builder.sub(k_split, ir.Constant(i64, SPLIT_K))

    def split_step(i, acc):       # the i-th group of SPLIT_K k's, from k = 0 up or from k_split down
        k = builder.select(backwards, builder.sub(last, i), i)
        return [step(builder.add(k, ir.Constant(i64, s)), acc[s]) for s in range(SPLIT_K)]
    new = ops.sum_loop(builder, ir.Constant(i64, 0), k_split, SPLIT_K, [[zero] * VECTORS for _ in range(SPLIT_K)],
                       split_step, "row.split.k")
    total = []                                                             # add the partial sums together
    for v in range(VECTORS):
        t = new[0][v]
        for s in range(1, SPLIT_K):
            t = builder.fadd(t, new[s][v])
        total.append(t)
    split_end = builder.block
    builder.branch(rest_test)

    builder.position_at_end(rest_test)                                     # then k_split <= k < K, one at a time
    start = [builder.phi(vty) for _ in range(VECTORS)]
    for v in range(VECTORS):
        start[v].add_incoming(zero, entry)
        start[v].add_incoming(total[v], split_end)
    builder.cbranch(builder.icmp_signed("<", k_split, K), rest, done)

    builder.position_at_end(rest)
    after = ops.sum_loop(builder, k_split, K, 1, [start], lambda k, acc: [step(k, acc[0])], "row.rest.k")[0]
    rest_end = builder.block
    builder.branch(done)

    builder.position_at_end(done)                                          # C[r, cols] += the sums
    final = [builder.phi(vty) for _ in range(VECTORS)]
    for v in range(VECTORS):
        final[v].add_incoming(start[v], rest_test)
        final[v].add_incoming(after[v], rest_end)
    c_base = builder.inttoptr(c, ops.ptr)
    for v in range(VECTORS):
        ops.add_into(builder, builder.gep(c_base, [ir.Constant(i64, v * lanes)]), final[v], ops.columns(builder, v, first, end))


def _for(builder, start, stop, step, body):
    """Emit ``for i in range(start, stop, step): body(i)`` (``step > 0``, all i64 values)."""
    i64 = ir.IntType(64)
    before = builder.block
    test = builder.append_basic_block("for.test")
    loop = builder.append_basic_block("for.body")
    after = builder.append_basic_block("for.end")
    builder.branch(test)
    builder.position_at_end(test)
    i = builder.phi(i64)
    i.add_incoming(start, before)
    builder.cbranch(builder.icmp_signed("<", i, stop), loop, after)
    builder.position_at_end(loop)
    body(i)
    i.add_incoming(builder.add(i, step), builder.block)
    builder.branch(test)
    builder.position_at_end(after)


def _block_function(module, bits, emit=None):
    """The block kernel (:func:`_emit_block`, or :func:`_emit_row` for a single row) as a
    function of its own in ``module`` (internal, never inlined: a call per block costs
    nothing next to its ``K``-long loop)."""
    kind, n_args = ("row", 7) if emit is _emit_row else ("block", 9)
    name = f"rnnbook_panel_{kind}_f{bits}_x{VECTOR_BYTES}"
    i64 = ir.IntType(64)
    fn = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), [i64] * n_args), name)
    if fn.is_declaration:
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fn.attributes.add("nounwind")
        builder = ir.IRBuilder(fn.append_basic_block("entry"))
        (emit or _emit_block)(builder, *fn.args, bits)
        builder.ret_void()
    return fn


def _emit_panels(context, builder, sig, args):
    """IR of :func:`matmul_panels`: panels outer (from the last down where ``descending``),
    blocks of ``ROWS`` rows inner.

    Written as IR, like the block itself, rather than as a compiled Python loop: typing and
    lowering that loop (addresses, strides, ``min``/``max``) cost 0.3 s of every cold
    compile of a cell kernel, against a few milliseconds for these lines.
    """
    A, P, C, r0, r1, c0, c1, descending = args
    a_ty, p_ty, c_ty = sig.args[:3]
    i64 = ir.IntType(64)
    const = lambda v: ir.Constant(i64, v)                                  # noqa: E731
    A, P, C = (context.make_array(t)(context, builder, v) for t, v in ((a_ty, A), (p_ty, P), (c_ty, C)))
    size = context.get_abi_sizeof(context.get_data_type(c_ty.dtype))
    bits = 8 * size
    nr = VECTORS * VECTOR_BYTES // size
    smin = lambda x, y: builder.select(builder.icmp_signed("<", x, y), x, y)   # noqa: E731
    smax = lambda x, y: builder.select(builder.icmp_signed(">", x, y), x, y)   # noqa: E731

    def row_stride(arr):          # elements between rows; a single row may carry any stride
        rows, cols = cgutils.unpack_tuple(builder, arr.shape, 2)
        stride = builder.sdiv(cgutils.unpack_tuple(builder, arr.strides, 2)[0], const(size))
        return builder.select(builder.icmp_signed(">", rows, const(1)), stride, smax(cols, const(1)))

    def address(arr, row):        # integer address of arr[row, 0] (arr[row, 0, 0] for P)
        base = builder.ptrtoint(arr.data, i64)
        return builder.add(base, builder.mul(row, cgutils.unpack_tuple(builder, arr.strides)[0]))

    K = cgutils.unpack_tuple(builder, P.shape, 3)[1]
    lda, ldc = row_stride(A), row_stride(C)
    block = _block_function(builder.module, bits)
    single = _block_function(builder.module, bits, _emit_row)
    with builder.if_then(builder.icmp_signed(">", K, const(0))):
        first_panel = builder.sdiv(c0, const(nr))
        end_panel = builder.sdiv(builder.add(c1, const(nr - 1)), const(nr))

        backwards = builder.icmp_signed("!=", descending, const(0))
        last_panel = builder.sub(end_panel, const(1))

        def per_panel(i):         # the i-th panel from the first, or its mirror image from the last
            panel = builder.select(backwards, builder.sub(builder.add(first_panel, last_panel), i), i)
            base = builder.mul(panel, const(nr))
            first, end = smax(builder.sub(c0, base), const(0)), smin(builder.sub(c1, base), const(nr))
            p = address(P, panel)

            def per_block(r):
                rows = smin(const(ROWS), builder.sub(r1, r))
                c = builder.add(address(C, r), builder.mul(base, const(size)))
                with builder.if_else(builder.icmp_signed("==", rows, const(1))) as (one_row, more):
                    with one_row:
                        builder.call(single, [address(A, r), p, K, c, first, end, descending])
                    with more:
                        builder.call(block, [address(A, r), lda, rows, p, K, c, ldc, first, end])
            _for(builder, r0, r1, const(ROWS), per_block)
        _for(builder, first_panel, end_panel, const(1), per_panel)


@intrinsic
def matmul_panels(typingctx, A, P, C, r0, r1, c0, c1, descending):
    """``C[r, c0:c1] += A[r, :K] @ M[:, c0:c1]`` for rows ``r0 <= r < r1``, with ``P = pack(M)``
    ``(ceil(N / NR), K, NR)`` (compiled code only; ``gemm.matmul_tile`` calls it), read in
    reverse where ``descending`` is non-zero (the module docstring).

    ``K`` is read off ``P``; ``A`` may have more columns (only the first ``K`` are used).
    Every array's rows must be contiguous; all three of one dtype, float32 or float64.
    Panels outer, blocks of rows inner: one panel (``K·NR`` numbers) stays in cache while
    every block of rows passes over it.
    """
    arrays = (A, P, C)
    if not all(isinstance(t, types.Array) and t.ndim == n for t, n in zip(arrays, (2, 3, 2))):
        return None
    if C.dtype not in (types.float32, types.float64) or any(t.dtype != C.dtype for t in arrays):
        return None

    def codegen(context, builder, sig, args):
        _emit_panels(context, builder, sig, args)
        return context.get_dummy_value()
    return types.void(A, P, C, types.intp, types.intp, types.intp, types.intp, types.intp), codegen

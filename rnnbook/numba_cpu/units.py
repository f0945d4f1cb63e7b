r"""Copies over a tile's hidden units: the small row operations of the tile kernels.

Between their matrix products the kernels move rows of a few hundred numbers: the
error arriving from the output (``dh += dy_t``), a gradient row stored or added into the
sequence's array, a row cleared before the next product adds into it.  A cell with ``G``
gates keeps rows of ``G·H`` values, ``[gate 0 | gate 1 | ...]``, and a tile owns units
``j0 .. j1-1`` of each block::

    put_units(dst, src, j0, j1, n_blocks, accumulate):  dst[q·H + j] (+)= src[q·H + j]
    fill_units(dst, value, j0, j1):                     dst[j] = value
    copy(dst, src), add(dst, src), fill(dst, value):    the same over the whole row

for ``0 <= q < n_blocks`` (``G``, or 1 for a row of ``H``), ``H = len(dst) / n_blocks`` and
``j0 <= j < j1``.  ``dst`` and ``src`` are contiguous 1-D rows of
one dtype (float32 or float64).

**Why they are written in LLVM IR.**  As compiled Python loops (``@njit(inline="always")``)
each call site cost its own copy of the loop: Numba inlined, typed and lowered it anew,
and LLVM vectorised it anew, with its overlap checks and its scalar remainder.  A kernel
with nine such sites (the LSTM backward) spent about 0.6 s of its 1.7 s first-call
compile on them.  Here every site is one call of a function that is emitted once per
compiled module (:func:`_units_function`: internal, never inlined), whose loop steps one
vector at a time and masks the last one (``llvm.masked.load/store``: the lanes past ``j1``
are neither read nor written).  Measured on the development VM, paired in one process
(``python benchmarks/compile_paired.py cea9604 --path panels`` and ``--path loops``, 3
processes each), first-call compile new/old: backward kernels RNN 0.65/0.74, LSTM
0.65/0.65, GRU 0.72/0.76 (float64) and 0.74/0.76 (reset-before form); forward kernels
0.92-1.04; the LSTM with peepholes 0.70, SCRN 0.70, leaky 0.79 (backward).  A call costs a
few nanoseconds more than inlined code; the training step did not get slower (B=1 T=1024,
``benchmarks/step_paired.py``, 30-80 rounds: LSTM H=32/64/128 1.012/0.979/0.985, RNN
0.94-0.97, GRU 0.86-0.93 -- its forward kernel's bias row over three gate blocks is faster
this way; B=8 T=256, H=128/256: 0.96-0.99).  Let inline (``alwaysinline``), the kernels
compiled 4-7% slower and ran no faster.

The store (rather than ``+=`` into zeros) matters where the kernels first write a fresh
``(T, B, G·H)`` array: reading fresh pages before writing them costs two page faults per
page (map the zero page, then copy it) where a store costs one -- at B=32, H=64 those
faults cost more than the step's product.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .panels import VECTOR_BYTES, _for, _Ops, _vector

#: what :func:`_units_function` does at each element: store, add, or fill with a value
STORE, ADD, FILL = 0, 1, 2


def _units_function(module, bits):
    """``rnnbook_units_f{bits}(dst, src, value, H, G, j0, j1, mode)`` in ``module`` (emitted on
    first use, internal, never inlined); ``dst``, ``src``: addresses (``src`` unused by ``FILL``)::

        for q in 0 .. G-1:
            for j in j0, j0 + lanes, ... < j1:           one vector, masked to the lanes < j1
                dst[q·H + j ...] = src[...]  |  += src[...]  |  = value      (mode)
    """
    i64 = ir.IntType(64)
    ops = _Ops(module, bits)
    fn = cgutils.get_or_insert_function(module, ir.FunctionType(ir.VoidType(), [i64, i64, ops.fty] + [i64] * 5),
                                        f"rnnbook_units_f{bits}_x{VECTOR_BYTES}")
    if not fn.is_declaration:
        return fn
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    fn.attributes.add("nounwind")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    dst, src, value, H, G, j0, j1, mode = fn.args
    const = lambda v: ir.Constant(i64, v)                                  # noqa: E731
    lanes, vptr = ops.lanes, ops.vty.as_pointer()
    dst, src = builder.inttoptr(dst, ops.ptr), builder.inttoptr(src, ops.ptr)
    lane = ir.Constant(ir.VectorType(i64, lanes), list(range(lanes)))
    filled = _vector(builder, value, ops.vty)

    def per_block(q):
        def per_vector(j):
            i = builder.add(builder.mul(q, H), j)
            mask = builder.icmp_signed("<", lane, _vector(builder, builder.sub(j1, j), lane.type))   # lanes j .. j1-1
            to, frm = builder.bitcast(builder.gep(dst, [i]), vptr), builder.bitcast(builder.gep(src, [i]), vptr)
            with builder.if_else(builder.icmp_signed("==", mode, const(FILL))) as (fill, move):
                with fill:
                    builder.call(ops.store, [filled, to, ops.align, mask])
                with move:
                    v = builder.call(ops.load, [frm, ops.align, mask, ops.zero])
                    with builder.if_else(builder.icmp_signed("==", mode, const(ADD))) as (add, store):
                        with add:
                            ops.add_into(builder, to, v, mask)
                        with store:
                            builder.call(ops.store, [v, to, ops.align, mask])
        _for(builder, j0, j1, const(lanes), per_vector)
    _for(builder, const(0), G, const(1), per_block)
    builder.ret_void()
    return fn


def _row(t, mutable=False):
    """Whether ``t`` types a row these helpers take: a contiguous 1-D float32/float64 array."""
    return (isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C"
            and t.dtype in (types.float32, types.float64) and (t.mutable or not mutable))


def _emit(context, builder, sig, args, src=None, value=None, j0=None, j1=None, G=None, mode=STORE):
    """Lower one call: ``args[0]`` is ``dst``; the others are ``(type, value)`` pairs or ``None``
    (``src``: no source; ``value``: 0; ``j0``/``j1``: the whole row; ``G``: 1); ``mode``: an
    ``int`` or an i64 value."""
    i64 = ir.IntType(64)
    dst_ty = sig.args[0]
    row = context.make_array(dst_ty)(context, builder, args[0])
    size = context.get_abi_sizeof(context.get_data_type(dst_ty.dtype))
    to_int = lambda pair: context.cast(builder, pair[1], pair[0], types.intp)   # noqa: E731
    n = cgutils.unpack_tuple(builder, row.shape, 1)[0]
    G = to_int(G) if G else ir.Constant(i64, 1)
    H = builder.sdiv(n, G)
    j0 = to_int(j0) if j0 else ir.Constant(i64, 0)
    j1 = to_int(j1) if j1 else H
    src = (builder.ptrtoint(context.make_array(src[0])(context, builder, src[1]).data, i64) if src
           else ir.Constant(i64, 0))
    value = (context.cast(builder, value[1], value[0], dst_ty.dtype) if value
             else context.get_constant(dst_ty.dtype, 0))
    mode = ir.Constant(i64, mode) if isinstance(mode, int) else mode
    fn = _units_function(builder.module, 8 * size)
    builder.call(fn, [builder.ptrtoint(row.data, i64), src, value, H, G, j0, j1, mode])
    return context.get_dummy_value()


@intrinsic
def put_units(typingctx, dst, src, j0, j1, n_blocks, accumulate):
    """``dst[q·H + j] = src[q·H + j]`` (or ``+=`` where ``accumulate`` is true) for units
    ``j0 <= j < j1`` of each of ``n_blocks`` blocks of ``H = len(dst) / n_blocks``
    (compiled code only)."""
    if not _rows_of_one_dtype(dst, src):
        return None

    def codegen(context, builder, sig, args):
        on = builder.icmp_signed("!=", context.cast(builder, args[5], sig.args[5], types.intp),
                                 ir.Constant(ir.IntType(64), 0))
        mode = builder.select(on, ir.Constant(ir.IntType(64), ADD), ir.Constant(ir.IntType(64), STORE))
        pairs = list(zip(sig.args, args))
        return _emit(context, builder, sig, args, src=pairs[1], j0=pairs[2], j1=pairs[3], G=pairs[4], mode=mode)
    return types.void(dst, src, j0, j1, n_blocks, accumulate), codegen


@intrinsic
def fill_units(typingctx, dst, value, j0, j1):
    """``dst[j] = value`` for ``j0 <= j < j1`` (compiled code only)."""
    if not (_row(dst, mutable=True) and isinstance(value, types.Number)):
        return None

    def codegen(context, builder, sig, args):
        pairs = list(zip(sig.args, args))
        return _emit(context, builder, sig, args, value=pairs[1], j0=pairs[2], j1=pairs[3], mode=FILL)
    return types.void(dst, value, j0, j1), codegen


def _rows_of_one_dtype(dst, src):
    """Whether ``dst`` (written) and ``src`` (read) are rows of one dtype (:func:`_row`)."""
    return _row(dst, mutable=True) and _row(src) and src.dtype == dst.dtype


def _whole_row(mode):
    """The lowering of ``copy`` (``STORE``) or ``add`` (``ADD``): ``src`` into all of ``dst``."""
    def codegen(context, builder, sig, args):
        return _emit(context, builder, sig, args, src=(sig.args[1], args[1]), mode=mode)
    return codegen


@intrinsic
def copy(typingctx, dst, src):
    """``dst[j] = src[j]`` for every ``j`` of ``dst`` (compiled code only)."""
    if _rows_of_one_dtype(dst, src):
        return types.void(dst, src), _whole_row(STORE)


@intrinsic
def add(typingctx, dst, src):
    """``dst[j] += src[j]`` for every ``j`` of ``dst`` (compiled code only)."""
    if _rows_of_one_dtype(dst, src):
        return types.void(dst, src), _whole_row(ADD)


@intrinsic
def fill(typingctx, dst, value):
    """``dst[j] = value`` for every ``j`` of ``dst`` (compiled code only)."""
    if not (_row(dst, mutable=True) and isinstance(value, types.Number)):
        return None

    def codegen(context, builder, sig, args):
        return _emit(context, builder, sig, args, value=(sig.args[1], args[1]), mode=FILL)
    return types.void(dst, value), codegen

r"""A step barrier for threads that share one recurrence (compiled code only).

When the threads of a recurrence split the *hidden units* between them (see
``bptt.plan``), step ``t`` of one thread needs what every other thread wrote at
step ``t-1``: the whole ``h_{t-1}`` forward, the whole ``dz_t`` backward.  So after
each step every thread announces how far it has come and waits until all the
others have come as far.  That is a barrier, and on a CPU the cheapest one is a
counter per thread in shared memory::

    flags (n·PAD,) int64       thread k's counter lives at flags[k·PAD]
                               (PAD = 16 int64 = 128 bytes: one cache line pair per
                               thread, so that two counters never share a line)

    arrive_and_wait(flags, me, n, count):
        flags[me·PAD] := count                        (release: my step-t writes are visible first)
        for every thread k: wait until flags[k·PAD] ≥ count   (acquire: then read theirs)

A loop on a single thread (``n = 1``) only announces: nobody waits for it at the barrier,
but a thread computing the gradient products alongside the backward loop reads the count
to know which steps' gate gradients are ready (``bptt.run_tiles``).  The other way round,
a forward loop waits at each step until the inputs ``G[t]`` are ready
(:func:`wait_for_inputs`): a thread alongside it may still be computing the input
projection of later steps.  That count lives in one more slot after the threads'.

``count`` is the number of barriers the thread has passed, so the counters never
need resetting within a call and a fast thread can never be confused by a slow
one's old value.  The store and the loads are *atomic* with release/acquire order:
plain array accesses would let the compiler keep the counter in a register and
spin forever, or move the step's stores after the announcement.

Waiting first spins with the CPU's ``pause`` hint (the partner is normally a
fraction of a microsecond behind) and, after ``SPINS`` rounds, yields the core
(``sched_yield``): on a loaded machine the partner may have been descheduled,
and spinning would only keep it off the core longer.
"""
import platform

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .memory import empty_aligned

#: int64 slots between two threads' counters (128 bytes)
PAD = 16
#: pause-spins before a waiting thread starts yielding its core
SPINS = 2000

_X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
_sched_yield = types.ExternalFunction("sched_yield", types.int32())


#: the count of steps whose inputs are ready when nobody computes them alongside the loop
ALL_READY = 1 << 62


def counters(n):
    """``n`` counters at 0, one every :data:`PAD` slots of an int64 array that starts on a cache
    line (``memory.empty_aligned``) and ends on one, so that no other data shares their lines.
    ``np.zeros`` starts on 16 bytes: the line of its first counter would also hold malloc's
    header and the tail of whatever array came before it, and a thread spinning on the counter
    would pull that line away from any thread writing there.  (No difference was measured on
    the development VM; it makes "lines of their own" true instead of likely.)"""
    out = empty_aligned(n * PAD, np.int64)
    out[:] = 0
    return out


def new_flags(n):
    """Counters for a barrier of ``n`` threads, all at 0, and after them (at ``n·PAD``) the
    count of steps whose inputs ``G[t]`` are ready: :data:`ALL_READY`, unless a thread that
    computes them alongside the loop sets it lower (``bptt.run_tiles``)."""
    flags = counters(n + 1)
    flags[n * PAD] = ALL_READY
    return flags


@njit(inline="always")
def threads_of(flags):
    """How many threads share the barrier of ``flags`` (made by :func:`new_flags`)."""
    return flags.shape[0] // PAD - 1


def _item_pointer(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def load_acquire(typingctx, flags, idx):
    """``flags[idx]`` as an atomic load with acquire order (later reads stay after it)."""
    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, ordering="acquire", align=8)
    return types.int64(flags, idx), codegen


@intrinsic
def store_release(typingctx, flags, idx, value):
    """``flags[idx] = value`` as an atomic store with release order (earlier writes land first)."""
    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, ptr, ordering="release", align=8)
        return context.get_dummy_value()
    return types.void(flags, idx, value), codegen


@intrinsic
def compare_and_swap(typingctx, flags, idx, expected, value):
    """``flags[idx] = value`` if it holds ``expected``, as one atomic step (acquire and release
    order); whether it did.  Two threads claiming the same slot this way: exactly one wins."""
    def codegen(context, builder, sig, args):
        ptr = _item_pointer(context, builder, sig.args[0], args[0], args[1])
        old = context.cast(builder, args[2], sig.args[2], types.int64)
        new = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, old, new, "acq_rel", "acquire")
        return builder.extract_value(pair, 1)
    return types.boolean(flags, idx, expected, value), codegen


@intrinsic
def load_acquire_at(typingctx, address):
    """The int64 at ``address`` (a number, as :func:`address` gives) as an atomic load with
    acquire order: a counter in an array that the compiled code was not handed (``workers``:
    a helper watching the caller's loop).  The caller keeps the array alive."""
    def codegen(context, builder, sig, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load_atomic(ptr, ordering="acquire", align=8)
    return types.int64(types.int64), codegen


@njit(cache=True)
def address(a):
    """The address of ``a``'s first element: what ``a.ctypes.data`` says, compiled (~0.2 µs
    against ~1-2 µs for NumPy's ``ctypes`` object, which Python builds anew at every read;
    measured, AMD VM: three reads 0.6 against 3.0-5.6 µs).  One compiled version per dtype,
    dimension and layout."""
    return a.ctypes.data


@intrinsic
def cpu_relax(typingctx):
    """The spin-wait hint (x86 ``pause``; nothing elsewhere)."""
    def codegen(context, builder, sig, args):
        if _X86:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@njit(inline="always")
def wait_until(flags, i, count):
    """Return once ``flags[i] >= count``: spin with ``pause``, then yield the core (see above)."""
    spins = 0
    while load_acquire(flags, i) < count:
        spins += 1
        if spins < SPINS:
            cpu_relax()
        else:
            _sched_yield()


@njit(inline="always")
def arrive_and_wait(flags, me, n, count):
    """Announce ``count`` barriers passed by thread ``me``; return when all ``n`` threads have.

    A single thread announces too: its count is how far the loop has come, which a thread
    working alongside it reads (``bptt.run_tiles(..., stream=T)``)."""
    store_release(flags, me * PAD, count)
    if n <= 1:
        return
    for k in range(n):
        wait_until(flags, k * PAD, count)


@njit(inline="always")
def wait_for_inputs(flags, count):
    """Return once the inputs ``G[t]`` of the first ``count`` steps are ready (at once, unless a
    thread computes them alongside the loop: ``bptt.run_tiles``)."""
    wait_until(flags, flags.shape[0] - PAD, count)

r"""What every compiled cell shares: the three-phase schedule, the choice of kernel, and the big GEMMs.

``numpy_ref.bptt`` runs a cell one step at a time from Python.  Here a sequence
is split into the parts that are parallel in time and the part that is not::

    1. input projection, all steps at once (one GEMM, NumPy/BLAS)
         G = X W_ih^T + b                        X (T·B, D) -> G (T, B, G·H)
    2. the recurrence, one compiled call for the whole sequence
         for t: G[t] += h_{t-1} W_hh^T ; gate nonlinearities ; c_t, h_t      (fused, in place)
    3. nothing else in the forward pass; the backward pass mirrors it:
         for t = T-1 .. 0: dZ[t] = gate derivatives ; dh_{t-1} = dZ[t] W_hh  (compiled, one call)
         dW_ih = dZ^T X,  dW_hh = dZ^T H_prev,  db = Σ dZ,  dX = dZ W_ih       (four GEMMs over all steps)

Only step 2 is sequential, and inside it there is no Python and no temporary
array: the pre-activations are written into ``G`` by the product and overwritten
there by the gate values, which are exactly what the backward pass needs.  The
hidden states live in one array ``hs (T+1, B, H)`` with ``hs[0] = h_0`` and
``hs[t+1] = h_t``, so ``hs[:-1]`` is the ``H_prev`` of the weight gradient and
``hs[1:]`` is the output ``y``.

Two choices are made per call, by :func:`plan_tiles` for the cells with tile kernels
(``rnn``, ``lstm``, ``gru``) and by :func:`plan` for the row kernels of the others:

* how to compute the recurrent product (``gemm.matmul_tile``): plain compiled
  loops for tiny products, BLAS, or -- tile kernels only, from
  :data:`PANEL_MIN_ROWS` rows per thread -- the register-blocked kernel on
  ``W_hh`` packed once per sequence (``panels.py``);
* how many blocks of batch rows run on separate threads.  Batch rows are
  independent through the whole recurrence (only the weight gradients mix them,
  and those are GEMMs after the loop), so the blocks need *no synchronisation
  between steps* (:func:`run_tiles`, :func:`run`).  That pays when there are at
  least two rows per thread and enough work to cover one hand-off; each block
  calls BLAS single-threaded (threading *inside* a small per-step GEMM would pay
  a wake-up and a barrier every step: measured 2-8x slower, and erratic, on a
  shared 2-core machine where a descheduled thread stalls every barrier).
  The thread count is Numba's (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``); the
  threads and where they run are ``workers.py``'s.  Two exceptions, both on two threads: a
  full-BPTT backward loop of up to :data:`BEHIND_ONE_BLOCK_MAX_MACS` per step stays one
  block, and its gradient GEMMs run on the other thread while it runs (:func:`run_tiles`);
  a forward loop of one to four rows and a large ``W_hh`` splits its hidden units instead
  (:data:`UNITS_AHEAD_MIN_MACS`, below).

The GEMMs of phases 1 and 3 run on the same threads (:func:`on_threads`): rows of
the product split over them, each part a single-threaded BLAS call.  OpenBLAS's own
threads would do the same work as fast, but keep spinning for about 0.1 s after
each call, on the core that the recurrence's second row block needs next.

Tiles: rows *or* hidden units on the threads.  Splitting rows needs at least two
rows per thread.  With fewer rows (a single sequence: the latency regime) the
cells of ``rnn``, ``lstm`` and ``gru`` can split the *hidden units* instead
(:func:`run_tiles`; the plan does so in a forward loop where ``W_hh`` is large, and
:func:`split` forces it anywhere): thread ``k`` owns units ``j0 .. j1-1``,
computes only their columns of every gate's product (its slice of ``W_hh`` stays
in its own core's cache, step after step) and only their state update, then
waits at a per-step barrier (``sync.arrive_and_wait``) because the next step's
product reads all of ``h_t``.  A *tile kernel* takes ``(r0, r1, j0, j1, product,
flags, me)``: rows ``r0 .. r1-1`` by units ``j0 .. j1-1``, the barrier's counters
and its own thread number; with a single unit block the barrier is a no-op and the
kernel is the row kernel it replaces.

Truncated BPTT(k) needs one backward chain per injected error (see
``numpy_ref.bptt._backward_windowed``).  Every chain is a run of the same fused
step kernel; the gate gradients of all chains are *added* into one ``dZ`` and
the weight gradients are still four GEMMs at the end, because they are linear
in ``dZ``.  So BPTT(k) costs ``T·k`` recurrent steps but no extra GEMMs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import NamedTuple

import numba
import numpy as np

from ..checks import check_window
from . import alongside, gemm, sync
from .workers import in_parallel, spin_until, store_release_py, wait_for

#: per-step multiply-adds (rows × K × N) from which the BLAS path is used instead of the
#: compiled loops.  Measured on the development machine (OpenBLAS SkylakeX kernels, aligned
#: operands), training step in µs/step, BLAS vs loops: LSTM B=1 H=32 1.4 vs 1.8, RNN B=1 H=32
#: 0.7 vs 0.8, RNN B=8 H=32 3.6 vs 5.6, LSTM B=4 H=32 4.4 vs 6.7, the row kernels alike (LSTM
#: with peepholes B=1 H=32 1.86 vs 2.12); equal from RNN B=1 H=8 (64 multiply-adds) down.
#: (It was 2¹⁴, from measurements made before the weight operands were aligned.)
BLAS_MIN_MACS = 1 << 8
#: the row-block kernels run on several threads only with at least this many rows per thread ...
MIN_ROWS_PER_THREAD = 2
#: ... and this much work in the whole sequence (multiply-adds), so the hand-off pays.  A
#: hand-off costs ~0.1 ms on the development VM (``workers.py``: the helper and the caller
#: each wait once for the GIL, and a waiting thread's idle vCPU takes ~45 µs to wake);
#: measured training steps, one row block vs two: RNN B=4 H=64 T=256 (4.2 M multiply-adds
#: in the recurrence) 3.40 vs 4.04 µs/step, LSTM B=4 H=64 (16.8 M) 11.2 vs 10.0
MIN_MACS_FOR_THREADS = 1 << 23

def _check_strategy(name, source="strategy"):
    if name not in ("auto", "loops", "blas", "panels"):
        raise ValueError(f"{source} must be 'auto', 'loops', 'blas' or 'panels', got {name!r}")
    if name == "blas" and not gemm.HAVE_BLAS:
        raise ValueError(f"strategy 'blas' needs NumPy's bundled BLAS, which is missing here "
                         f"({gemm.BLAS_SOURCE})")
    return name


_strategy = _check_strategy(os.environ.get("RNNBOOK_NUMBA_STRATEGY", "auto"), "RNNBOOK_NUMBA_STRATEGY")


@contextlib.contextmanager
def strategy(name: str):
    """Force the recurrent product onto ``"loops"``, ``"blas"`` or ``"panels"`` (or ``"auto"``)
    inside a block.  ``"panels"`` is for the tile kernels (rnn, lstm, gru); the row kernels
    of the other cells have no panel path and choose loops or BLAS as under ``"auto"``."""
    global _strategy
    old, _strategy = _strategy, _check_strategy(name)
    try:
        yield name
    finally:
        _strategy = old


_split = ("auto", None)


@contextlib.contextmanager
def split(how: str, blocks: int | None = None):
    """Force tile kernels to split ``"rows"`` or ``"units"`` over ``blocks`` threads (or ``"auto"``).

    For tests and benchmarks: ``split("units", 3)`` runs three unit blocks with their
    barrier even where :func:`plan_tiles` would not choose it.
    """
    global _split
    if how not in ("auto", "rows", "units"):
        raise ValueError(f"split must be 'auto', 'rows' or 'units', got {how!r}")
    if blocks is not None and blocks < 1:
        raise ValueError(f"blocks must be at least 1, got {blocks}")
    old, _split = _split, (how, blocks)
    try:
        yield how
    finally:
        _split = old


def plan(B: int, K: int, N: int, T: int) -> tuple[bool, int]:
    """``(use_blas, n_chunks)`` for ``T`` steps of a recurrent product ``(B, K) @ (K, N)``."""
    use_blas = {"blas": True, "loops": False}.get(_strategy, gemm.HAVE_BLAS and B * K * N >= BLAS_MIN_MACS)
    return use_blas, _row_blocks(B, K, N, T)


def _row_blocks(B: int, K: int, N: int, T: int) -> int:
    """Blocks of batch rows on threads: one per thread, at least ``MIN_ROWS_PER_THREAD`` rows
    each, and only when the sequence has ``MIN_MACS_FOR_THREADS`` of work to pay the hand-off."""
    if T * B * K * N < MIN_MACS_FOR_THREADS:
        return 1
    return max(1, min(numba.get_num_threads(), B // MIN_ROWS_PER_THREAD))


#: rows per block from which the tile kernels use the packed panels (``gemm.PANELS``) instead
#: of BLAS.  Measured on the development machine (training step, two threads, float32), panels
#: against BLAS: LSTM B=32 H=256 467 vs 578 µs/step, GRU B=64 H=512 2.53 vs 2.93 ms/step (and
#: vs 3.97 ms/step for one block with BLAS threading each step's product, the plan this
#: replaced); at B=8 two blocks of 4 rows on BLAS beat one block of 8 on panels (LSTM H=256
#: 129 vs 151 µs/step): OpenBLAS's small-matrix kernel needs no packing, and a panel block
#: of ``panels.ROWS`` rows (8 with AVX-512, else 6) would compute the missing rows for nothing.
PANEL_MIN_ROWS = 8
#: ... and for a single row (the latency regime) while the product is this small (``K·N``:
#: ``W_hh`` up to 192 KB in float32).  The single-row kernel (``panels._emit_row``) splits the
#: sum over ``k`` into independent chains, where BLAS's matrix-vector product waits on one, and
#: reads every other step in reverse, where BLAS reads ``W_hh`` in one order at every step and
#: so from L2 once it is larger than L1 (``panels.py``).  Measured on the development VM
#: (training step B=1 T=1024, µs/step, BLAS vs panels): LSTM H=32 (K·N = 8192) 1.30 vs 1.17,
#: GRU H=32 1.36 vs 1.23; paired in one process (50-80 rounds), the panels in alternating
#: order: GRU H=64 (12288) 1.99 vs 1.82, LSTM H=64 (16384) 2.14 vs 1.99, RNN H=128 (16384)
#: 2.51 vs 2.24, GRU H=96 (27648) 4.14 vs 3.98, LSTM H=96 (36864) 5.18 vs 5.04, GRU H=128
#: (49152) 5.95 vs 5.97; above it nothing to choose: LSTM H=128 (65536) 7.00 vs 6.90, RNN
#: H=256 6.84 vs 6.88.  (Until the night of 2026-12-06, with the panels read in one order,
#: this limit was 8192: LSTM H=64 was 3.33 vs 3.35.)
PANEL_ROW_MAX_MACS = 3 << 14


class Tiling(NamedTuple):
    """How a tile kernel's work is cut: ``rows × units`` blocks, one thread each, and how each
    block computes its product (``gemm.LOOPS``, ``gemm.BLAS`` or ``gemm.PANELS``); ``macs``,
    the loop's multiply-adds over the whole sequence (``T·B·K·N``)."""
    product: int
    row_blocks: int
    unit_blocks: int
    macs: int = 0


def plan_tiles(B: int, K: int, N: int, T: int, H: int, behind: bool = False, ahead: bool = False) -> Tiling:
    """The :class:`Tiling` for ``T`` steps of a product ``(B, K) @ (K, N)`` over ``H`` hidden units.

    ``behind``: the loop is a full-BPTT backward pass, whose gradients can run alongside it
    on an idle thread (:func:`run_tiles` with ``stream``).  ``ahead``: the loop is a forward
    pass, with the input projection ahead of it.

    Automatically: row blocks as in :func:`plan` -- except behind a backward loop, where two
    threads may take one block and the gradients beside it (:func:`_gradients_behind`), and
    in a forward loop of a few rows and a large ``W_hh``, where two threads split the hidden
    units (:func:`_units_ahead`).  The product on plain loops below :data:`BLAS_MIN_MACS`, else
    on packed panels when every block has at least :data:`PANEL_MIN_ROWS` rows, or a single
    row meets a product of at most :data:`PANEL_ROW_MAX_MACS` or a block of units, else on
    BLAS (on loops where NumPy carries no usable BLAS).

    Unit blocks wait at a barrier every step.  On the development machine (a 2-vCPU VM) they
    used to lose at every size tried: the barrier costs ~0.2 µs when both threads are on a
    core, but the second vCPU often was not (LSTM B=1 H=128 forward: 3.6 µs/step on one
    thread, 4.4-38 µs/step on two unit blocks; ``benchmarks/README.md``).  With the helpers
    kept off the caller's core (``workers.py``) they run steadily; see
    :data:`UNITS_AHEAD_MIN_MACS` for where they now win.
    """
    how, blocks = _split
    if how == "rows":
        row_blocks, unit_blocks = max(1, min(B, blocks or numba.get_num_threads())), 1
    elif how == "units":
        row_blocks, unit_blocks = 1, max(1, min(H, blocks or numba.get_num_threads()))
    elif behind and _gradients_behind(B, K, N, T):
        row_blocks, unit_blocks = 1, 1
    elif ahead and _units_ahead(B, K, N, T):
        row_blocks, unit_blocks = 1, 2
    else:
        row_blocks, unit_blocks = _row_blocks(B, K, N, T), 1
    if _strategy != "auto":
        product = {"loops": gemm.LOOPS, "blas": gemm.BLAS, "panels": gemm.PANELS}[_strategy]
    elif B * K * N < BLAS_MIN_MACS:
        product = gemm.LOOPS
    elif (B // row_blocks >= PANEL_MIN_ROWS
          or (B == 1 and (K * N <= PANEL_ROW_MAX_MACS or unit_blocks > 1))):
        product = gemm.PANELS
    else:
        product = gemm.BLAS if gemm.HAVE_BLAS else gemm.LOOPS
    return Tiling(product, row_blocks, unit_blocks, T * B * K * N)


#: per-step multiply-adds of the recurrent product (``B·K·N``) up to which a full-BPTT backward
#: loop on two threads runs as one block of all the rows, with the weight, bias and input
#: gradients alongside it on the other thread (:func:`run_tiles`), instead of as two blocks of
#: rows with the gradients after them.  Two blocks halve the loop, but then the gradients'
#: products (three to the loop's one) wait for it, with a hand-off each; one block keeps the
#: second thread busy during the loop, and computes its product on all the rows at once (from
#: ``PANEL_MIN_ROWS`` on the panels, where half the rows would call BLAS).  Only for the
#: backward pass: ahead of a forward loop there is one product, the input projection, and two
#: blocks win (forward 1.07-1.22x slower as one block at B=8 H=128).
#: Measured on the development VM (``benchmarks/backward_split.py``: the backward pass both
#: ways, interleaved in one process, float32, 15-25 rounds, one block over two): B=8 T=256
#: RNN H=64/128/256 0.67/0.78/0.96, LSTM 0.91/0.97/0.98, GRU 0.85/0.96/0.99 (B·K·N up to
#: 2^21); B=4, 16 and 32 at T=128 0.65-0.99 (RNN B=32 H=256 0.94, GRU B=32 H=256 0.96); B=64
#: T=128 RNN H=256 0.95, LSTM H=256 (2^24) 0.96, RNN H=512 (2^24) 0.99, GRU H=512 (1.5·2^24)
#: 1.00, LSTM H=512 (2^26) 1.04 -- there the loop is most of the pass and wants both cores
BEHIND_ONE_BLOCK_MAX_MACS = 1 << 24


def _gradients_behind(B: int, K: int, N: int, T: int) -> bool:
    """Whether a full-BPTT backward loop runs as one block with its gradients alongside it
    (:data:`BEHIND_ONE_BLOCK_MAX_MACS`): on exactly two threads (one for the loop, one beside
    it; with more, the row blocks use them all -- not measured), where :func:`plan` would split
    rows, and where one block would leave the gradients a thread (:func:`leaves_a_thread`: a
    loop long enough for them to stream)."""
    one_block = Tiling(gemm.LOOPS, 1, 1, T * B * K * N)      # (its product does not matter here)
    return (numba.get_num_threads() == 2 and B * K * N <= BEHIND_ONE_BLOCK_MAX_MACS
            and _row_blocks(B, K, N, T) > 1 and leaves_a_thread(one_block, ahead=False))


#: elements of ``W_hh`` (``K·N``) from which a forward loop over a single row, on exactly two
#: threads, splits its hidden units between them (two unit blocks, a barrier every step, each
#: block's product on the panels' single-row kernel) instead of running on one thread with the
#: input projection alongside it.  Each thread then reads only its half of ``W_hh``, from its
#: own core's L2, and the reading is what a single row's step costs: a whole ``W_hh`` of 1 MB
#: (LSTM H=256, float32) does not even fit one core's L2 (1 MB on the development VM).  Below it
#: the barrier (~0.3-0.4 µs a step) and the lost overlap with the projection cost more.
#: Measured on the development VM (forward pass, float32, B=1 T=512, two unit blocks on panels
#: against the plan before, interleaved, 12 rounds; ``benchmarks/units_ahead.py`` times the
#: plan's own choice with the split and without): RNN H=128 (K·N = 2^14) 1.29, H=192 1.00;
#: GRU H=128 (1.5·2^15) 0.94; LSTM H=128 (2^16) 0.98, RNN H=256 (2^16) 0.84; LSTM/GRU/RNN
#: H=192..512 0.52-0.98 (LSTM H=256 24.3 -> 12.6 µs/step, GRU H=512 46.1 -> 34.6); float64
#: from H=64 on (0.62-0.80).  The backward loop keeps one block with the
#: gradients beside it: two unit blocks there lose that overlap (B=1 H=256 T=512, backward
#: µs/step: RNN 4.2 -> 4.8, GRU 13.3 -> 13.8, LSTM 16.7 -> 15.8).
UNITS_AHEAD_MIN_MACS = 1 << 16
#: ... and for 2 to ``UNITS_AHEAD_MAX_ROWS`` rows, from this many, each block's product on BLAS
#: (at B=2 and 4 the panels' blocks of 8 rows compute the missing rows for nothing: 1.05-1.9x
#: slower).  Measured as above (T=256, 10 rounds, against one block at B=2 or two row blocks at
#: B=4): B=2 RNN H=256 (2^16) 1.30, GRU H=256 (1.5·2^17) 0.85, LSTM H=256 (2^18) 0.85, H=512
#: 0.84-0.85; B=4 RNN H=256 1.01, GRU H=256 0.97, LSTM H=256 0.75, RNN H=512 (2^18) 0.85, GRU
#: 0.91, LSTM 0.84.  At B=8 two row blocks win everywhere (units 1.01-1.34x slower).
UNITS_AHEAD_ROWS_MIN_MACS = 1 << 18
UNITS_AHEAD_MAX_ROWS = 4


def _units_ahead(B: int, K: int, N: int, T: int) -> bool:
    """Whether a forward loop splits its hidden units over two threads
    (:data:`UNITS_AHEAD_MIN_MACS`): on exactly two threads (with more, unmeasured), a product
    large enough for its rows, and a sequence with enough work to pay the hand-off
    (:data:`MIN_MACS_FOR_THREADS`)."""
    least = UNITS_AHEAD_MIN_MACS if B == 1 else UNITS_AHEAD_ROWS_MIN_MACS
    return (numba.get_num_threads() == 2 and B <= UNITS_AHEAD_MAX_ROWS and K * N >= least
            and T * B * K * N >= MIN_MACS_FOR_THREADS)


def unit_bounds(H: int, n: int) -> list[tuple[int, int]]:
    """``n`` non-empty blocks of hidden units, edges on multiples of 16 (whole SIMD vectors) when
    every block can have at least 16 units, else as even as possible."""
    step = 16 if H >= 16 * n else 1
    edges = [0] + [round(k * H / n / step) * step for k in range(1, n)] + [H]
    return list(zip(edges[:-1], edges[1:]))


_tile_lock = threading.Lock()


def _new_tile_lock():
    """In a child made by ``fork``: a thread of the parent that held the lock is not there."""
    global _tile_lock
    _tile_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_tile_lock)


def run_tiles(kernel, args, B: int, H: int, tiling: Tiling, before=None, then=None, stream: int = 0,
              barriers_per_step: int = 1):
    """Run a tile kernel ``kernel(*args, r0, r1, j0, j1, product, flags, me)`` over ``B × H``,
    with the products recorded in ``before`` (the input projection) run before it and those
    in ``then`` (the gradients) after it, if any (both :func:`deferred` blocks).

    Row blocks run independently (as in :func:`run`); unit blocks share one barrier,
    so all of them must be running at once: the pool has a thread for each, and a
    lock keeps two such calls from queueing behind each other's spinning threads.

    ``stream = T`` says that the loop goes over ``T`` steps and tells how far it has come,
    so that, when the tiling leaves a thread idle (a single block: the latency regime), the
    products can run *on that thread alongside the loop*, block of steps by block of steps,
    instead of before or after it:

    * ``before``: a forward kernel waits at each step for its inputs (``sync.wait_for_inputs``),
      which the helper computes ahead of it (:func:`_inputs_alongside`);
    * ``then``: a full-BPTT backward kernel (one chain, from step ``T-1`` down) whose barrier
      count reaches ``barriers_per_step · (T - t)`` once its gate gradients at step ``t`` are
      stored; the helper follows it (:func:`_gradients_alongside`).

    When the loop runs on several row blocks through the packed panels, each block computes
    its own rows of the input projection first, on its own thread (:func:`_own_inputs`).
    """
    with gemm.single_threaded_blas():    # one block for all: the parts' own ones nest (a count)
        if before and stream and _streams(tiling, before, ahead=True):
            _inputs_alongside(kernel, args, B, H, tiling, before, stream)
        elif then and stream and _streams(tiling, then, ahead=False):
            _gradients_alongside(kernel, args, B, H, tiling, then, stream, barriers_per_step)
            return
        else:
            if before and _own_inputs(tiling, before):
                kernel = _with_own_inputs(kernel, [job.batch_rows(tiling.product) for job in before])
            elif before:
                _run_jobs(before)
            units = unit_bounds(H, tiling.unit_blocks)
            flags = sync.new_flags(len(units))
            jobs = [(*args, r0, r1, j0, j1, tiling.product, flags, me)   # one unit block: the barrier is a no-op
                    for r0, r1 in block_bounds(B, tiling.row_blocks) for me, (j0, j1) in enumerate(units)]
            with _tile_lock if len(units) > 1 else contextlib.nullcontext():
                in_parallel(kernel, jobs)
        if then:
            _run_jobs(then)


#: the loop's multiply-adds (``Tiling.macs``, ``T·B·K·N``) from which the input projection runs
#: alongside a forward loop, ahead of it (:func:`_inputs_alongside`).  Below it the hand-offs (a
#: sleeping helper takes tens of µs to wake on the development VM, every contended hand-over of
#: the GIL costs a wake-up) and the caches that the other core has touched cost about what the
#: overlap saves.  Measured on the development VM (AMD, 2 vCPUs), B=1 T=1024, forward pass in
#: µs/step, median of 40-80 interleaved calls, without vs alongside: RNN H=64 (2^22) 0.32 vs
#: 0.40, LSTM H=32 (2^22) 0.40 vs 0.45, GRU H=32 (3·2^20) 0.43 vs 0.50; GRU H=64 (3·2^22) 1.17
#: vs 1.03, LSTM H=64 (2^24) 1.43 vs 1.19, RNN H=128 (2^24) 1.16 vs 0.89, LSTM H=128 4.16 vs 3.28
AHEAD_MIN_MACS = 1 << 23
#: ... and from which the weight, bias and input gradients run alongside a backward loop, behind
#: it (:func:`_gradients_alongside`): half as many.  They are three products to the
#: projection's one, so the overlap saves more.  Measured (``benchmarks/alongside_threshold.py``:
#: the training step both ways, interleaved in one process, B=1 T=1024, µs/step, behind vs
#: after the loop): LSTM H=32 (2^22) 0.96 vs 1.05, RNN H=64 (2^22) 0.89 vs 0.92, GRU H=48
#: (1.7·2^22) 1.68 vs 1.81, faster in 80-100% of the rounds; below 2^22, GRU H=32 (0.75·2^22)
#: 1.05 vs 1.04, RNN H=48 (0.56·2^22) 0.75 vs 0.69, LSTM H=24 (0.56·2^22) 0.82 vs 0.85 in one
#: run and 1.25 vs 0.83 in another.  In 5 of 40 processes timing LSTM H=32
#: the helper's work was slow throughout (as the second vCPU of the development VM sometimes
#: is), and behind the loop cost 11-23% instead of saving 3-14%.  (Until 2026-12-06 one
#: threshold, 2^23, served both sides.)
BEHIND_MIN_MACS = 1 << 22


#: rows (``steps · B``) per block of steps handed to the thread alongside the loop: enough for
#: BLAS to run near its speed, few enough that the last block, left after the loop, is short
STREAM_BLOCK_ROWS = 128


def _own_inputs(tiling: Tiling, before) -> bool:
    """Whether each row block of the loop computes its own rows of the input projection
    (``Product.batch_rows``, :func:`_with_own_inputs`) instead of all threads computing all of
    it before the loop (:func:`_run_jobs`): when the loop runs on several row blocks through the
    packed panels (at least :data:`PANEL_MIN_ROWS` rows each, unless forced).

    Each block's rows of ``G`` are then written by the core that reads them, a step at a time
    (the bias, then the product, while the rows are in L1), and the loop starts without a
    hand-off of its own.  Measured on the development VM (AMD, 2 vCPUs), forward pass and
    training step interleaved in one process (``benchmarks/step_paired.py af6fd15``), new/old:
    at the GRU loop's shape (B=32 T=64 D=32 H=64, 80 rounds) GRU 0.86 and 0.95, RNN 0.86 and
    0.94 (there the projection had been under :data:`GEMM_MIN_MACS_FOR_THREADS`, on one
    thread), LSTM 0.92 and 0.97; at B=32 T=256 H=256 (30 rounds) 0.93-0.96 and 0.98; at B=64
    T=128 H=512 (10 rounds) 0.96-0.98 and 0.97-0.99.  A loop on BLAS or plain loops (row
    blocks of fewer rows) keeps the one projection before it: there the per-step products
    would be calls of a few rows each.
    """
    return (tiling.row_blocks > 1 and tiling.unit_blocks == 1 and tiling.product == gemm.PANELS
            and all(job.batch_rows is not None for job in before))


def _with_own_inputs(kernel, projections):
    """``kernel`` as a row block's job that first computes its rows of every step of the
    input projections (each ``rows(r0, r1)``, from ``Product.batch_rows``)."""
    def block(*job):
        *_, r0, r1, j0, j1, product, flags, me = job
        for rows in projections:
            rows(r0, r1)
        kernel(*job)
    return block


def leaves_a_thread(tiling: Tiling, ahead: bool) -> bool:
    """Whether the loop of ``tiling`` takes one thread and leaves another idle, and is long
    enough for products to run alongside it: the input projection ahead of a forward loop
    (``ahead``, :data:`AHEAD_MIN_MACS`) or the gradients behind a backward loop
    (:data:`BEHIND_MIN_MACS`)."""
    least = AHEAD_MIN_MACS if ahead else BEHIND_MIN_MACS
    return (tiling.row_blocks * tiling.unit_blocks == 1 and numba.get_num_threads() >= 2
            and tiling.macs >= least)


def _streams(tiling: Tiling, jobs, ahead: bool) -> bool:
    """Whether :func:`run_tiles` runs ``jobs`` alongside the loop: it leaves a thread
    (:func:`leaves_a_thread`), and some product can be cut into blocks of steps (any other
    runs on the loop's thread, before or after the loop)."""
    return leaves_a_thread(tiling, ahead) and any(job.steps is not None for job in jobs)


#: the loop's multiply-adds in a block of :data:`STREAM_BLOCK_ROWS` rows (``STREAM_BLOCK_ROWS · K · N``)
#: from which the first blocks of steps are short (:func:`step_blocks`).  The thread alongside a
#: backward loop waits for its first block, and a forward loop for its first inputs: the larger
#: ``W_hh``, the longer a block of steps takes the loop.  Each block costs the thread alongside a
#: few µs of Python, and a short block is a slower product.  Measured on the development VM
#: (``benchmarks/first_blocks.py``, B=1 T=1024, training step in µs/step, whole first blocks vs
#: short ones, 40 interleaved rounds): from 2^22 on, LSTM H=96 4.33 vs 4.27, H=128 7.21 vs
#: 7.05, H=256 38.2 vs 37.3, GRU H=128 6.29 vs 6.13, H=256 22.6 vs 21.9, RNN H=256 6.96 vs
#: 6.82 (short faster in 70-98% of the rounds); below it, LSTM H=64 2.29 vs 2.30, RNN H=128
#: 2.19 vs 2.22, and GRU H=96 (0.8·2^22) 4.00 vs 3.86 but faster in only 62% of the rounds.
#: A second run, with the machine slower throughout, kept the gain at H=256 (LSTM 39.4 vs
#: 38.7) but not at H=96-128 (LSTM H=96 5.22 vs 5.25, H=128 8.26 vs 8.33, short faster in 45%
#: and 62% of the rounds): within the noise there
RAMP_MIN_MACS = 1 << 22


def step_blocks(T: int, B: int, upward: bool = False, ramp: bool = False) -> list[tuple[int, int]]:
    """Blocks ``(t0, t1)`` of steps for the thread alongside a loop, in the order the loop reaches
    them: from the last step down (a backward pass), or from step 0 up with ``upward`` (a
    forward pass).  Each has about :data:`STREAM_BLOCK_ROWS` rows (``steps · B``), except

    * with ``ramp``, the first two: a quarter and a half of that.  The thread alongside a
      backward loop waits for the first block before it can start, and a forward loop waits
      for its first inputs (:func:`_ramps` decides, :data:`RAMP_MIN_MACS`);
    * the last ones, from ``2 · size`` steps left: each half of what is left, but at least a
      quarter of ``size``, and the very last takes what remains (so it may be shorter still):
      what is left after the loop is short.

    The short first blocks come only where there is room for them (more than ``2 · size``
    steps); e.g. at B=1, T=1024 with ``ramp``: 32, 64, then 128 each, ..., 80, 40, 32, 8.
    """
    size = max(1, STREAM_BLOCK_ROWS // max(B, 1))
    first = [max(1, size // 4), max(1, size // 2)] if ramp else []
    blocks, t1 = [], T
    while t1 > 0:                               # t1 steps are left, from step t1-1 down
        if t1 > 2 * size:
            step = first.pop(0) if first else size
        else:
            step = max(size // 4, (t1 + 1) // 2, 1)
        blocks.append((max(0, t1 - step), t1))
        t1 = blocks[-1][0]
    return [(T - t1, T - t0) for t0, t1 in blocks] if upward else blocks


def _ramps(tiling: Tiling, T: int, B: int) -> bool:
    """Whether the loop of ``tiling`` (``T`` steps of ``B`` rows) gets shorter first blocks of steps."""
    return STREAM_BLOCK_ROWS * (tiling.macs // max(T * B, 1)) >= RAMP_MIN_MACS


def _run_here(job):
    """A recorded product with no form by steps, on this thread, all rows at once."""
    job.part(0, job.R)


def _finish(jobs):
    """Each product's last step after it ran alongside a loop: ``total`` after its blocks of
    steps, or ``then`` after its rows (:func:`_run_here`)."""
    for job in jobs:
        finish = job.then if job.steps is None else job.total
        if finish is not None:
            finish()


#: the count a finished loop leaves in its barrier slot, so that a thread waiting alongside
#: it never waits for steps that will not come (the kernel raised)
_LOOP_OVER = sync.ALL_READY


def _inputs_alongside(kernel, args, B, H, tiling, before, T):
    """The forward kernel on this thread while a helper computes its inputs ahead of it.

    ``before``'s per-step products (the input projection ``G = X W_ihᵀ + b``) are cut into
    the blocks of :func:`step_blocks` from step 0 up, which both threads take in order.
    Each block is announced once computed, in order (the count in the slot after the
    barrier's always means "every step below it"), and the loop waits at each step
    until ``G[t]`` is announced (``sync.wait_for_inputs``).  This thread takes blocks until
    the helper has started -- a sleeping helper takes tens of µs to wake on the development
    VM, and the loop should not wait for that -- and then runs the loop; the helper takes
    the rest.  Products with no form by steps run before the loop.
    """
    flags = sync.new_flags(1)
    ready = flags.shape[0] - sync.PAD
    flags[ready] = 0
    blocks = iter(step_blocks(T, B, upward=True, ramp=_ramps(tiling, T, B)))
    per_step = [job for job in before if job.steps is not None]
    for job in before:
        if job.steps is None:
            _run_here(job)
    lock, started, failed = threading.Lock(), threading.Event(), threading.Event()
    released = []                               # once ALL_READY is out, the count stays there

    def announce(upto):
        """Say that every step below ``upto`` is ready.  ``ALL_READY`` (the helper is done, or
        a block raised) is final: a later, smaller count from a block that was still being
        computed would leave the loop waiting for blocks that a failed helper never computes."""
        with lock:
            if released:
                return
            if upto == sync.ALL_READY:
                released.append(True)
            store_release_py(flags, ready, upto)

    def take():
        """Compute the next block and announce it after the one before it; whether there was
        one (none after a failure: the error is on its way, and the blocks are not needed)."""
        with lock:
            block = None if failed.is_set() else next(blocks, None)
        if block is None:
            return False
        for job in per_step:
            job.steps(*block, True)
        wait_for(flags, ready, block[0])
        announce(block[1])
        return True

    def part(which):
        if which == 0:                          # this thread: blocks until the helper is up, the loop
            try:
                while take() and not started.is_set():
                    pass
            except BaseException:               # the helper must not wait for a block that never comes
                failed.set()
                announce(sync.ALL_READY)
                raise
            if not failed.is_set():             # (a helper that failed raises its error from in_parallel)
                kernel(*args, 0, B, 0, H, tiling.product, flags, 0)
            return
        started.set()                           # the helper: the other blocks, ahead of the loop
        try:
            while take():
                pass
        except BaseException:
            failed.set()
            raise
        finally:                                # if a block raised, the loop must not wait for it
            announce(sync.ALL_READY)
    with gemm.single_threaded_blas():
        in_parallel(part, [(0,), (1,)])
    _finish(before)


#: whether the products behind the loop run as compiled calls (:func:`_compiled_way`) where
#: every one of them has its compiled form; else, or without, as Python calls (:func:`_python_way`)
COMPILED_ALONGSIDE = True


def _gradients_alongside(kernel, args, B, H, tiling, then, T, barriers_per_step):
    """The tile kernel on this thread and ``then``'s products on a helper, at the same time.

    The products are cut into the blocks of steps of :func:`step_blocks`, which the loop
    finishes one after another; a block is ready once the kernel's barrier count says that
    its gate gradients are stored (``sync.arrive_and_wait`` announces the count even for a
    single thread).  The helper takes every block in order, waits for it (spinning without
    the GIL) and adds its terms to the *sums* over steps (the weight and bias gradients: one
    thread, one order, so the result does not depend on timing).  The *per-step* results
    (the input gradient) are left for whoever is free: the helper computes a block's right
    after its sums when the next block is not ready yet (it is ahead of the loop), and the
    rest is shared between the helper and this thread once the loop is over
    (:func:`_share_of_what_is_left`).

    Two ways to do it, the same work in the same order: compiled calls, one per thread with
    no Python between blocks (:func:`_compiled_way`, where every product has its form as a
    ``gemm.block_product``), or Python calls (:func:`_python_way`).  The helper sets its way
    up while the loop starts -- making the compiled one costs ~30 µs of Python (measured, LSTM
    B=1 H=32; ~50 before the addresses were read by compiled code, ``sync.address``), which on
    this thread delayed the loop as much -- and this thread waits for it only once the loop is
    over.  The helper takes the GIL for that only once the loop has stored its first step
    (``in_parallel``'s gate): before, it waited for the GIL asleep and started ~35 µs after the
    loop instead of ~15.  Every µs the helper starts earlier comes back at the end (the tail
    after the loop is its work left over): LSTM B=1 H=32, a setup made 25/50/100 µs longer
    made the training step 20-45/48-67/105-166 µs longer.
    """
    flags = sync.new_flags(1)
    way = []                                     # the helper's (alongside, after_loop, finish)
    set_up = threading.Event()

    def part(which):
        if which == 0:                          # this thread: the loop, then its share of what is left
            try:
                kernel(*args, 0, B, 0, H, tiling.product, flags, 0)
            finally:
                store_release_py(flags, 0, _LOOP_OVER)
            set_up.wait()
            if way:                             # (a helper that failed raises its error from in_parallel)
                way[0][1]()
            return
        try:                                    # the helper: set up, then alongside the loop
            way.append((_compiled_way if COMPILED_ALONGSIDE else _python_way)(
                flags, tiling, then, T, B, barriers_per_step))
        finally:
            set_up.set()
        way[0][0]()
    with gemm.single_threaded_blas():
        in_parallel(part, [(0,), (1,)], gate=flags)   # the helper starts once the loop has its first step
    way[0][2]()


def _compiled_way(flags, tiling, then, T, B, barriers_per_step):
    """``(alongside, after_loop, finish)`` for :func:`_gradients_alongside` as compiled calls
    (``alongside.py``): the helper's whole part in one call, this thread's share after the
    loop in another; :func:`_python_way` where some product has no compiled form."""
    rows = [job.blocks() if job.blocks is not None else None for job in then]
    if any(row is None for row in rows):
        return _python_way(flags, tiling, then, T, B, barriers_per_step)
    blocks = _step_block_array(T, B, _ramps(tiling, T, B))
    sums, per_step = (np.array([row for row, job in zip(rows, then) if job.per_step == each], np.int64)
                      .reshape(-1, gemm.BLOCK_PRODUCT_SIZE) for each in (False, True))
    sums_macs, per_step_macs = (_macs_per_step([job for job in then if job.per_step == each], T)
                                for each in (False, True))
    state = np.zeros(1, np.int64)               # slot alongside.SUMMED: steps whose sums are added
    # (a plain array, not ``sync.counters`` on a line of its own: 4 µs against 0.3 here, where every
    # µs comes back at the end of the loop, and only the helper touches it until the loop is over)
    left = np.full(len(blocks), alongside.LEFT, np.int64)
    work = (per_step, state, left, sums_macs, per_step_macs)
    return (lambda: alongside.follow(flags, barriers_per_step, T, B, blocks, sums, *work),
            lambda: alongside.share_left(T, B, blocks, *work),
            lambda: None)


@functools.lru_cache(maxsize=64)
def _step_block_array(T, B, ramp):
    """:func:`step_blocks` ``(T, B, ramp=ramp)`` from the last step down as a read-only int64 array
    ``(n, 2)`` for the compiled helper, made once per shape (~5 µs of Python otherwise)."""
    blocks = np.array(step_blocks(T, B, ramp=ramp), np.int64).reshape(-1, 2)
    blocks.flags.writeable = False
    return blocks


def _macs_per_step(jobs, T):
    """The multiply-adds per step of ``jobs`` together (the sums: one thread's work per step;
    the per-step results: what a run of blocks costs per step), for the share after the loop."""
    return sum(job.macs for job in jobs) / T


def _python_way(flags, tiling, then, T, B, barriers_per_step):
    """``(alongside, after_loop, finish)`` for :func:`_gradients_alongside` as Python calls:
    each product's ``steps`` per block (one BLAS call each, taking the GIL back after it),
    products with no form by steps on the loop's thread after the loop, then each one's last
    step (:func:`_finish`)."""
    blocks = step_blocks(T, B, ramp=_ramps(tiling, T, B))
    sums = [job for job in then if job.steps is not None and not job.per_step]
    per_step = [job for job in then if job.steps is not None and job.per_step]
    whole = [job for job in then if job.steps is None]
    left = list(range(len(blocks)))          # blocks whose per-step results nobody has taken
    summed = [0]                             # steps whose sums the helper has added
    lock = threading.Lock()
    per_step_macs, sums_macs = (_macs_per_step(jobs, T) for jobs in (per_step, sums))

    def ready(n):
        return spin_until(flags, 0, barriers_per_step * (T - blocks[n][0]), 0)

    def take(n=None):
        """Compute the per-step results of block ``n``, or of the blocks left that are this
        thread's share (:func:`_share_of_what_is_left`) in one call; whether any were taken."""
        with lock:
            if n is None:
                run = _share_of_what_is_left(blocks, left, (T - summed[0]) * sums_macs, per_step_macs)
            elif n in left:
                left.remove(n)
                run = [n]
            else:
                run = []
        if run:                                  # a run of blocks: steps from the last's t0 to the first's t1
            for job in per_step:
                job.steps(blocks[run[-1]][0], blocks[run[0]][1], True)
        return bool(run)

    def alongside_the_loop():
        for n, (t0, t1) in enumerate(blocks):
            wait_for(flags, 0, barriers_per_step * (T - t0))
            for job in sums:
                job.steps(t0, t1, n == 0)
            summed[0] += t1 - t0
            if n + 1 < len(blocks) and not ready(n + 1):
                take(n)
        while take():
            pass

    def after_loop():
        for job in whole:
            _run_here(job)
        while take():
            pass
    return alongside_the_loop, after_loop, lambda: _finish(then)


def _share_of_what_is_left(blocks, left, busy_macs, per_step_macs):
    """The blocks of per-step results that a thread now free takes at once, removed from ``left``.

    ``left`` holds the indices of the blocks nobody has taken, in ``blocks`` order (the order
    the loop finished them, so a run of consecutive indices is one range of steps);
    ``busy_macs`` is the work the other thread still has before it can take any (the sums it
    has not added yet), ``per_step_macs`` the per-step results' multiply-adds per step.  The
    share is what makes both threads finish together: the consecutive blocks from the first
    left, at least one, until they hold half of ``busy_macs`` + what is left::

        steps taken · per_step_macs  ≥  (busy_macs + steps left · per_step_macs) / 2

    All of it, in one call, while the other thread is behind with its sums (LSTM B=1 H=32,
    T=1024: the sums run ~200 µs past the loop, the input gradient of all 1024 steps takes
    ~0.1 ms); about half when the other thread is free (LSTM B=1 H=128), then half of the
    rest, and so on.  A run in one call rather than a block a call: with both threads taking
    blocks of 128 steps after the loop (Python, then a BLAS call, on each), calls of ~12 µs
    took up to 100-240 µs; two threads making such calls side by side, with nothing else
    running, see the same on the Intel VM (``np.matmul`` of 128 × 128 by 128 × 32: 1 call in
    20 over 50 µs, against 1 in 600 on one thread alone; on the AMD VM on another day, 1 in
    370 against 1 in 1400).  Paired in one process against a block a call
    (Intel Xeon VM, 2 threads, training step, T=1024, 100-200 rounds): LSTM B=1 H=32 0.92,
    GRU H=64 0.94, RNN H=128 0.98, LSTM H=64 and H=128 1.00.
    """
    if not left:
        return []
    steps_left = sum(blocks[i][1] - blocks[i][0] for i in left)
    want = (busy_macs + steps_left * per_step_macs) / 2
    run = [left.pop(0)]
    while (left and left[0] == run[-1] + 1
           and (blocks[run[0]][1] - blocks[run[-1]][0]) * per_step_macs < want):
        run.append(left.pop(0))
    return run


def run(kernel, args, B, use_blas, n_chunks):
    """Run a row kernel ``kernel(*args, r0, r1, use_blas)`` over all ``B`` rows.

    With ``n_chunks > 1`` the rows are cut into blocks that run at the same time on
    a pool of threads: the kernels are compiled with ``nogil=True``, so the threads
    really run in parallel, and there is one hand-off per *sequence*, not per step.
    BLAS runs single-threaded inside (``gemm.single_threaded_blas``).
    """
    with gemm.single_threaded_blas():
        in_parallel(kernel, [(*args, r0, r1, use_blas) for r0, r1 in block_bounds(B, n_chunks)])


def block_bounds(R: int, n: int) -> list[tuple[int, int]]:
    """``n`` blocks ``(r0, r1)`` of rows ``0 .. R-1``, as even as possible (some may be empty if ``n > R``)."""
    return [(k * R // n, (k + 1) * R // n) for k in range(max(1, n))]


#: multiply-adds from which a GEMM of phases 1 and 3 is split over the threads (below it one
#: thread does it: a hand-off costs ~0.1 ms on the development VM, see
#: :data:`MIN_MACS_FOR_THREADS`).  Measured, one thread vs two: input projection 1024×32×128
#: (4.2 M) 111 vs 156 µs, 1024×64×256 (16.8 M) 233 vs 234 µs, 2048×64×256 (33.6 M) 443 vs
#: 332 µs; the LSTM B=1 H=32 T=1024 training step 2.05 -> 1.76 µs/step when it went from 2²² to 2²⁴.
#: Checked again at 2²³ (2026-12-05, AMD VM, 40 interleaved rounds, µs/step): the gradient GEMMs
#: on two threads made the backward pass 10-12% faster (LSTM B=1 H=32 0.665 -> 0.590, RNN B=1
#: H=64 0.592 -> 0.532, LSTM B=4 H=32 T=256 2.45 -> 2.15) but the *next forward pass* 10-13%
#: slower (0.423 -> 0.479; 0.434 -> 0.497 after a 2 ms pause, so not the helper's spinning --
#: most likely its fresh arrays reuse memory that the other core has just written).  The
#: training step gained 2.5-3% there and lost 1% at GRU B=1 H=32: the threshold stays.
GEMM_MIN_MACS_FOR_THREADS = 1 << 24


class Product(NamedTuple):
    """One GEMM of phases 1 and 3, as :func:`on_threads` records it.

    ``part(r0, r1)`` computes rows ``r0 .. r1-1`` of its result from all steps, ``then()``
    finishes it after all parts.  The gradients after the loop may also say how to compute
    them block of steps by block of steps (:func:`run_tiles` does so alongside a loop that
    leaves a thread idle): ``steps(t0, t1, first)`` takes steps ``t0 .. t1-1``, and
    ``total()`` finishes the result after all blocks.  For a sum over steps (a weight or
    bias gradient) ``steps`` adds the block's terms (stores them with ``first``), and the
    blocks must come in one order on one thread; a result with a part per step
    (``per_step``: the input projection, the input gradient) takes its blocks in any order,
    on any thread.  ``blocks()``, where given, returns the same product as a row that
    compiled code runs block by block (``gemm.block_product``; ``None`` where BLAS cannot
    take its arrays): asked for only when the product does run behind a loop, because
    making it costs a few µs that every other call would waste.  ``batch_rows(product)``,
    where given (the input projection), returns ``rows(r0, r1)``, which computes the result's
    entries for batch rows ``r0 .. r1-1`` of every step through ``product``'s kernel: what one
    row block of a loop reads (:func:`run_tiles` has each block compute its own).
    """
    part: object
    R: int
    macs: int
    then: object = None
    steps: object = None
    total: object = None
    per_step: bool = False
    blocks: object = None
    batch_rows: object = None


def on_threads(part, R, macs, then=None, steps=None, total=None, per_step=False, blocks=None,
               batch_rows=None):
    """Run ``part(r0, r1)`` over row blocks covering ``0 .. R-1``: one per thread of the backend
    when the job (``macs`` multiply-adds) is big enough, with BLAS single-threaded inside;
    then ``then()`` (if given) on this thread.  Inside :func:`together` or :func:`deferred`
    the job is only recorded (with ``steps``/``total``, its form by blocks of steps, and
    ``batch_rows``, its form by batch rows, see :class:`Product`), and runs with the others
    of the block later (then their multiply-adds together decide the threads:
    :func:`_run_jobs`).

    Why not let OpenBLAS thread each call itself: after a threaded call its workers keep
    spinning for about 0.1 s (its ``THREAD_TIMEOUT``), and a recurrence started in that time
    finds one of its own threads sharing a core with a spinning worker.  Measured on the
    development machine (LSTM B=32 H=256, two threads): after an OpenBLAS-threaded input
    projection, the recurrence ran no faster on two row blocks than on one, and 1.8x faster
    without it.  The helper threads (``workers.py``) sleep when idle.
    """
    job = Product(part, R, macs, then, steps, total, per_step, blocks, batch_rows)
    queued = getattr(_together, "jobs", None)
    if queued is not None:
        queued.append(job)
        return
    _run_jobs([job])


def _run_jobs(jobs):
    """The jobs of :func:`on_threads` with one hand-off: when all of them together have
    :data:`GEMM_MIN_MACS_FOR_THREADS` multiply-adds, thread ``k`` runs block ``k`` of every
    job (each cut into as many row blocks as there are threads, or rows), else this thread
    runs them all; then each job's ``then``."""
    n = numba.get_num_threads() if sum(job.macs for job in jobs) >= GEMM_MIN_MACS_FOR_THREADS else 1

    def thread(k):
        for job in jobs:
            m = max(1, min(n, job.R))
            if k < m:
                job.part(*block_bounds(job.R, m)[k])
    with gemm.single_threaded_blas():
        if n == 1:                           # thread(0), without its block bounds and hand-off
            for job in jobs:
                job.part(0, job.R)
        else:
            in_parallel(thread, [(k,) for k in range(n)])
    for job in jobs:
        if job.then is not None:
            job.then()


_together = threading.local()


@contextlib.contextmanager
def deferred():
    """Inside the block, the GEMMs of :func:`on_threads` are only recorded, into the list it
    yields; whoever holds the list runs them (``run_tiles(..., then=jobs)``).  The arrays they
    return are filled only then.  The backward passes record their products after the loop
    this way *before* the loop, so that :func:`run_tiles` can run them alongside it."""
    outer = getattr(_together, "jobs", None)
    _together.jobs = jobs = []
    try:
        yield jobs
    finally:
        _together.jobs = outer


@contextlib.contextmanager
def together():
    """Inside the block, the GEMMs of :func:`on_threads` are queued; they all run when it ends,
    with a single hand-off to the threads (each a cost of ~0.1 ms on the development VM, see
    :data:`MIN_MACS_FOR_THREADS`).  The arrays they return are filled only then: read them
    after the block.  A block inside another runs its own queue when it ends.
    """
    with deferred() as jobs:
        yield
    _run_jobs(jobs)


def matmul(A, M):
    """``A @ M`` -> a fresh C array, ``A (R, K)``, ``M (K, N)``: the big GEMMs, rows on threads."""
    R, N = A.shape[0], M.shape[1]
    out = np.empty((R, N), np.result_type(A.dtype, M.dtype))

    def part(r0, r1):
        np.matmul(A[r0:r1], M, out=out[r0:r1])
    on_threads(part, R, R * A.shape[1] * N)
    return out


#: multiply-adds of a block of rows of the input projection from which it goes through the
#: packed panels (``gemm.project_block``) rather than through NumPy's ``matmul`` and an add (a
#: temporary and a second pass).  The threshold was measured for BLAS with ``beta = 1``
#: (``gemm.add_product_rows``, a ctypes call of ~5 µs), the form before the panels; one core,
#: float32, bias written first, then NumPy vs ctypes, µs: 1 × 32 × 128 in 2.2 vs 5.4, 1 × 128 ×
#: 512 in 5.6 vs 8.3, 16 × 128 × 512 in 54 vs 57, 128 × 128 × 512 (2^23) in 203 vs 199,
#: 1024 × 32 × 128 (2^22) in 120 vs 108.  The panels against that BLAS form, paired in one
#: process (``benchmarks/step_paired.py``, float32, two threads, new/old, forward and training
#: step): B=8 T=256 H=128 (40 rounds) RNN 0.94 and 0.98, LSTM 0.99 and 0.99, GRU 1.00 and 1.01;
#: H=256 (30 rounds) LSTM 0.94 and 0.99, RNN 0.96 and 0.98, GRU 0.98 and 0.99; B=1 T=1024 (its
#: blocks of steps alongside the loop, 30-40 rounds) 0.96-1.03 and 0.96-1.02, within the noise
INPUT_PANELS_MIN_MACS = 1 << 22


def input_projection(x, W_ih, b):
    """``X W_ih^T + b`` for all steps at once: ``x (T, B, D)`` -> ``(T, B, G)``, a fresh C array.

    Each block of rows, on its thread, writes the bias (or zero) into its rows of the result
    and then adds its product into them, through the packed panels of ``W_ih^T``
    (``gemm.project_block``: a step of 32 rows at a time, the bias and then the product while
    the rows are in L1; a block of fewer than :data:`INPUT_PANELS_MIN_MACS` multiply-adds
    through NumPy).  The panels are packed once per call, by the first block that needs them.
    Adding the bias after the product would cost a second pass over the result (12 of 30 ms
    at 8192 × 1024, measured with BLAS).
    The bias used to be written over the whole array on the calling thread first, while the
    other threads waited: on the first development VM (Intel) threads page-faulting a fresh
    array at the same time took 38 ms against 20 ms.  On the AMD VM the threads writing their
    own rows are faster at every size tried, fresh (mmap-ed) or reused memory alike
    (``benchmarks/input_bias.py``).  Recorded for ``run_tiles(..., before=...)`` and run ahead
    of a forward loop on one block, each block of steps does the same for its rows; before a
    loop on row blocks through packed panels, each row block computes its batch rows of every
    step through those panels (``batch_rows``, ``gemm.project_rows``): the same sums as BLAS's
    kernels (the bias plus the products in the order of ``k``), equal bit for bit where the
    BLAS kernel adds in that order (as OpenBLAS's did on the development VM).
    """
    T, B, D = x.shape
    dtype = np.result_type(x.dtype, W_ih.dtype, *(() if b is None else (b.dtype,)))
    X = np.ascontiguousarray(x.reshape(T * B, D), dtype)
    W = np.ascontiguousarray(W_ih, dtype)
    out = np.empty((T * B, W.shape[0]), dtype)
    bias_row = np.zeros(W.shape[0], dtype) if b is None else np.ascontiguousarray(b, dtype)
    packed, packing = {}, threading.Lock()

    def operand(product):
        """``W_ih^T`` in ``product``'s form, made once (the first block to need it packs it)."""
        with packing:
            if product not in packed:
                packed[product] = gemm.operand(W.T, product)
            return packed[product]

    def part(r0, r1):
        if dtype.char in "fd" and (r1 - r0) * D * W.shape[0] >= INPUT_PANELS_MIN_MACS:
            gemm.project_block(X, operand(gemm.PANELS), bias_row, out, r0, r1)
        else:                                  # small, or another dtype
            out[r0:r1] = bias_row
            out[r0:r1] += X[r0:r1] @ W.T

    def steps(t0, t1, first):
        part(t0 * B, t1 * B)

    def batch_rows(product):
        M = operand(product)                             # W_ih^T packed once, on the calling thread
        X3, out3 = X.reshape(T, B, D), out.reshape(T, B, -1)
        return lambda r0, r1: gemm.project_rows(X3, M, bias_row, out3, r0, r1, product)
    on_threads(part, T * B, T * B * D * W.shape[0], steps=steps, per_step=True, batch_rows=batch_rows)
    return out.reshape(T, B, -1)


def contiguous(params, names):
    return tuple(np.ascontiguousarray(params[n]) for n in names)


# The gradients after the loop.  Each records its product with ``on_threads`` and returns the
# array that the product fills, maybe later (``deferred``: the backward passes record them
# before the loop that computes ``dZ``), so ``dZ`` is read only inside the parts.

def weight_gradient(dZ, inputs):
    """``Σ_t dZ_t^T inputs_t`` as one GEMM: ``dZ (T, B, G)``, ``inputs (T, B, K)`` -> ``(G, K)``.

    By blocks of steps (alongside the loop, :func:`run_tiles`) each block adds its terms into
    the result in place, one BLAS call each (``gemm.sum_of_products_by_blocks``)."""
    T, B, G = dZ.shape
    X = inputs.reshape(T * B, -1)
    out = np.empty((G, X.shape[1]), np.result_type(dZ.dtype, X.dtype))

    def part(g0, g1):
        gemm.transposed_product(dZ.reshape(T * B, G)[:, g0:g1], X, out[g0:g1])

    add = None                               # the sum's BLAS call, prepared at its first block

    def steps(t0, t1, first):
        nonlocal add
        if first:                            # (not before: most calls never sum by blocks)
            add = gemm.sum_of_products_by_blocks(dZ.reshape(T * B, G), X, out)
        add(t0 * B, t1 * B, first)
    on_threads(part, G, T * B * G * X.shape[1], steps=steps,
               blocks=lambda: _block_product(gemm.SUM_OF_PRODUCTS, _step_rows(dZ), X, out))
    return out


def _step_rows(a):
    """``a (T, B, N)`` as a view ``(T·B, N)`` of the same memory, or ``None`` where that takes a
    copy: a product recorded by address (:func:`_block_product`) must read ``dZ`` itself, which
    the loop fills after the recording."""
    rows = a.reshape(a.shape[0] * a.shape[1], a.shape[2])
    return rows if np.may_share_memory(rows, a) else None     # (a copy never overlaps its source)


def _block_product(kind, A, M, C):
    """``gemm.block_product``, ``None`` for an operand that is not there (:func:`_step_rows`)."""
    return None if A is None else gemm.block_product(kind, A, M, C)


def input_gradient(dZ, W_ih):
    """``dX_t = dZ_t W_ih`` for all steps: ``(T, B, G) @ (G, D)`` -> ``(T, B, D)``."""
    T, B, G = dZ.shape
    out = np.empty((T * B, W_ih.shape[1]), np.result_type(dZ.dtype, W_ih.dtype))

    def part(r0, r1):
        np.matmul(dZ.reshape(T * B, G)[r0:r1], W_ih, out=out[r0:r1])

    def steps(t0, t1, first):
        part(t0 * B, t1 * B)
    on_threads(part, T * B, T * B * G * W_ih.shape[1], steps=steps, per_step=True,
               blocks=lambda: _block_product(gemm.PRODUCT_ROWS, _step_rows(dZ), W_ih, out))
    return out.reshape(T, B, -1)


def bias_gradient(dZ):
    """``Σ_t Σ_b dZ[t, b] = 1ᵀ dZ``: ``dZ (T, B, G)`` -> ``(G,)``, as a matrix-vector product
    (BLAS) over blocks of rows on the threads, the blocks' sums added at the end (by blocks
    of steps alongside the loop: added into the result as they come).

    A product with a vector of ones rather than ``dZ.sum(axis=0)``: NumPy's reduction over
    the first axis runs at a few GFLOP/s, BLAS's at memory speed (measured, one thread:
    1024 × 128 in 9 against 32 µs, 8192 × 1024 in 1.14 against 1.40 ms).  Over threads
    because at B=32 H=256 ``dZ`` is 32 MB (single-threaded, the GRU's two such sums were
    10% of its step).
    """
    T, B, G = dZ.shape
    ones = np.ones(T * B, dZ.dtype)
    parts = {}
    out = np.empty(G, dZ.dtype)

    def part(r0, r1):
        parts[r0] = ones[r0:r1] @ dZ.reshape(T * B, G)[r0:r1]

    def total():
        out[:] = sum(parts[k] for k in sorted(parts))

    def steps(t0, t1, first):
        block = ones[t0 * B:t1 * B] @ dZ[t0:t1].reshape((t1 - t0) * B, G)
        if first:
            np.copyto(out, block)
        else:
            np.add(out, block, out=out)
    on_threads(part, T * B, T * B * G, then=total, steps=steps,
               blocks=lambda: _block_product(gemm.SUM_OF_PRODUCTS, ones.reshape(T * B, 1), _step_rows(dZ),
                                             out.reshape(1, G)))
    return out


@numba.njit(inline="always")
def revisits(chains, c, t):
    """Whether an earlier chain than ``c`` has already stored its gradient at step ``t``
    (compiled; used by the backward tile kernels).

    :func:`chain_schedule` lists chains ``(s, lo)`` by increasing start ``s`` with
    non-decreasing ``lo`` (full BPTT is the single chain ``(T-1, 0)``), so chain ``c``
    revisits step ``t`` exactly when the chain before it started at or above ``t``.
    The first visit stores (``units.put_units``), a revisit adds.  Every step has a first
    visit (chain ``s`` starts at step ``s``), so the tile kernels' gate-gradient arrays are
    allocated with ``np.empty``: zeroing them would be a pass over ``T·B·G·H`` numbers for
    nothing.  (The row kernels of scrn, leaky and the LSTM variants add into ``np.zeros``.)
    """
    return c > 0 and t <= chains[c - 1, 0]


def windows(T: int, k: int):
    """BPTT(k) chains: for each injection step ``s``, the lowest step ``s-k+1`` its error reaches."""
    return [(s, max(s - k + 1, 0)) for s in range(T)]


def chain_schedule(T: int, window):
    """``(chains, inject_all)`` for a backward row kernel (see ``lstm._backward_tile``).

    Full BPTT (``window=None``) is the single chain ``(T-1, 0)`` that picks up ``dy_t`` at
    every step; BPTT(k) is one chain per injection step (:func:`windows`), each picking up
    only its own ``dy_s``.
    """
    if window is None:
        return np.array([[T - 1, 0]], np.int64), True
    return np.array(windows(T, check_window(window, T)), np.int64), False

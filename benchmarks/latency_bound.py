"""What bounds a training step at B = 1: the per-step matrix-vector product and the barrier.

    python benchmarks/latency_bound.py                 # LSTM, H = 32, 64, 128
    python benchmarks/latency_bound.py --cell gru --H 64 128

At batch size 1 each step of the recurrence is one product ``h_{t-1} W_hhᵀ``, a ``(1, H)``
row against ``W_hh`` (``G × H``, ``G`` = 4H for the LSTM, 3H for the GRU), and step ``t``
cannot start before step ``t - 1`` is done.  Every step reads all of ``W_hh`` again
(``4·G·H`` bytes in float32), so once ``W_hh`` no longer fits the L1 cache the step runs at
the speed at which one core reads its L2.  Two measurements say how close the loops are
to that and what the second core could add:

1. **The product alone**: ``T`` dependent steps of ``(1, H) @ (H, G)`` in one compiled loop,
   through BLAS and through the packed panels (``gemm.matmul_tile``), as µs per step and as
   the rate at which ``W_hh`` is read (GB/s).
2. **The unit split** (``bptt.split("units", 2)``): both cores on every step's product, each
   on half the hidden units, with a barrier between steps, against the loop on one block.
   The products around the loop (input projection, gradients) run before and after it on
   both cores in either case ("one block"); the automatic plan also has a column of its own
   ("alongside"), where they run on the second core while the loop runs: the gradients from
   ``bptt.BEHIND_MIN_MACS`` on (H ≥ 32 for the LSTM here), the input projection from
   ``bptt.AHEAD_MIN_MACS`` on (H ≥ 64).  At H = 8 the product costs nothing, so the
   unit split's difference to one block is its barrier's cost per step.

Times are the median over ``--reps`` calls of ``T = 1024`` steps, float32.
"""
import argparse
import os
import sys
import time

from arguments import positive  # beside this script

ap = argparse.ArgumentParser()
ap.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
ap.add_argument("--H", type=positive, nargs="+", default=[32, 64, 128])
ap.add_argument("--reps", type=positive, default=25)
args = ap.parse_args()
for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "2" if v == "NUMBA_NUM_THREADS" else "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

import rnnbook as rb  # noqa: E402
from rnnbook.numba_cpu import bptt, gemm  # noqa: E402

T = 1024
GATES = {"lstm": 4, "gru": 3, "rnn": 1}[args.cell]
OPTS = {"reset_after": True} if args.cell == "gru" else {}


@njit
def _steps(h, M, out, T, product):
    """``T`` dependent products ``out = h @ M``: each step's row depends on the last result.
    Every other step reads the panels in reverse, as the cell kernels do (``panels.py``)."""
    for t in range(T):
        out[0, :] = 0.0
        gemm.matmul_tile(h, M, out, 0, 1, 0, out.shape[1], product, t % 2)
        h[0, 0] = out[0, 0] * np.float32(1e-30)       # the next step waits for this one


def median_us(call, reps, per=T):
    for _ in range(3):
        call()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) / per * 1e6)
    return float(np.median(times))


def product_alone(H):
    """µs per step and GB/s of ``W_hh`` read, through BLAS and through the panels."""
    G = GATES * H
    rng = np.random.default_rng(H)
    W = rng.standard_normal((H, G)).astype(np.float32)
    h, out = rng.standard_normal((1, H)).astype(np.float32), np.zeros((1, G), np.float32)
    row = []
    for product in (gemm.BLAS, gemm.PANELS):
        M = gemm.operand(W, product)
        us = median_us(lambda: _steps(h, M, out, T, product), args.reps)
        row += [us, 4 * G * H / us / 1e3]
    return row


def one_block_and_units(H):
    """Forward and training step (µs/step): on one block with the products before and after
    the loop, on two unit blocks (the same), and as planned (one block, products alongside
    from ``AHEAD_MIN_MACS`` and ``BEHIND_MIN_MACS`` on)."""
    params = {k: v.astype(np.float32) for k, v in rb.init_params(args.cell, H, H, seed=0, **OPTS).items()}
    rng = np.random.default_rng(H)
    x = rng.standard_normal((T, 1, H)).astype(np.float32)
    dy = rng.standard_normal((T, 1, H)).astype(np.float32)

    def forward():
        rb.forward(args.cell, params, x, backend="numba", **OPTS)

    def train():
        _, _, cache = rb.forward(args.cell, params, x, backend="numba", **OPTS)
        rb.backward(args.cell, params, cache, dy)
    row = []
    planned = bptt.AHEAD_MIN_MACS, bptt.BEHIND_MIN_MACS
    for how in ("one block", "units", "alongside"):
        bptt.AHEAD_MIN_MACS, bptt.BEHIND_MIN_MACS = planned if how == "alongside" else (1 << 62, 1 << 62)
        try:
            with (bptt.split("units", 2) if how == "units" else bptt.split("rows", 1)):
                row += [median_us(forward, args.reps), median_us(train, args.reps)]
        finally:
            bptt.AHEAD_MIN_MACS, bptt.BEHIND_MIN_MACS = planned
    return row


print(f"{args.cell}, B=1, T={T}, float32, Numba threads {os.environ['NUMBA_NUM_THREADS']}\n")
print("1. the recurrent product alone, per step (W_hh read from cache at every step)")
print(f"{'H':>5} {'W_hh KB':>8} {'BLAS µs':>8} {'GB/s':>6} {'panels µs':>10} {'GB/s':>6}")
for H in args.H:
    blas_us, blas_gbs, pan_us, pan_gbs = product_alone(H)
    print(f"{H:>5} {4 * GATES * H * H / 1024:>8.0f} {blas_us:>8.2f} {blas_gbs:>6.0f} {pan_us:>10.2f} {pan_gbs:>6.0f}")
print("\n2. one block against two unit blocks (a barrier per step), and as planned, µs/step")
heads = ("fwd 1 block", "train 1 block", "fwd units", "train units", "fwd alongside", "train alongside")
print(f"{'H':>5} " + " ".join(f"{h:>{len(h) + 1}}" for h in heads))
for H in [8] + list(args.H):
    print(f"{H:>5} " + " ".join(f"{v:>{len(h) + 1}.2f}" for v, h in zip(one_block_and_units(H), heads)))

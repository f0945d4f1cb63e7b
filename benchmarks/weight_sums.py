"""The weight sums alongside the backward loop: one BLAS call per block prepared once, or each
block through ``gemm.add_sum_of_products``.

    python benchmarks/weight_sums.py                           # B=1 T=1024: LSTM/GRU/RNN, H = 64, 128
    python benchmarks/weight_sums.py --cells lstm --H 64 --rounds 200

Where a single sequence leaves a thread idle, that thread adds the weight gradients
``Σ_t dZ_tᵀ x_t`` and ``Σ_t dZ_tᵀ h_{t-1}`` block of steps by block of steps while the backward
loop runs (``bptt._gradients_alongside``), and it is the slower of the two threads: what it has
not done when the loop ends is the tail of the call.  ``gemm.sum_of_products_by_blocks`` checks
once per sum whether BLAS can take the arrays and then makes one ``?gemm`` call per block;
``gemm.add_sum_of_products`` (what the blocks went through before) checks and converts all its
arguments at every block.  This script times the backward pass (float32, two threads) both
ways in one process, the two interleaved call by call (order alternating; a forward pass
before each), and prints the medians, the median of the paired ratios and in how many pairs
the prepared calls were faster.

Both forms are the Python path's (``bptt._python_way``); since the products behind the loop run as
compiled calls by default (``bptt.COMPILED_ALONGSIDE``, ``alongside.py``), the script switches
that path on for its run.
"""
import argparse
import os
import time

from arguments import GATES, interleaved, random_problem, single_sequence_arguments  # beside this script

args = single_sequence_arguments(argparse.ArgumentParser(), H=[64, 128], rounds=100)

import numpy as np  # noqa: E402

import rnnbook as rb  # noqa: E402
from rnnbook.numba_cpu import bptt, gemm  # noqa: E402

PREPARED = gemm.sum_of_products_by_blocks
bptt.COMPILED_ALONGSIDE = False                          # the Python path: the one compared here


def block_by_block(A, X, C):
    """The form before: every block through ``add_sum_of_products``, with its checks."""
    return lambda r0, r1, first: gemm.add_sum_of_products(A[r0:r1], X[r0:r1], C, first)


def backward_time(cell, params, x, dy, mode):
    gemm.sum_of_products_by_blocks = PREPARED if mode == "prepared" else block_by_block
    _, _, cache = rb.forward(cell, params, x, backend="numba")
    t0 = time.perf_counter()
    rb.backward(cell, params, cache, dy)
    return time.perf_counter() - t0


print(f"B={args.B} T={args.T} float32, {args.threads} threads, {args.rounds} interleaved pairs; "
      f"backward pass in µs per call; load {os.getloadavg()[0]:.1f}")
print(f"{'cell':<5} {'H':>5} {'per block':>10} {'prepared':>9} {'ratio':>6} {'paired':>7} {'prepared faster':>16}  helper")
try:
    for cell in args.cells:
        for H in args.H:
            params, x, dy = random_problem(cell, H, args.T, args.B)
            for mode in ("block", "prepared") * 5:                  # warm-up
                backward_time(cell, params, x, dy, mode)
            times = interleaved(args.rounds, ("block", "prepared"),
                                lambda mode: backward_time(cell, params, x, dy, mode), calls=1)
            block, prepared = (np.array(times[m]) * 1e6 for m in ("block", "prepared"))
            G = GATES[cell]
            helper = "yes" if bptt.leaves_a_thread(bptt.plan_tiles(args.B, H, G * H, args.T, H), ahead=False) else "(none: no sums by blocks)"
            print(f"{cell:<5} {H:>5} {np.median(block):10.0f} {np.median(prepared):9.0f} "
                  f"{np.median(prepared) / np.median(block):6.3f} {np.median(prepared / block):7.3f} "
                  f"{np.mean(prepared < block):15.0%}   {helper}")
finally:
    gemm.sum_of_products_by_blocks = PREPARED
    bptt.COMPILED_ALONGSIDE = True

"""The forward pass of a few rows with its hidden units split over two threads, against the
plan without that split (``bptt._units_ahead``), paired in one process.

    python benchmarks/units_ahead.py                                   # B=1, H = 128 .. 512, T=512
    python benchmarks/units_ahead.py --cells lstm --B 4 --H 256 --T 256 --rounds 20
    python benchmarks/units_ahead.py --step --cells rnn --H 256        # the whole training step

A forward step of a single row reads all of ``W_hh`` once.  Split over the hidden units, each of
two threads reads half of it, from its own core's cache, and the two wait for each other at a
barrier every step; unsplit, one thread runs the loop and the other computes the input
projection ahead of it (or, from two rows on, each thread takes rows).  Here the forward pass
(float32, random weights with noise on every entry, biases included) runs with the automatic
plan and with the split switched off (``bptt.UNITS_AHEAD_MAX_ROWS = 0``), the two interleaved
call by call (order alternating; the last of three calls kept).  It prints, per configuration,
the tiling each way, the medians in µs per step, the median of the paired ratios split/unsplit
and in how many pairs the split was faster.  With ``--step`` it times the training step
(forward, then backward) instead: the backward pass never splits units, so the difference is
the forward's.
"""
import argparse
import contextlib
import time

from arguments import GATES, interleaved, random_problem, single_sequence_arguments  # beside this script

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--step", action="store_true", help="time the training step, not only the forward pass")
args = single_sequence_arguments(ap, H=[128, 192, 256, 384, 512], rounds=12, T=512)

import numpy as np  # noqa: E402  (after use_threads: OpenBLAS reads its thread count on loading)

import rnnbook as rb  # noqa: E402
from rnnbook.numba_cpu import bptt  # noqa: E402

MODES = ("split", "unsplit")


@contextlib.contextmanager
def split_allowed(mode):
    """Inside the block the plan may split units (``split``) or may not (``unsplit``)."""
    saved = bptt.UNITS_AHEAD_MAX_ROWS
    bptt.UNITS_AHEAD_MAX_ROWS = saved if mode == "split" else 0
    try:
        yield
    finally:
        bptt.UNITS_AHEAD_MAX_ROWS = saved


def timed(mode, cell, params, x, dy):
    """Seconds of one forward pass (or training step) with the units split allowed or not."""
    with split_allowed(mode):
        t0 = time.perf_counter()
        _, _, cache = rb.forward(cell, params, x, backend="numba")
        if args.step:
            rb.backward(cell, params, cache, dy)
        return time.perf_counter() - t0


def tiling(mode, cell, H):
    """The forward loop's tiling ``rows×units product`` under ``mode``."""
    with split_allowed(mode):
        t = bptt.plan_tiles(args.B, H, GATES[cell] * H, args.T, H, ahead=True)
    return f"{t.row_blocks}×{t.unit_blocks} {('loops', 'blas', 'panels')[t.product]}"


what = "training step" if args.step else "forward pass"
print(f"{what}, µs/step, units split over two threads where the plan says so, against not: "
      f"B={args.B} T={args.T} float32, {args.threads} threads, {args.rounds} rounds")
print(f"{'cell':5s} {'H':>4s} {'split':>14s} {'unsplit':>14s} {'split':>9s} {'unsplit':>9s} {'ratio':>6s} faster")
for cell in args.cells:
    for H in args.H:
        problem = random_problem(cell, H, args.T, args.B)
        times = interleaved(args.rounds, MODES, lambda m: timed(m, cell, *problem), calls=3)
        split, unsplit = (np.array(times[m]) / args.T * 1e6 for m in MODES)
        ratio = split / unsplit
        print(f"{cell:5s} {H:4d} {tiling('split', cell, H):>14s} {tiling('unsplit', cell, H):>14s} "
              f"{np.median(split):9.3f} {np.median(unsplit):9.3f} {np.median(ratio):6.3f} {np.mean(ratio < 1):.0%}")

"""The backward pass under two splits of its loop, paired in one process: e.g. two blocks of rows
with the gradients after the loop against one block with the gradients alongside it.

    python benchmarks/backward_split.py                                  # rows:2 against rows:1, B=8 T=256
    python benchmarks/backward_split.py --B 32 --T 128 --H 128 256 --rounds 15
    python benchmarks/backward_split.py --splits auto units:2 --B 1 --cells lstm

A full-BPTT backward loop on two threads can run as two blocks of batch rows, one per thread,
with the weight, bias and input gradients after it; or as one block, with the gradients on the
other thread alongside it (``bptt.run_tiles``).  ``bptt.plan_tiles`` chooses one block up to
``bptt.BEHIND_ONE_BLOCK_MAX_MACS``; this is the measurement behind that limit.

For each size one forward pass (the automatic plan) makes the cache; each round then runs the
backward pass on it under each of the two splits (``bptt.split``; three calls each, the last
kept, the order alternating from round to round): float32, two threads, random weights with noise on every entry, biases
included.  It prints the median µs per step of the backward pass under each split, the median of
the ratios second / first taken round by round, in how many rounds the second was faster, and
which split the automatic plan takes for that size.
"""
import argparse
import time

from arguments import GATES, interleaved, random_problem, single_sequence_arguments, split_argument  # beside this script

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--splits", type=split_argument, nargs=2, default=[("rows", 2), ("rows", 1)],
                metavar="SPLIT", help="two of auto, rows[:n], units[:n] (default: rows:2 rows:1)")
args = single_sequence_arguments(ap, H=[64, 128, 256], rounds=25, B=8, T=256)

import numpy as np  # noqa: E402  (after use_threads: OpenBLAS reads its thread count on loading)

import rnnbook as rb  # noqa: E402
from rnnbook.numba_cpu import bptt  # noqa: E402

NAMES = [f"{how}:{blocks}" if blocks else how for how, blocks in args.splits]


def backward_seconds(split, cell, params, cache, dy):
    with bptt.split(*split):
        t0 = time.perf_counter()
        rb.backward(cell, params, cache, dy)
        return time.perf_counter() - t0


print(f"backward pass, µs/step: {NAMES[0]} against {NAMES[1]}, B={args.B} T={args.T} float32, "
      f"{args.threads} threads, {args.rounds} rounds")
for cell in args.cells:
    for H in args.H:
        params, x, dy = random_problem(cell, H, args.T, args.B)
        _, _, cache = rb.forward(cell, params, x, backend="numba")
        times = interleaved(args.rounds, (0, 1), lambda k: backward_seconds(args.splits[k], cell, params, cache, dy),
                            calls=3)
        first, second = (np.array(times[k]) / args.T * 1e6 for k in (0, 1))
        ratio = second / first
        chosen = bptt.plan_tiles(args.B, GATES[cell] * H, H, args.T, H, behind=True)
        print(f"{cell} H={H}: {NAMES[0]} {np.median(first):.2f}, {NAMES[1]} {np.median(second):.2f}; "
              f"{NAMES[1]}/{NAMES[0]} {np.median(ratio):.3f}, faster in {np.mean(ratio < 1):.0%} of the rounds; "
              f"automatic plan: {chosen.row_blocks} row block(s)", flush=True)

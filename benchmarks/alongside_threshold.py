"""Where the gradients should run alongside the backward loop: the training step with them behind
the loop, or after it, around ``bptt.BEHIND_MIN_MACS``.

    python benchmarks/alongside_threshold.py                   # B=1 T=1024, the sizes around 2^22
    python benchmarks/alongside_threshold.py --cells lstm --H 32 --rounds 80

Where a single sequence leaves a thread idle, the weight, bias and input gradients can run on
it block of steps by block of steps while the backward loop runs (``bptt._gradients_alongside``),
from ``bptt.BEHIND_MIN_MACS`` multiply-adds in the loop on; below it they run after the loop.
This script times the training step (forward and backward, float32, two threads) both ways,
interleaved in one process (two calls of each per round, the second timed, the order alternating),
with the input projection as planned (``bptt.AHEAD_MIN_MACS``) in both, and prints the medians
of the training step and of its forward pass, the median of the paired ratios (behind / after)
and in how many rounds the gradients behind the loop were faster.  The last column says which of
the two the library chooses for that size.  The forward pass is in the table because it is where
a cost of the helper's work may show: it runs right after the previous call's backward pass.
"""
import argparse
import math
import os

from arguments import GATES, interleaved, random_problem, single_sequence_arguments, training_step  # beside this script

args = single_sequence_arguments(argparse.ArgumentParser(), H=[24, 32, 48, 64], rounds=40)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import bptt  # noqa: E402

CHOSEN = bptt.BEHIND_MIN_MACS


def step(cell, params, x, dy, mode):
    """``(forward, step)`` seconds with the gradients forced behind the loop or after it."""
    bptt.BEHIND_MIN_MACS = 0 if mode == "behind" else 1 << 62
    return training_step(cell, params, x, dy)


print(f"B={args.B} T={args.T} float32, {args.threads} threads, {args.rounds} interleaved rounds; "
      f"µs/step; load {os.getloadavg()[0]:.1f}")
print(f"{'cell':<5} {'H':>4} {'loop':>8} {'fwd after':>10} {'fwd behind':>11} {'step after':>11} "
      f"{'step behind':>12} {'paired':>7} {'behind faster':>14}  chosen")
try:
    for cell in args.cells:
        for H in args.H:
            params, x, dy = random_problem(cell, H, args.T, args.B)
            times = interleaved(args.rounds, ("behind", "after"), lambda mode: step(cell, params, x, dy, mode))
            bptt.BEHIND_MIN_MACS = CHOSEN
            after, behind = (np.array(times[m]) / args.T * 1e6 for m in ("after", "behind"))
            tiling = bptt.plan_tiles(args.B, H, GATES[cell] * H, args.T, H)
            chosen = "behind" if bptt.leaves_a_thread(tiling, ahead=False) else "after"
            print(f"{cell:<5} {H:>4} {'2^%.1f' % math.log2(tiling.macs):>8} {np.median(after[:, 0]):10.3f} "
                  f"{np.median(behind[:, 0]):11.3f} {np.median(after[:, 1]):11.3f} {np.median(behind[:, 1]):12.3f} "
                  f"{np.median(behind[:, 1] / after[:, 1]):7.3f} {np.mean(behind[:, 1] < after[:, 1]):13.0%}   {chosen}",
                  flush=True)
finally:
    bptt.BEHIND_MIN_MACS = CHOSEN

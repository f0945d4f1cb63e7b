"""Short first blocks of steps alongside the loop, or whole ones: the training step both ways.

    python benchmarks/first_blocks.py                          # B=1 T=1024: LSTM/GRU/RNN, H = 64 .. 256
    python benchmarks/first_blocks.py --cells lstm --H 96 128 --rounds 40

Where a single sequence leaves a thread idle, that thread computes the products alongside the
loop block of steps by block of steps (``bptt._inputs_alongside``, ``bptt._gradients_alongside``).
It waits for the loop's first block before it can start; with ``bptt.RAMP_MIN_MACS`` the first
two blocks are a quarter and a half of the others (``bptt.step_blocks``) where ``W_hh`` is large
enough for that wait to matter.  This script times the Numba training step (forward and
backward, float32, two threads) with the short first blocks forced on (``RAMP_MIN_MACS = 0``)
and forced off, in interleaved rounds (two calls of each per round, the second timed), and
prints the medians, their ratio and in how many rounds the short blocks were faster.  The last
column says which of the two the library chooses for that size ("(no helper)" where the products
do not run alongside the loop at all, and neither setting matters).
"""
import argparse
import os

from arguments import GATES, interleaved, random_problem, single_sequence_arguments, training_step  # beside this script

args = single_sequence_arguments(argparse.ArgumentParser(), H=[64, 96, 128, 256], rounds=30)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import bptt  # noqa: E402

CHOSEN = bptt.RAMP_MIN_MACS


def step(cell, params, x, dy, mode):
    """The training step's seconds with the short first blocks forced on or off."""
    bptt.RAMP_MIN_MACS = 0 if mode == "short" else 1 << 62
    return training_step(cell, params, x, dy)[1]


print(f"B={args.B} T={args.T} float32, {args.threads} threads, {args.rounds} interleaved rounds; "
      f"training step in µs/step; load {os.getloadavg()[0]:.1f}")
print(f"{'cell':<5} {'H':>5} {'whole':>8} {'short':>8} {'ratio':>6} {'short faster':>13}  chosen")
for cell in args.cells:
    for H in args.H:
        params, x, dy = random_problem(cell, H, args.T, args.B)
        try:
            times = interleaved(args.rounds, ("short", "whole"), lambda mode: step(cell, params, x, dy, mode))
        finally:
            bptt.RAMP_MIN_MACS = CHOSEN
        whole, short = (np.array(times[m]) / args.T * 1e6 for m in ("whole", "short"))
        tiling = bptt.plan_tiles(args.B, H, GATES[cell] * H, args.T, H)
        chosen = (("short" if bptt._ramps(tiling, args.T, args.B) else "whole")
                  if bptt.leaves_a_thread(tiling, ahead=False) else "(no helper)")
        print(f"{cell:<5} {H:>5} {np.median(whole):8.3f} {np.median(short):8.3f} "
              f"{np.median(short) / np.median(whole):6.3f} {np.mean(short < whole):12.0%}   {chosen}")

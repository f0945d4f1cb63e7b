"""The input gradient left after the backward loop: taken as one share (``bptt._share_of_what_is_left``)
or a block of steps per call (before 22bba05), interleaved in one process.

    python benchmarks/left_share.py                              # LSTM, GRU, RNN at H = 32, 64, 128
    python benchmarks/left_share.py --cells lstm --H 32 --rounds 200

Where a single sequence's backward loop runs with its gradients behind it
(``bptt._gradients_alongside``), the blocks of the input gradient nobody took during the loop
are shared between the two threads once it is over.  This script swaps the rule that decides
how many blocks a free thread takes at once, round by round (order alternating), times the
training step (forward and backward, float32, two threads) and prints the median µs/step of
each and the median paired ratio share / block (below 1: the share is faster), with its
quartiles and the share of rounds in which it was faster.

Both forms are the Python path's (``bptt._python_way``); since the products behind the loop run as
compiled calls by default (``bptt.COMPILED_ALONGSIDE``, ``alongside.py``), the script switches
that path on for its run.
"""
import argparse

from arguments import interleaved, random_problem, single_sequence_arguments, training_step  # beside this script

args = single_sequence_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]),
                                 H=[32, 64, 128], rounds=100)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import bptt  # noqa: E402

SHARE = bptt._share_of_what_is_left


def a_block_per_call(blocks, left, busy_macs, per_step_macs):
    """The rule before: the first block left, whatever the other thread still has to do."""
    return [left.pop(0)] if left else []


RULES = {"share": SHARE, "block": a_block_per_call}
bptt.COMPILED_ALONGSIDE = False                          # the Python path: the one compared here
print(f"training step, T={args.T} B={args.B}, float32, {args.threads} threads, {args.rounds} rounds")
print(f"{'cell':<5} {'H':>4} {'share µs/step':>14} {'block µs/step':>13} {'share/block':>12} {'q25-q75':>12} {'faster':>7}")
try:
    for cell in args.cells:
        for H in args.H:
            params, x, dy = random_problem(cell, H, args.T, args.B)

            def measure(rule):
                bptt._share_of_what_is_left = RULES[rule]
                return training_step(cell, params, x, dy)[1]
            for _ in range(10):                               # compile and warm up both
                measure("share"), measure("block")
            t = interleaved(args.rounds, ("share", "block"), measure, calls=3)
            share, block = np.array(t["share"]), np.array(t["block"])
            r = share / block
            print(f"{cell:<5} {H:>4} {np.median(share) / args.T * 1e6:14.3f} {np.median(block) / args.T * 1e6:13.3f} "
                  f"{np.median(r):12.3f} {np.percentile(r, 25):5.3f}-{np.percentile(r, 75):5.3f} {np.mean(r < 1):7.0%}",
                  flush=True)
finally:
    bptt._share_of_what_is_left = SHARE
    bptt.COMPILED_ALONGSIDE = True

"""The training step of two versions of the Numba backend, paired in one process.

    python benchmarks/step_paired.py d6bf7d8 --cells lstm gru --H 64         # that commit against the working tree
    python benchmarks/step_paired.py HEAD --H 64 --old-strategy auto --new-strategy panels
    python benchmarks/step_paired.py HEAD --cells lstm --H 128 --B 8 --rounds 40
    python benchmarks/step_paired.py HEAD --cells gru --B 32 --T 64 --D 32 --H 64   # the GRU loop's shape

This machine's speed drifts by a third within minutes, so two versions timed in separate
runs differ by more than most changes do.  Here both are in one process: ``rb_old`` is
``rnnbook`` of the given commit (``git archive``) and ``rb_new`` the working tree's, each
a package of its own with kernels that Numba compiles and caches apart
(``compile_paired.paired_packages``).  Each round calls the training step (forward, then
backward with every gradient; float32, random weights with noise on every entry, biases
included) of each version three times, the order alternating from round to round, and
keeps the last call (``arguments.interleaved``).  It prints each version's median µs per
step (forward and whole step), the median of the ratios new/old taken round by round and
in how many rounds the new version was faster.  An A/A run (a commit against itself)
gives ratios of 0.99-1.04 at 80-100 rounds on the development VM: differences of a few
percent want that many rounds.

``--old-strategy`` and ``--new-strategy`` set each version's product (``bptt.strategy``):
e.g. the automatic plan of the old code against a forced path in the new.  ``--old-split``
and ``--new-split`` set how each version cuts the loop over threads (``bptt.split``):
``auto``, or ``rows`` / ``units`` with a block count, as in ``--new-split units:2``.
"""
import argparse
import importlib
import sys
import tempfile
import time

from arguments import inputs_argument, interleaved, random_problem, single_sequence_arguments, split_argument  # beside this script
from compile_paired import paired_packages

STRATEGIES = ("auto", "loops", "blas", "panels")
ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("old", help="the commit to compare against (the working tree is the new version)")
ap.add_argument("--old-strategy", choices=STRATEGIES, default="auto")
ap.add_argument("--new-strategy", choices=STRATEGIES, default="auto")
ap.add_argument("--old-split", type=split_argument, default=("auto", None))
ap.add_argument("--new-split", type=split_argument, default=("auto", None))
inputs_argument(ap)
args = single_sequence_arguments(ap, H=[64], rounds=80)

VERSIONS = ("rb_old", "rb_new")
STRATEGY = {"rb_old": args.old_strategy, "rb_new": args.new_strategy}
SPLIT = {"rb_old": args.old_split, "rb_new": args.new_split}

import numpy as np  # noqa: E402  (after use_threads: OpenBLAS reads its thread count on loading)


def timed_step(rb, bptt, strategy, split, cell, params, x, dy):
    """``(seconds of the forward pass, seconds of the training step)`` on version ``rb``."""
    with bptt.strategy(strategy), bptt.split(*split):
        t0 = time.perf_counter()
        _, _, cache = rb.forward(cell, params, x, backend="numba")
        t1 = time.perf_counter()
        rb.backward(cell, params, cache, dy)
        return t1 - t0, time.perf_counter() - t0


with tempfile.TemporaryDirectory() as work:
    sys.path.insert(0, paired_packages(args.old, work))
    rb = {v: importlib.import_module(v) for v in VERSIONS}
    bptt = {v: importlib.import_module(v + ".numba_cpu.bptt") for v in VERSIONS}
    print(f"training step, µs/step: {args.old} ({args.old_strategy}, split {args.old_split}) against the "
          f"working tree ({args.new_strategy}, split {args.new_split}), B={args.B} T={args.T} D={args.D or 'H'} float32, {args.threads} threads, {args.rounds} rounds")
    for cell in args.cells:
        for H in args.H:
            problem = random_problem(cell, H, args.T, args.B, args.D)
            times = interleaved(args.rounds, VERSIONS,
                                lambda v: timed_step(rb[v], bptt[v], STRATEGY[v], SPLIT[v], cell, *problem), calls=3)
            old, new = (np.array(times[v]) / args.T * 1e6 for v in VERSIONS)
            ratio = new[:, 1] / old[:, 1]
            print(f"{cell} H={H}: old forward {np.median(old[:, 0]):.3f} step {np.median(old[:, 1]):.3f}, "
                  f"new forward {np.median(new[:, 0]):.3f} step {np.median(new[:, 1]):.3f}; "
                  f"new/old forward {np.median(new[:, 0] / old[:, 0]):.3f} step {np.median(ratio):.3f}, "
                  f"new faster in {np.mean(ratio < 1):.0%} of the rounds")

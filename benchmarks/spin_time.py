"""How long the helper threads should spin after a job before they sleep: the training step
with different spin times, interleaved in one process.

    python benchmarks/spin_time.py                             # 200, 500, 1000 µs; 30 rounds
    python benchmarks/spin_time.py --spins 200 1000 3000 --rounds 20

A helper that has finished a job watches for the next one for ``RNNBOOK_SPIN_US`` microseconds
(``workers.SPIN_SECONDS``) before it blocks, and the caller spins as long for its helpers'
results; waking a sleeping thread costs ~100 µs on the development VM.  This script sets the
spin of the process's helpers (``Helper.spins``, which both use) to each value in turn, round
by round (order alternating), times the training step (forward and backward, float32, two
threads) of a few configurations -- single sequences whose helper works only in the backward
pass, single sequences whose helper works in both, and batches on two row blocks -- and prints
the median µs/step for each spin time with its median paired ratio to the first.
"""
import argparse

from arguments import interleaved, positive, random_problem, use_threads, training_step  # beside this script

ap = argparse.ArgumentParser()
ap.add_argument("--spins", type=int, nargs="+", default=[200, 500, 1000], help="spin times in µs")
ap.add_argument("--rounds", type=positive, default=30)
ap.add_argument("--threads", type=positive, default=2)
args = ap.parse_args()
use_threads(args.threads)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import workers  # noqa: E402

#: (cell, H, T, B): LSTM H=32 and RNN H=64 use the helper in the backward pass only (between two
#: of its jobs lies a forward pass of ~0.3-0.4 ms), the next three in both passes, the last three
#: split their batch into two row blocks
CONFIGS = [("lstm", 32, 1024, 1), ("rnn", 64, 1024, 1), ("lstm", 64, 1024, 1), ("gru", 64, 1024, 1),
           ("lstm", 128, 1024, 1), ("rnn", 128, 256, 8), ("lstm", 128, 256, 8), ("gru", 64, 64, 32)]
per_us = workers._spins_per_second() / 1e6
pool = workers.helpers(max(1, args.threads - 1))
chosen = [h.spins for h in pool]


def step(cell, params, x, dy, spin_us):
    for h in pool:
        h.spins = max(1, int(spin_us * per_us))
    return training_step(cell, params, x, dy)[1]


print(f"float32, {args.threads} threads, {args.rounds} interleaved rounds; training step in µs/step "
      f"(paired ratio to {args.spins[0]} µs); the library spins {workers.SPIN_SECONDS * 1e6:.0f} µs")
try:
    for cell, H, T, B in CONFIGS:
        params, x, dy = random_problem(cell, H, T, B)
        times = interleaved(args.rounds, tuple(args.spins), lambda s: step(cell, params, x, dy, s))
        base = np.array(times[args.spins[0]])
        print(f"{cell:<5} H={H:<4} T={T:<5} B={B:<3}" + "".join(
            f"  {s:>5} µs: {np.median(times[s]) / T * 1e6:8.3f} ({np.median(np.array(times[s]) / base):.3f})"
            for s in args.spins), flush=True)
finally:
    for h, s in zip(pool, chosen):
        h.spins = s

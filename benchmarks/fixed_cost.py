"""What a call of the Numba backend costs besides its steps: the training step and the forward
pass timed at several sequence lengths, interleaved in one process, and fitted as a line.

    python benchmarks/fixed_cost.py                                # LSTM, GRU, RNN at H=64, B=1
    python benchmarks/fixed_cost.py --cells lstm --H 64 128 --T 512 1024 2048 4096 --rounds 60
    python benchmarks/fixed_cost.py --cells gru --B 32 --D 32 --H 64 --T 64 128 256 512   # the GRU loop's shape

For each configuration the script times the training step (forward, then backward with every
gradient; float32, random weights with noise on every entry, biases included; ``--D`` inputs
per step, ``H`` if not given) at each length ``T``, the lengths in turn within a round (order
alternating from round to round, each call kept after two of its own kind:
``arguments.interleaved``), and fits the medians by least squares::

    time(T)  =  a  +  b · T          a: µs per call (the fixed cost),  b: µs per step

The fixed cost ``a`` is what no loop speed-up touches: the Python around the kernels (argument
checks, recording the products, packing ``W_hh``, starting the helper), the first block of the
input projection that the loop waits for, and what is left after the loop.  ``a / (a + b·T)``
is the share of the step it takes at a given ``T``.  The fit uses every length given; a line
that does not fit (a per-step cost that changes with ``T``, e.g. arrays that leave a cache)
shows as residuals, which are printed with it.
"""
import argparse

from arguments import inputs_argument, interleaved, random_problem, single_sequence_arguments, training_step  # beside this script

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
inputs_argument(ap)
args = single_sequence_arguments(ap, H=[64], rounds=40, T=[512, 1024, 2048])
Ts = sorted(set(args.T))
if len(Ts) < 2:
    ap.error("--T needs at least two different lengths to fit a line")

import numpy as np  # noqa: E402  (after use_threads: OpenBLAS reads its thread count on loading)


def fit(lengths, times_us):
    """``(a, b, residuals)`` of the least-squares line ``a + b·T`` through ``(lengths, times_us)``."""
    b, a = np.polyfit(lengths, times_us, 1)
    return a, b, times_us - (a + b * np.asarray(lengths))


print(f"float32, B={args.B}, D={args.D or 'H'}, {args.threads} threads, {args.rounds} interleaved rounds; "
      f"medians in µs per call; fit a + b·T (a: µs per call, b: µs per step)")
for cell in args.cells:
    for H in args.H:
        problems = {T: random_problem(cell, H, T, args.B, args.D) for T in Ts}
        times = interleaved(args.rounds, tuple(Ts), lambda T: training_step(cell, *problems[T]))
        forward = np.array([np.median([t[0] for t in times[T]]) for T in Ts]) * 1e6
        step = np.array([np.median([t[1] for t in times[T]]) for T in Ts]) * 1e6
        print(f"{cell} H={H}: " + ", ".join(f"T={T} step {s:.0f} (forward {f:.0f})"
                                            for T, s, f in zip(Ts, step, forward)))
        for name, medians in (("step", step), ("forward", forward)):
            a, b, res = fit(Ts, medians)
            shares = ", ".join(f"{a / (a + b * T):.0%} at T={T}" for T in Ts)
            print(f"  {name:<8} a = {a:6.0f} µs per call, b = {b:.3f} µs per step; a is {shares}; "
                  f"residuals {', '.join(f'{r:+.0f}' for r in res)} µs", flush=True)

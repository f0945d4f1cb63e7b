"""The input projection's bias: written over the whole result by the calling thread before the
threads add their products (the form before 2026-12-06), or by each thread into its own rows.

    python benchmarks/input_bias.py                             # both parts below
    python benchmarks/input_bias.py --cells lstm --H 256 --rounds 60

``bptt.input_projection`` computes ``G = X W_ihᵀ + b`` as one GEMM with its rows split over the
threads, each adding its product into rows that already hold the bias (``beta = 1``).  Part 1
times the projection alone at a few sizes ``(R, D, G)``, a fresh result array every call (from
the heap, or freshly mapped above the 32 MiB ``mmap`` threshold of ``numba_cpu/memory.py``),
both forms interleaved call by call.  Part 2 times the training step (forward and backward,
float32) of each cell with both forms, interleaved in one process, at a batch that runs the
loop on row blocks (B=8 by default; at B=1 the projection runs alongside the loop in blocks of
steps, which write their own bias either way).  Both print medians and the paired ratio
(threads' own rows / caller first) with how often the threads' own rows were faster.
"""
import argparse
import os
import time

from arguments import GATES, interleaved, random_problem, single_sequence_arguments, training_step  # beside this script

args = single_sequence_arguments(argparse.ArgumentParser(), H=[256], rounds=30, B=8, T=256)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import bptt, gemm  # noqa: E402
from rnnbook.numba_cpu.workers import in_parallel  # noqa: E402

OWN_ROWS = bptt.input_projection


def caller_first(x, W_ih, b):
    """The form before: the bias over the whole result on this thread, then the products on
    the threads (exact where the projection runs before the loop, not alongside it)."""
    T, B, D = x.shape
    X, W = x.reshape(T * B, D), W_ih
    out = np.empty((T * B, W.shape[0]), x.dtype)
    out[:] = b

    def part(r0, r1):
        if (r1 - r0) * D * W.shape[0] >= bptt.INPUT_PANELS_MIN_MACS:
            gemm.add_product_rows(X, W, out, r0, r1)
        else:
            out[r0:r1] += X[r0:r1] @ W.T
    bptt.on_threads(part, T * B, T * B * D * W.shape[0], per_step=True)
    return out.reshape(T, B, -1)


def report(name, first, own):
    first, own = np.array(first), np.array(own)
    print(f"{name:<28} {np.median(first):11.1f} {np.median(own):9.1f} {np.median(own / first):7.3f} "
          f"{np.mean(own < first):12.0%}", flush=True)


def projection_alone(R, D, G, rounds):
    """Part 1: µs per call of the two forms on ``args.threads`` row blocks."""
    rng = np.random.default_rng(R + D + G)
    X = rng.standard_normal((R, D)).astype(np.float32)
    W = rng.standard_normal((G, D)).astype(np.float32)
    b = rng.standard_normal(G).astype(np.float32)
    blocks = bptt.block_bounds(R, args.threads)

    def first():
        out = np.empty((R, G), np.float32)
        out[:] = b
        in_parallel(lambda r0, r1: gemm.add_product_rows(X, W, out, r0, r1), blocks)

    def own():
        out = np.empty((R, G), np.float32)

        def part(r0, r1):
            out[r0:r1] = b
            gemm.add_product_rows(X, W, out, r0, r1)
        in_parallel(part, blocks)
    def timed(form):
        t0 = time.perf_counter()
        form()
        return (time.perf_counter() - t0) * 1e6
    with gemm.single_threaded_blas():
        first(), own()                                  # warm-up: the first call of each is slower
        times = interleaved(rounds, (first, own), timed, calls=1)
    report(f"R={R} D={D} G={G}", times[first], times[own])


def step(cell, params, x, dy, form):
    """The training step in µs/step with ``form`` as the input projection."""
    bptt.input_projection = form
    return training_step(cell, params, x, dy)[1] / args.T * 1e6


print(f"float32, {args.threads} threads; load {os.getloadavg()[0]:.1f}")
print(f"{'1. projection alone, µs':<28} {'caller first':>11} {'own rows':>9} {'paired':>7} {'own faster':>12}")
for R, D, G in ((2048, 256, 1024), (4096, 128, 512), (8192, 256, 1024), (8192, 1024, 1024)):
    projection_alone(R, D, G, args.rounds)
print(f"{'2. training step, µs/step':<28} {'caller first':>11} {'own rows':>9} {'paired':>7} {'own faster':>12}"
      f"   (B={args.B} T={args.T} D=H)")
try:
    for cell in args.cells:
        for H in args.H:
            G = GATES[cell] * H
            if bptt.leaves_a_thread(bptt.plan_tiles(args.B, H, G, args.T, H), ahead=True):
                print(f"{cell} H={H}: the projection runs alongside the loop here; choose B >= 4")
                continue
            params, x, dy = random_problem(cell, H, args.T, args.B)
            times = interleaved(args.rounds, (caller_first, OWN_ROWS), lambda form: step(cell, params, x, dy, form))
            report(f"{cell} H={H}", times[caller_first], times[OWN_ROWS])
finally:
    bptt.input_projection = OWN_ROWS

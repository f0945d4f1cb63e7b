"""What the pointwise part of a step costs: the fused gate loops alone, on one core.

    python benchmarks/gate_cost.py                       # LSTM and GRU, B=32, H = 16 .. 1024
    python benchmarks/gate_cost.py --B 8 --H 64 256

A step of the recurrence is a matrix product (``profile_numba.py`` and the SGEMM ceiling say
what that costs) and the gates: ``σ``/``tanh`` and the state update per hidden unit forward,
their derivatives backward.  The NP bound of ``cpu.py`` counts only the products; at small
``H`` the gates are as large a part of the step.  Here the cells' own per-row functions
(``lstm._cell_forward``/``_cell_backward``, ``gru._cell_forward_after``/``_cell_backward_after``)
run over ``B`` rows and 4 steps, thousands of times in one compiled loop, float32: ns per
hidden unit and µs per step of ``B`` rows.  The 4 steps' arrays are reused, so they stay
in the L2 cache while they fit (about ``60·B·H`` bytes; at B=32 up to H≈256 on a 1 MB L2),
and come from L3 beyond.  A row's loop over ``H`` units is vectorised (16 float32 lanes with
AVX-512); what each row costs besides shows as the higher cost per unit at small ``H``.
The last column is the float32 ``tanh`` of ``functions.py`` alone, over 4096 numbers.
"""
import argparse
import os
import sys
import time

from arguments import positive  # beside this script

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from numba import njit  # noqa: E402

from rnnbook.numba_cpu import gru, lstm  # noqa: E402
from rnnbook.numba_cpu.functions import KERNEL_OPTIONS, tanh  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--B", type=positive, default=32)
ap.add_argument("--H", type=positive, nargs="+", default=[16, 64, 256, 1024])
args = ap.parse_args()
STEPS = 4                       # steps whose arrays are reused

_lstm_forward, _lstm_backward = lstm._cell_forward, lstm._cell_backward
_gru_forward, _gru_backward = gru._cell_forward_after, gru._cell_backward_after


@njit(**KERNEL_OPTIONS)
def lstm_forward(z, cs, hs, n):
    H = hs.shape[2]
    for _ in range(n):
        for t in range(z.shape[0]):
            for r in range(z.shape[1]):
                _lstm_forward(z[t, r], cs[t, r], hs[t + 1, r], cs[t + 1, r], 0, H)


@njit(**KERNEL_OPTIONS)
def lstm_backward(acts, cs, dh, dc, dz, n):
    H = dh.shape[1]
    for _ in range(n):
        for t in range(acts.shape[0]):
            for r in range(acts.shape[1]):
                _lstm_backward(acts[t, r], cs[t, r], cs[t + 1, r], dh[r], dc[r], dz[t, r], 0, H)


@njit(**KERNEL_OPTIONS)
def gru_forward(acts, gh, hs, ghn, n):
    H = hs.shape[2]
    for _ in range(n):
        for t in range(acts.shape[0]):
            for r in range(acts.shape[1]):
                _gru_forward(acts[t, r], gh[r], hs[t, r], hs[t + 1, r], ghn[t, r], 0, H)


@njit(**KERNEL_OPTIONS)
def gru_backward(acts, ghn, hs, dh, dgi, dgh, n):
    H = hs.shape[2]
    for _ in range(n):
        for t in range(acts.shape[0]):
            for r in range(acts.shape[1]):
                _gru_backward(acts[t, r], ghn[t, r], hs[t, r], dh[r], dgi[t, r], dgh[r], 0, H)


@njit(**KERNEL_OPTIONS)
def tanh_alone(x, y, n):
    for _ in range(n):
        for j in range(x.shape[0]):
            y[j] = tanh(x[j])


def tanh_ns():
    """ns per float32 ``tanh`` (in L1), the best of 5 runs of ~20 ms each."""
    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    y = np.zeros_like(x)
    tanh_alone(x, y, 1)
    n = 20000
    return min(_once(tanh_alone, (x, y), n) for _ in range(5)) / (n * x.size) * 1e9


def timed(fn, make, B, H):
    """ns per unit and µs per step of ``B`` rows, the best of 5 runs of ~20 ms each."""
    arrays = make()
    fn(*arrays, 1)                                  # compiled
    n = max(1, int(2e7 / (STEPS * B * H * 2.0)))    # ~20 ms at ~2 ns per unit
    best = min(_once(fn, make(), n) for _ in range(5))
    per_step = best / (n * STEPS)
    return per_step * 1e9 / (B * H), per_step * 1e6


def _once(fn, arrays, n):
    t0 = time.perf_counter()
    fn(*arrays, n)
    return time.perf_counter() - t0


def problems(B, H, rng):
    f32 = np.float32
    gates = lambda k: rng.uniform(0.05, 0.95, (STEPS, B, k * H)).astype(f32)   # noqa: E731 - outputs of σ/tanh
    normal = lambda *shape: rng.standard_normal(shape).astype(f32)             # noqa: E731

    def gru_gates():
        """[r|z|n] with z = 1: the loop multiplies ``dh`` by z at every pass, and thousands of
        passes with z < 1 would take it into the (slow) subnormals and leave it there."""
        acts = gates(3)
        acts[:, :, H:2 * H] = 1.0
        return acts

    return {
        "lstm forward": (lstm_forward, lambda: (normal(STEPS, B, 4 * H), normal(STEPS + 1, B, H),
                                                normal(STEPS + 1, B, H))),
        "lstm backward": (lstm_backward, lambda: (gates(4), normal(STEPS + 1, B, H), normal(B, H),
                                                  normal(B, H), np.zeros((STEPS, B, 4 * H), f32))),
        "gru forward": (gru_forward, lambda: (normal(STEPS, B, 3 * H), normal(B, 3 * H), normal(STEPS + 1, B, H),
                                              np.zeros((STEPS, B, H), f32))),
        "gru backward": (gru_backward, lambda: (gru_gates(), normal(STEPS, B, H), normal(STEPS + 1, B, H), normal(B, H),
                                                np.zeros((STEPS, B, 3 * H), f32), np.zeros((B, 3 * H), f32))),
    }


print(f"fused gate loops alone, one core, float32, B={args.B}, 4 steps reused: ns per unit (µs per step)")
names = list(problems(args.B, 1, np.random.default_rng(0)))
print(f"{'H':>6} " + " ".join(f"{name:>20}" for name in names))
for H in args.H:
    cells = []
    for name, (fn, make) in problems(args.B, H, np.random.default_rng(H)).items():
        ns, us = timed(fn, make, args.B, H)
        cells.append(f"{ns:.2f} ({us:.2f})")
    print(f"{H:>6} " + " ".join(f"{c:>20}" for c in cells))
print(f"\nfloat32 tanh alone (functions.tanh, in L1): {tanh_ns():.3f} ns per number")

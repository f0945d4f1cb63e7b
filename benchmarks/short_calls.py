"""Short sequences: the fixed cost of a call, Numba backend against the NumPy reference.

    python benchmarks/short_calls.py                       # B=1, T = 1, 4, 16, 64, LSTM/GRU/RNN, H = 32, 128
    python benchmarks/short_calls.py --cells lstm --H 128 --T 1 2 --reps 500

``cpu.py`` times whole sequences (T = 64 … 1024 steps per call).  Generating text one
token at a time, online learning, or a book exercise's ``step_forward`` call the backend
once per step instead, and then what each call costs besides its steps decides: checks,
allocating the caches, handing the products to threads, copying ``W_hh`` into the layout
the compiled loop reads.  This script times one forward call and one training call
(forward + backward) of ``T`` steps at batch 1, float32, for both backends, in interleaved
repetitions (median µs per call) and their ratio: where it passes 1, the Numba backend
starts to win.  (Unlike `cpu.py`, no wait for the other backend's threads between calls: each
runs right after the other, which slows both, the Numba backend more at T ≥ 4.)
Last, the NumPy reference's own training step at B = 1 and at B = 2: at B = 1 NumPy's
``matmul`` computes the reference's weight gradients without BLAS (see the end of the
script), which flatters every Numba/NumPy ratio at batch size 1.
"""
import argparse
import time

from arguments import positive, use_threads  # beside this script

ap = argparse.ArgumentParser()
ap.add_argument("--cells", nargs="+", choices=["lstm", "gru", "rnn"], default=["lstm", "gru", "rnn"])
ap.add_argument("--H", type=positive, nargs="+", default=[32, 128])
ap.add_argument("--T", type=positive, nargs="+", default=[1, 4, 16, 64])
ap.add_argument("--reps", type=positive, default=300)
ap.add_argument("--threads", type=positive, default=2)
args = ap.parse_args()
use_threads(args.threads)

import numpy as np  # noqa: E402

import rnnbook as rb  # noqa: E402

BACKENDS = ("numpy", "numba")


def timed(calls, reps):
    """Median seconds of each of ``calls``, run in turn ``reps`` times after a warm-up."""
    for call in calls:
        for _ in range(10):
            call()
    times = [[] for _ in calls]
    for _ in range(reps):
        for call, spent in zip(calls, times):
            t0 = time.perf_counter()
            call()
            spent.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


print(f"B=1, float32, {args.threads} threads; median µs per call over {args.reps} interleaved repetitions")
print(f"{'cell':5} {'H':>4} {'T':>4} | {'forward NumPy':>13} {'Numba':>7} {'ratio':>6} | "
      f"{'training NumPy':>14} {'Numba':>7} {'ratio':>6}")
for cell in args.cells:
    options = {"reset_after": True} if cell == "gru" else {}
    for H in args.H:
        params = {k: v.astype(np.float32) for k, v in rb.init_params(cell, H, H, seed=0, **options).items()}
        for T in args.T:
            rng = np.random.default_rng(T)
            x = rng.standard_normal((T, 1, H)).astype(np.float32)
            dy = rng.standard_normal((T, 1, H)).astype(np.float32)

            def forward(backend):
                return lambda: rb.forward(cell, params, x, backend=backend, **options)

            def train(backend):
                def call():
                    _, _, cache = rb.forward(cell, params, x, backend=backend, **options)
                    rb.backward(cell, params, cache, dy)
                return call
            fw = timed([forward(b) for b in BACKENDS], args.reps)
            tr = timed([train(b) for b in BACKENDS], args.reps)
            print(f"{cell:5} {H:>4} {T:>4} | {fw[0] * 1e6:>13.0f} {fw[1] * 1e6:>7.0f} {fw[0] / fw[1]:>5.2f}× | "
                  f"{tr[0] * 1e6:>14.0f} {tr[1] * 1e6:>7.0f} {tr[0] / tr[1]:>5.2f}×", flush=True)
print("\nratio: NumPy's time over Numba's (above 1: the Numba backend is faster)")

# The reference's own cost at B = 1: its per-step weight gradients ``dz.T @ x_t`` are products
# whose shared dimension is the batch, and NumPy's ``matmul`` computes those of a shared
# dimension 1 without BLAS.  Twice the rows (B = 2) then takes less time than one.
T_REF = 64
print(f"\nNumPy reference, training call of T={T_REF} steps, µs per step: B=1 against B=2 (twice the work)")
for cell in args.cells:
    options = {"reset_after": True} if cell == "gru" else {}
    for H in args.H:
        params = {k: v.astype(np.float32) for k, v in rb.init_params(cell, H, H, seed=0, **options).items()}
        calls = []
        for B in (1, 2):
            rng = np.random.default_rng(B)
            x = rng.standard_normal((T_REF, B, H)).astype(np.float32)
            dy = rng.standard_normal((T_REF, B, H)).astype(np.float32)

            def call(x=x, dy=dy):
                _, _, cache = rb.forward(cell, params, x, backend="numpy", **options)
                rb.backward(cell, params, cache, dy)
            calls.append(call)
        one, two = timed(calls, max(5, args.reps // 15))
        print(f"{cell:5} {H:>4}   B=1 {one / T_REF * 1e6:7.1f}   B=2 {two / T_REF * 1e6:7.1f}")

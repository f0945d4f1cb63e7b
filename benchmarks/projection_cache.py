"""What the input projection of one row block costs with its arrays in the caches and out.

    python benchmarks/projection_cache.py                         # the GRU loop's shape
    python benchmarks/projection_cache.py --T 64 --K 64 --N 256 --rounds 10

When a loop runs on row blocks, each thread first projects its own rows for every step
(``gemm.project_rows``: ``G[t, r] = b + X[t, r] @ M`` for ``r0 <= r < r1``) and then runs
the recurrence over them.  Timed alone and called again and again, it finds ``G (T, B, N)``
and ``X (T, B, K)`` in the caches; inside a training step they are new arrays, or arrays
that the rest of the step has pushed out.  Here one thread times the call (float32, random
``X``, ``W_ih`` and bias) three ways, interleaved round by round, median µs per step:

* ``warm``: called back to back, its arrays left in the caches;
* ``flushed``: after writing a 64 MiB array (larger than the L2 and L3 the VM shows), so
  that ``G`` and ``X`` come from memory: each line of ``G`` is read before it is written;
* ``G written``: flushed, then ``G``'s rows written once, so that they are in the L2 cache
  as far as they fit (1 MB on the development VM: 16 rows × 192 float32 × T up to ~80)
  and in L3 beyond; ``X`` still comes from memory.

The difference between ``warm`` and ``flushed`` is what the projection pays for its memory
traffic in a training step (where it runs as ``flushed`` does: compare ``profile_numba.py
... --calls``), which no faster product kernel removes.
"""
import argparse
import time

from arguments import interleaved, positive, use_threads  # beside this script

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--T", type=positive, default=256, help="steps")
ap.add_argument("--B", type=positive, default=32, help="batch rows of X and G")
ap.add_argument("--rows", type=positive, default=16, help="rows of the block projected (the first ones)")
ap.add_argument("--K", type=positive, default=32, help="inputs per step (D)")
ap.add_argument("--N", type=positive, default=192, help="outputs per step (G·H)")
ap.add_argument("--calls", type=positive, default=100, help="calls per mode and round")
ap.add_argument("--rounds", type=positive, default=6)
args = ap.parse_args()
if args.rows > args.B:
    ap.error("--rows must be at most --B")
use_threads(1)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import gemm  # noqa: E402

T, B, K, N, rows = args.T, args.B, args.K, args.N, args.rows
rng = np.random.default_rng(0)
X = rng.standard_normal((T, B, K)).astype(np.float32)
W = rng.standard_normal((N, K)).astype(np.float32)
b = rng.standard_normal(N).astype(np.float32)
M = gemm.operand(W.T, gemm.PANELS)
G = np.empty((T, B, N), np.float32)
flush = np.zeros(64 * 2 ** 20 // 4, np.float32)

gemm.project_rows(X, M, b, G, 0, rows, gemm.PANELS)           # compile (or load) first
assert np.allclose(G[:, :rows], b + X[:, :rows] @ W.T, rtol=1e-4, atol=1e-4)


def before(mode):
    """Leave the caches as ``mode`` says (see the docstring)."""
    if mode != "warm":
        flush[...] += 1.0
    if mode == "G written":
        G[:, :rows] = 0.0


def median_us_per_step(mode):
    """The median of ``--calls`` calls, each after :func:`before`, in µs per step."""
    times = []
    for _ in range(args.calls):
        before(mode)
        t0 = time.perf_counter()
        gemm.project_rows(X, M, b, G, 0, rows, gemm.PANELS)
        times.append(time.perf_counter() - t0)
    return np.median(times) / T * 1e6


modes = ("warm", "flushed", "G written")
medians = interleaved(args.rounds, modes, median_us_per_step, calls=1)

flops = 2 * rows * K * N
print(f"project_rows, float32, one thread: T={T}, {rows} of B={B} rows, K={K}, N={N}; "
      f"{args.rounds} rounds of {args.calls} calls per mode; µs per step (median of each round), GFLOP/s")
for mode in modes:
    us = np.array(medians[mode])
    print(f"{mode:<11} {us.min():6.2f} – {us.max():6.2f} µs/step   "
          f"{flops / us.max() / 1e3:5.1f} – {flops / us.min() / 1e3:5.1f} GFLOP/s")

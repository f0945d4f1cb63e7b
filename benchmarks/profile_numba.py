"""Where a Numba training step spends its time: the phases of ``numba_cpu.bptt``, per time step.

    python benchmarks/profile_numba.py lstm 256 32 256          # cell T B H [D]
    python benchmarks/profile_numba.py gru 128 64 512 --reps 5

Phases (see ``rnnbook/numba_cpu/bptt.py``), each timed without the phases inside it: the input
projection (one GEMM), the compiled recurrence forward and backward (``bptt.run``/``bptt.run_tiles``:
per-step product + fused gates), the weight, bias and input-gradient GEMMs after the loop (run
together), and the rest (allocation, checks).  Where the loop runs on a single block and the
products run alongside it (``bptt._inputs_alongside``, ``_gradients_alongside``), the loop and
its products are one phase; phases under 1% of the step are not listed.
Each phase's recurrent or GEMM FLOP rate is printed against the SGEMM ceiling measured here.

With ``--calls`` the steps are then run again under ``cProfile`` and the calling thread's own
calls that take at least 1% of the step are listed by their own time (compiled kernels such as
``_backward_after_tile`` count whole; the helper thread's calls are not seen, only the calling
thread's wait for it, ``workers.spin_until``; the phase timers' own calls, such as
``getrusage``, show too).  This splits a phase into its kernels, e.g. the forward's input
projection (``gemm.project_rows``) and loop on each row block.
"""
import argparse
import os
import resource
import sys
import time
from collections import defaultdict

ap = argparse.ArgumentParser()
ap.add_argument("cell", choices=["rnn", "lstm", "gru"])
ap.add_argument("T", type=int)
ap.add_argument("B", type=int)
ap.add_argument("H", type=int)
ap.add_argument("D", type=int, nargs="?")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--calls", action="store_true",
                help="then the calling thread's own calls under cProfile, in µs/step (see the docstring)")
args = ap.parse_args()
for v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = str(args.threads)
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import rnnbook as rb  # noqa: E402
from rnnbook.numba_cpu import bptt  # noqa: E402

T, B, H = args.T, args.B, args.H
D = args.D or H
G = {"rnn": 1, "lstm": 4, "gru": 3}[args.cell]
acc = defaultdict(float)
faults = defaultdict(int)   # minor page faults per phase (a fresh page costs ~µs: see numba_cpu/memory.py)


def minor_faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


_open = []   # [name, time spent in timed calls inside it, faults inside them] of the timed calls under way


def timed(name, fn):
    """``fn`` with its time (and page faults) added to ``acc[name]``, less what timed calls
    inside it took (those count under their own names).  ``name`` may be a function of no
    arguments, read at each call (the phase)."""
    def wrapper(*a, **k):
        label = name() if callable(name) else name
        _open.append([label, 0.0, 0])
        t0, f0 = time.perf_counter(), minor_faults()
        try:
            return fn(*a, **k)
        finally:
            dt, df = time.perf_counter() - t0, minor_faults() - f0
            _, inner, inner_faults = _open.pop()
            acc[label] += dt - inner
            faults[label] += df - inner_faults
            if _open:
                _open[-1][1] += dt
                _open[-1][2] += df
    return wrapper


phase = {"name": "forward"}
recurrence = lambda: f"recurrence ({phase['name']})"  # noqa: E731
bptt.run = timed(recurrence, bptt.run)
bptt.run_tiles = timed(recurrence, bptt.run_tiles)
# the cells record the input projection (forward) and the weight, bias and input gradients
# (backward) with ``bptt.deferred()``/``together()``; ``run_tiles`` runs them in one
# ``_run_jobs`` call before or after the loop -- timed there -- or, when the loop runs on a
# single block, alongside it on the other thread: then that time is the loop's own
bptt._run_jobs = timed(lambda: "input projection GEMM" if phase["name"] == "forward" else "gradient GEMMs (W, b, x)",
                       bptt._run_jobs)
bptt._inputs_alongside = timed("recurrence + input projection alongside", bptt._inputs_alongside)
bptt._gradients_alongside = timed("recurrence + gradient GEMMs alongside", bptt._gradients_alongside)
# (the variant cells still compute the input projection at once, outside any of these)
bptt.input_projection = timed("input projection GEMM", bptt.input_projection)

rng = np.random.default_rng(0)
params = rb.init_params(args.cell, D, H, dtype=np.float32)
x = rng.standard_normal((T, B, D)).astype(np.float32)
dy = rng.standard_normal((T, B, H)).astype(np.float32)


def step():
    phase["name"] = "forward"
    t0 = time.perf_counter()
    y, _, cache = rb.forward(args.cell, params, x, backend="numba")
    phase["name"] = "backward"
    rb.backward(args.cell, params, cache, dy)
    return time.perf_counter() - t0


step()
acc.clear()
faults.clear()
f_start = minor_faults()
total = sum(step() for _ in range(args.reps))
f_total = minor_faults() - f_start
a = np.random.default_rng(1).standard_normal((2048, 2048)).astype(np.float32)
a @ a
t0 = time.perf_counter()
for _ in range(3):
    a @ a
sgemm = 3 * 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9
rec = 2 * G * H * H * B                     # recurrent FLOPs per step, forward
inp = 2 * G * H * D * B                     # input-side FLOPs per step (one GEMM)
flops = {"input projection GEMM": inp, "recurrence (forward)": rec, "recurrence (backward)": rec,
         "gradient GEMMs (W, b, x)": 2 * inp + rec,
         "recurrence + input projection alongside": rec + inp,
         "recurrence + gradient GEMMs alongside": rec + 2 * inp + rec}
print(f"{args.cell} T={T} B={B} D={D} H={H} float32, {args.threads} threads, SGEMM ceiling {sgemm:.0f} GFLOP/s, "
      f"load {os.getloadavg()[0]:.1f}")
print(f"{'phase':<40} {'µs/step':>9} {'share':>6} {'GFLOP/s':>8} {'faults/call':>12}")
us_total = total / args.reps / T * 1e6
for name, t in sorted(acc.items(), key=lambda kv: -kv[1]):
    us = t / args.reps / T * 1e6
    if us < 0.01 * us_total:                # e.g. the loop's own time when it ran with the products
        continue
    gf = flops.get(name, 0) / (us * 1e-6) / 1e9
    print(f"{name:<40} {us:9.1f} {us / us_total:6.0%} {gf:8.1f} {faults[name] / args.reps:12.0f}")
rest = us_total - sum(acc.values()) / args.reps / T * 1e6
rest_faults = (f_total - sum(faults.values())) / args.reps
print(f"{'rest (alloc, checks)':<40} {rest:9.1f} {rest / us_total:6.0%} {'':>8} {rest_faults:12.0f}")
print(f"{'training step':<40} {us_total:9.1f}   100% {(3 * rec + 3 * inp) / (us_total * 1e-6) / 1e9:8.1f} "
      f"{f_total / args.reps:12.0f}")

if args.calls:
    import cProfile
    import pstats
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(args.reps):
        step()
    profile.disable()
    stats = pstats.Stats(profile).stats      # {(file, line, name): (primitive calls, calls, own time, ...)}
    print(f"\ncalling thread's own calls under cProfile, {args.reps} training steps (the profiler slows "
          f"the Python); µs per time step, and calls per training step")
    print(f"{'call':<60} {'µs/step':>9} {'calls':>6}")
    for (file, line, name), (_, calls, own, _, _) in sorted(stats.items(), key=lambda kv: -kv[1][2]):
        us = own / args.reps / T * 1e6
        if us < 0.01 * us_total:
            break
        where = f"{os.path.basename(file)}:{line}({name})"
        print(f"{where:<60} {us:9.2f} {calls / args.reps:6.0f}")

"""Do the contenders disturb each other's timings when they share one process?  (Diagnosis for cpu.py.)

    python benchmarks/interference.py --contenders torch                 # PyTorch alone, fresh process
    python benchmarks/interference.py --contenders numpy,numba,torch     # all three, interleaved (old cpu.py)
    python benchmarks/interference.py --idle-cpu                         # do pools keep spinning after a call?
    OMP_WAIT_POLICY=PASSIVE python benchmarks/interference.py --idle-cpu --contenders torch
    python benchmarks/interference.py --predecessors                     # does the previous contender matter?
    python benchmarks/interference.py --placement --configs lstm:256:8:128   # Numba after a pause, helpers kept off or not

Builds a few configurations as ``cpu.py`` does (inputs and rnnbook weights from seed 0, the
PyTorch module after ``torch.manual_seed(0)``) and, in this one process, with the method
``cpu.py`` used before it moved every contender into a worker process of its own:

* default: warm-up, then ``--reps`` rounds with the named contenders interleaved one call at
  a time and a ``--pause`` before every timed call; one JSON line per (configuration, mode,
  contender) with median, min and max µs per step.  Only the contenders named are imported,
  so ``--contenders torch`` runs PyTorch where no OpenBLAS or Numba pool was ever used;
* ``--idle-cpu``: no timing; after each call, the CPU time the process burns while its main
  thread sleeps 10/50/200/500 ms, i.e. what helper threads spend spinning after the call;
* ``--predecessors``: each contender timed right after one call of each contender (50 ms
  pause) and after one of its own with a 300 ms pause, the conditions shuffled within every
  repetition so that a change of load reaches all of them alike;
* ``--placement``: the Numba backend alone, timed after a pause of 0, 20 or 100 ms and 0 or
  1 untimed calls, with its helper threads kept off the caller's CPU
  (``numba_cpu.workers.KEEP_OFF_CALLER``) and without; conditions shuffled as above.

Results of 2026-11-25 and what they imply: ``results/interference-2026-11-25-*.md`` and
``benchmarks/README.md`` ("Method").
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument("--contenders", default="numpy,numba,torch")
ap.add_argument("--threads", type=int, default=os.cpu_count())
ap.add_argument("--reps", type=int, default=10)
ap.add_argument("--pause", type=float, default=0.05, help="seconds before every timed run")
ap.add_argument("--idle-cpu", action="store_true",
                help="instead of timing: CPU time the process burns while its main thread sleeps after each call")
ap.add_argument("--predecessors", action="store_true",
                help="instead: time each contender right after a call of each contender (50 ms pause) and "
                     "after a call of itself with a 300 ms pause, conditions shuffled within every repetition")
ap.add_argument("--placement", action="store_true",
                help="instead: the Numba backend after pauses, with and without its helpers kept off the caller's CPU")
ap.add_argument("--configs", default="lstm:1024:1:32,rnn:256:8:128,gru:256:32:128",
                help="comma-separated arch:T:B:H (D = H)")
args = ap.parse_args()
for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, str(args.threads))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cpu import make_runs  # noqa: E402  (the benchmark's contenders; cpu.py parses no arguments on import)

contenders = ["numba"] if args.placement else args.contenders.split(",")


def build(arch, T, B, D, H, seed=0):
    """``{contender: (train_fn, forward_fn)}`` for one layer: ``cpu.make_runs``, the benchmark's own."""
    if "torch" in contenders:
        import torch
        torch.set_num_threads(args.threads)
    return make_runs(arch, T, B, D, H, 1, seed=seed, contenders=contenders)


def idle_cpu(fns, windows=(0.01, 0.05, 0.2, 0.5), reps=5):
    """After each call, the CPU seconds used by the *other* threads while the caller sleeps ``w`` s.

    ``time.process_time`` counts every thread of the process; the main thread is asleep, so
    whatever it counts comes from worker threads still spinning after the call returned.
    """
    out = {}
    for k, f in fns.items():
        for w in windows:
            used = []
            for _ in range(reps):
                f()
                c0 = time.process_time()
                time.sleep(w)
                used.append(time.process_time() - c0)
            out[f"{k} {w * 1e3:g}ms"] = round(1e3 * float(np.median(used)), 1)
    return out


for spec in args.configs.split(","):
    arch, T, B, H = spec.split(":")
    T, B, H = int(T), int(B), int(H)
    runs = build(arch, T, B, H, H)
    for mode, idx in (("train", 0), ("forward", 1)):
        fns = {k: v[idx] for k, v in runs.items()}
        for f in fns.values():
            f()
        if args.placement:
            from rnnbook.numba_cpu import workers
            rng = np.random.default_rng(1)
            conds = [(pause, lead, keep) for pause in (0.0, 0.02, 0.1) for lead in (0, 1) for keep in (True, False)]
            res = {c: [] for c in conds}
            for _ in range(args.reps):
                for i in rng.permutation(len(conds)):
                    pause, lead, keep = conds[i]
                    workers.KEEP_OFF_CALLER = keep
                    for _ in range(1 + lead):      # the first settles the previous condition's placement
                        fns["numba"]()
                    time.sleep(pause)
                    for _ in range(lead):
                        fns["numba"]()
                    t0 = time.perf_counter()
                    fns["numba"]()
                    res[conds[i]].append((time.perf_counter() - t0) / T * 1e6)
            for (pause, lead, keep), v in res.items():
                print(json.dumps({"config": f"{arch} B={B} H={H} T={T}", "mode": mode, "pause_ms": int(pause * 1e3),
                                  "lead_in_calls": lead, "helpers_kept_off_caller": keep,
                                  "median": round(float(np.median(v)), 2), "min": round(min(v), 2),
                                  "max": round(max(v), 2)}), flush=True)
            continue
        if args.predecessors:
            rng = np.random.default_rng(1)
            conds = [(p, t, 0.05) for t in fns for p in fns] + [(t, t, 0.3) for t in fns]
            res = {c: [] for c in conds}
            for _ in range(args.reps):
                for i in rng.permutation(len(conds)):
                    pred, target, pause = conds[i]
                    fns[pred]()
                    time.sleep(pause)
                    t0 = time.perf_counter()
                    fns[target]()
                    res[conds[i]].append((time.perf_counter() - t0) / T * 1e6)
            for (pred, target, pause), v in res.items():
                print(json.dumps({"config": f"{arch} B={B} H={H} T={T}", "mode": mode, "contender": target,
                                  "after": pred, "pause_ms": int(pause * 1e3),
                                  "median": round(float(np.median(v)), 2), "min": round(min(v), 2),
                                  "max": round(max(v), 2)}), flush=True)
            continue
        if args.idle_cpu:
            print(json.dumps({"config": f"{arch} B={B} H={H} T={T}", "mode": mode,
                              "idle_cpu_ms_during_pause": idle_cpu(fns),
                              "env": {e: os.environ.get(e) for e in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                                      if os.environ.get(e)}}), flush=True)
            continue
        times = {k: [] for k in fns}
        for _ in range(args.reps):
            for k, f in fns.items():
                time.sleep(args.pause)
                t0 = time.perf_counter()
                f()
                times[k].append((time.perf_counter() - t0) / T * 1e6)
        for k, v in times.items():
            print(json.dumps({"config": f"{arch} B={B} H={H} T={T}", "mode": mode, "contender": k,
                              "contenders": args.contenders, "median": round(float(np.median(v)), 2),
                              "min": round(min(v), 2), "max": round(max(v), 2),
                              "env": {e: os.environ.get(e) for e in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                                      if os.environ.get(e)}}), flush=True)

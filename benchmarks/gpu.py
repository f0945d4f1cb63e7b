"""GPU parity check and benchmark of the cupy backend against PyTorch (cuDNN and a per-step loop).

Run on a machine with an NVIDIA GPU, CuPy and a CUDA build of PyTorch::

    python benchmarks/gpu.py              # full run (a few minutes)
    python benchmarks/gpu.py --quick      # fewer configurations and repetitions

1. Correctness first: every cell x implementation x dtype against numpy_ref
   (forward, backward, final state); float64 <= 1e-10, float32 <= 1e-5
   relative.  Timings are skipped if any check fails.
2. Timings with CUDA events (warm-up, median of repetitions, random inputs,
   never zeros), forward and forward+backward (a training step's recurrent part)
   separately, for:
     - ours: impl="alternating" and impl="persistent" (fp32; head sizes for LSTM)
     - torch nn.LSTM / nn.GRU / nn.RNN (cuDNN) in fp32 and fp16
     - a plain torch per-step loop (nn.LSTMCell / GRUCell / RNNCell), fp32
   Configurations follow shared/PERFORMANCE.md: B=16, T=1024, hidden 768 with
   head sizes {16..768}; H in {192, 512, 1024}; a batch sweep.  Our fp16/bf16
   storage is not implemented yet: those rows say so instead of a number.
   First-call (compile) time is reported separately.
3. A short table is printed and the full results are written to
   benchmarks/results/gpu-<date>-<device>.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rnnbook as rb  # noqa: E402
from rnnbook.cupy_gpu import engine, gpu  # noqa: E402
from rnnbook.numpy_ref import gru, lstm, rnn  # noqa: E402

CELLS = {"rnn": (rnn, {"nonlinearity": "tanh"}), "lstm": (lstm, {}), "gru": (gru, {"reset_after": True}),
         "gru_before": (gru, {"reset_after": False}), "rnn_relu": (rnn, {"nonlinearity": "relu"})}


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# --------------------------------------------------------------------------- 1. correctness
def check_parity(cp, log):
    rows, ok = [], True
    T, B, D, H = 32, 4, 16, 64
    for label, (cell, opts) in CELLS.items():
        rng = np.random.default_rng(0)
        shapes = cell.param_shapes(D, H, **opts)
        p = {k: rng.uniform(-(0.5 if k.startswith("b") else H ** -0.5), 0.5 if k.startswith("b") else H ** -0.5, s)
             for k, s in shapes.items()}
        x = rng.standard_normal((T, B, D))
        s0 = tuple(0.5 * rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
        dy = rng.standard_normal((T, B, H))
        ds = tuple(rng.standard_normal((B, H)) for _ in cell.STATE_NAMES)
        y_ref, st_ref, c_ref = cell.forward(p, x, s0, **opts)
        g_ref = cell.backward(p, c_ref, dy, ds)
        for impl in engine.IMPLS:
            for dtype, tol in ((np.float64, 1e-10), (np.float32, 1e-5)):
                dev = lambda a: cp.asarray(a, dtype=dtype)  # noqa: E731
                pd = {k: dev(v) for k, v in p.items()}
                y, st, cache = rb.forward(cell.NAME, pd, dev(x), tuple(map(dev, s0)), backend="cupy",
                                          impl=impl, **opts)
                g = rb.backward(cell.NAME, pd, cache, dev(dy), tuple(map(dev, ds)))
                errs = [rel(y.get(), y_ref)] + [rel(a.get(), b) for a, b in zip(st, st_ref)]
                errs += [rel(g[k].get(), g_ref[k]) for k in list(p) + ["x"]]
                errs += [rel(a.get(), b) for a, b in zip(g["state0"], g_ref["state0"])]
                worst = max(errs)
                good = worst <= tol
                ok &= good
                rows.append((label, impl, np.dtype(dtype).name, f"{worst:.2e}", "ok" if good else "FAIL"))
    log("## Correctness against numpy_ref (T=32, B=4, D=16, H=64; forward, backward, states)\n")
    log(table(("cell", "impl", "dtype", "max rel err", ""), rows))
    return ok


# --------------------------------------------------------------------------- timing helpers
def time_cupy(cp, fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    cp.cuda.get_current_stream().synchronize()
    times = []
    for _ in range(reps):
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def time_torch(torch, fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def ours(cp, arch, T, B, H, impl, heads, reps, opts):
    """(forward ms, forward+backward ms, first-call s) or a string saying why not."""
    D = H
    p = rb.init_params(arch, D, H, seed=0, dtype=np.float32, backend="cupy", heads=heads, **opts)
    x = cp.random.standard_normal((T, B, D), dtype=cp.float32)
    dy = cp.random.standard_normal((T, B, H), dtype=cp.float32)
    kw = dict(backend="cupy", impl=impl, heads=heads, **opts)
    try:
        t0 = time.perf_counter()
        _, _, cache = rb.forward(arch, p, x, **kw)
        rb.backward(arch, p, cache, dy)
        cp.cuda.get_current_stream().synchronize()
        first = time.perf_counter() - t0
    except ValueError as exc:                    # the persistent plan does not fit this GPU
        return f"does not fit: {str(exc)[:60]}"
    fwd = time_cupy(cp, lambda: rb.forward(arch, p, x, **kw), reps)

    def step():
        _, _, c = rb.forward(arch, p, x, **kw)
        rb.backward(arch, p, c, dy)
    return fwd, time_cupy(cp, step, reps), first


def torch_cudnn(torch, arch, T, B, H, dtype, reps):
    mod = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[arch](H, H).cuda().to(dtype)
    x = torch.randn(T, B, H, device="cuda", dtype=dtype, requires_grad=True)
    dy = torch.randn(T, B, H, device="cuda", dtype=dtype)
    with torch.no_grad():
        fwd = time_torch(torch, lambda: mod(x), reps)

    def step():
        y, _ = mod(x)
        y.backward(dy)
    return fwd, time_torch(torch, step, reps)


def torch_loop(torch, arch, T, B, H, reps):
    cellmod = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}[arch](H, H).cuda()
    x = torch.randn(T, B, H, device="cuda")

    def fwd():
        h = torch.zeros(B, H, device="cuda")
        state = (h, torch.zeros_like(h)) if arch == "lstm" else h
        for t in range(T):
            state = cellmod(x[t], state)
        return state
    with torch.no_grad():
        return time_torch(torch, fwd, max(3, reps // 4), warmup=1)


def table(header, rows):
    w = [max(len(str(r[i])) for r in [header] + list(rows)) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows]) + "\n"


def fmt(v):
    return f"{v:.3f}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------- 2. timings
def run_timings(cp, torch, quick, log):
    reps = 5 if quick else 20
    T = 256 if quick else 1024
    configs = []     # (arch, B, H, heads)
    for arch in ("lstm", "gru", "rnn"):
        for H in ((256, 768) if quick else (192, 256, 512, 768, 1024)):
            configs.append((arch, 16, H, 1))
    for hs in ((768, 64, 16) if quick else (768, 256, 128, 64, 32, 16)):
        configs.append(("lstm", 16, 768, 768 // hs))
    for B in ((2, 64) if quick else (2, 8, 32, 64, 128, 256)):
        configs.append(("lstm", B, 256, 1))
    rows = []
    for arch, B, H, heads in configs:
        opts = {}
        alt = ours(cp, arch, T, B, H, "alternating", heads, reps, opts)
        per = ours(cp, arch, T, B, H, "persistent", heads, reps, opts)
        c32 = torch_cudnn(torch, arch, T, B, H, torch.float32, reps) if heads == 1 else ("-", "-")
        c16 = torch_cudnn(torch, arch, T, B, H, torch.float16, reps) if heads == 1 else ("-", "-")
        loop = torch_loop(torch, arch, T, B, H, reps) if (heads == 1 and B == 16 and H in (256, 768)) else "-"
        get = lambda r, i: r[i] if isinstance(r, tuple) else r  # noqa: E731
        ratio = (f"{get(per, 1) / c32[1]:.2f}" if isinstance(per, tuple) and isinstance(c32[1], float) else "-")
        alt_over_per = (f"{get(alt, 1) / get(per, 1):.2f}" if isinstance(per, tuple) and isinstance(alt, tuple)
                        else "-")
        us_step = f"{get(per, 0) * 1000 / T:.2f}" if isinstance(per, tuple) else "-"
        rows.append((arch, B, H, H // heads, fmt(get(alt, 0)), fmt(get(alt, 1)), fmt(get(per, 0)), fmt(get(per, 1)),
                     us_step, fmt(c32[0]), fmt(c32[1]), fmt(c16[0]), fmt(c16[1]), fmt(loop), ratio, alt_over_per,
                     fmt(get(per, 2)) if isinstance(per, tuple) else "-"))
        print("  ", rows[-1], flush=True)
    header = ("cell", "B", "H", "head", "alt fwd", "alt f+b", "pers fwd", "pers f+b", "pers µs/step fwd",
              "cuDNN32 fwd", "cuDNN32 f+b", "cuDNN16 fwd", "cuDNN16 f+b", "torch loop fwd",
              "pers/cuDNN32 f+b", "alt/pers f+b", "first call s")
    log(f"## Timings, fp32 unless noted, T={T}, D=H, milliseconds (median of {reps} CUDA-event timings)\n")
    log("Ours in fp16/bf16: not implemented yet (no row). cuDNN16 is PyTorch nn.* in float16.\n")
    log(table(header, rows))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = ap.parse_args(argv)
    ok, why = gpu.device_status()
    if not ok:
        print(f"no GPU: {why}")
        return 2
    import cupy as cp
    import torch
    if not torch.cuda.is_available():
        print("PyTorch has no CUDA here: install a CUDA build of torch to compare against cuDNN")
        return 2
    device = why
    out = []

    def log(s):
        out.append(s)
        print(s, flush=True)
    log(f"# rnnbook cupy backend on {device}\n")
    log(f"{datetime.datetime.now().isoformat(timespec='seconds')}; CuPy {cp.__version__}, "
        f"torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}), "
        f"{gpu.launcher().multiprocessors} SMs, {gpu.launcher().max_shared_bytes} B shared memory per block\n")
    if not check_parity(cp, log):
        log("**Parity failed: no timings.**\n")
        ok = False
    else:
        run_timings(cp, torch, args.quick, log)
    os.makedirs(args.out, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    path = os.path.join(args.out, f"gpu-{datetime.date.today().isoformat()}-{name}.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

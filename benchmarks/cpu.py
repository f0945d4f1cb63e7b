"""CPU benchmark: NumPy reference vs the Numba backend vs PyTorch nn.RNN/LSTM/GRU, side by side.

One command::

    python benchmarks/cpu.py            # full run (~10 minutes on 2 cores), writes benchmarks/results/
    python benchmarks/cpu.py --quick    # a few configurations, for a look
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu.py   # see "BLAS kernel" below

What it does, in one process and one run (PERFORMANCE.md, "How to measure"):

* sets the same thread count for every contender before anything is imported
  (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
  then ``torch.set_num_threads``), default: all cores;
* measures the machine's ceilings: NumPy fp32 SGEMM on 2048² matrices and copy
  bandwidth (``np.copyto`` of 256 MiB; read + write bytes counted);
* runs the CPU nonlinear configurations of PERFORMANCE.md in fp32, each as a training
  step (forward + backward, gradients for every parameter *and* the input) and as a
  forward pass alone.  The contenders run *interleaved* (one repetition of each in
  turn), so that a machine shared with other work slows all of them alike;
* pauses 50 ms before every timed run, so that no contender's idle worker threads
  (PyTorch's OpenMP pool spins after each call) eat into the next one's time;
* reports the median of the repetitions after one warm-up run, in µs per time step,
  recurrent GFLOP/s (``2·G·H²·B`` per step forward, three times that for a training
  step; G = 1, 4, 3 for RNN, LSTM, GRU) and the ratios against the targets;
* measures first-call compile time of every Numba kernel signature, cold (empty
  cache directory) and from the on-disk cache, each in a fresh process.

BLAS kernel: where ``OPENBLAS_CORETYPE`` is set in the environment (older OpenBLAS
builds needed it on some processors) NumPy's OpenBLAS is pinned to that kernel; the
report prints the kernel in use so that a slow one is visible.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every contender")
    ap.add_argument("--quick", action="store_true", help="a few configurations and fewer repetitions")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported; >= 10)")
    ap.add_argument("--out", default=None, help="Markdown report path (default benchmarks/results/cpu-<date>-<machine>.md)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    ap.add_argument("--skip", default=None, help="regex on configuration names to leave out")
    ap.add_argument("--only", default=None, help="regex on configuration names")
    return ap.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    for _v in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = str(ARGS.threads)
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


# ----------------------------------------------------------------------------------- configurations
def configurations(quick=False):
    """``(regime, name, arch, T, B, D, H, layers)`` in PERFORMANCE.md order (``D = H`` unless stated)."""
    out = []
    cells = ("rnn", "lstm", "gru")
    for H in (32, 64, 128):
        out += [("latency", f"{a} B=1 H={H} T=1024", a, 1024, 1, H, H, 1) for a in cells]
    for B in (8, 32):
        for H in (128, 256):
            out += [("small", f"{a} B={B} H={H} T=256", a, 256, B, H, H, 1) for a in cells]
    for H in (512, 1024):
        out += [("gemm", f"{a} B=64 H={H} T=128", a, 128, 64, H, H, 1) for a in cells]
    out.append(("gru-loop", "gru B=32 T=64 D=32 H=64", "gru", 64, 32, 32, 64, 1))
    out.append(("2-layer", "lstm×2 B=8 H=256 T=2000", "lstm", 2000, 8, 256, 256, 2))
    if quick:
        keep = {"lstm B=1 H=64 T=1024", "gru B=1 H=128 T=1024", "lstm B=8 H=128 T=256",
                "gru B=32 H=256 T=256", "rnn B=32 H=128 T=256", "lstm B=64 H=512 T=128",
                "gru B=32 T=64 D=32 H=64"}
        out = [c for c in out if c[1] in keep]
    return out


#: targets for the Numba backend's training step (PERFORMANCE.md)
def target_vs_torch(regime, arch, B, H):
    if regime == "latency" or (B <= 8 and H <= 128):
        return 3.0
    if regime == "gemm":
        return 0.8
    if regime in ("small", "gru-loop", "2-layer"):
        return 1.0 if arch == "lstm" else 2.0
    return None


TARGET_VS_NUMPY = 5.0


# ----------------------------------------------------------------------------------- contenders
def make_runs(arch, T, B, D, H, layers, seed=0):
    """``{contender: (train_fn, forward_fn)}`` on the same fp32 data and weights."""
    import rnnbook as rb
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    if layers == 1:
        name, opts = arch, {}
        params = rb.init_params(arch, D, H, seed=seed, dtype=np.float32)
    else:
        name, opts = "stacked", {"cell": arch}
        params = rb.init_params("stacked", D, H, seed=seed, dtype=np.float32, num_layers=layers, cell=arch)

    def ours(backend):
        def train():
            y, _, cache = rb.forward(name, params, x, backend=backend, **opts)
            rb.backward(name, params, cache, dy)

        def fwd():
            rb.forward(name, params, x, backend=backend, **opts)
        return train, fwd

    runs = {"numpy": ours("numpy"), "numba": ours("numba")}
    try:
        import torch
    except ImportError:
        return runs
    mod = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[arch](D, H, num_layers=layers)
    xt = torch.from_numpy(x).requires_grad_(True)
    dyt = torch.from_numpy(dy)

    def t_train():
        xt.grad = None
        mod.zero_grad(set_to_none=True)
        out, _ = mod(xt)
        out.backward(dyt)

    def t_fwd():
        with torch.no_grad():
            mod(xt)
    runs["torch"] = (t_train, t_fwd)
    return runs


#: pause before each timed run.  PyTorch's OpenMP worker threads keep spinning for a while
#: after a call returns; without a pause they steal the cores from whatever runs next
#: (measured: a 0.6 µs/step Numba run took 70 µs/step right after an nn.RNN call).
COOL_DOWN_S = 0.05


def measure(fns: dict, reps: int, reps_for: dict | None = None):
    """Warm each up once, then time ``reps`` rounds, contenders interleaved; medians in seconds."""
    reps_for = reps_for or {}
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for r in range(reps):
        for k, f in fns.items():
            if r >= reps_for.get(k, reps):
                continue
            time.sleep(COOL_DOWN_S)
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)), len(v)) for k, v in times.items()}


# ----------------------------------------------------------------------------------- ceilings
def sgemm_ceiling(n=2048, reps=7):
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    a @ b
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    return 2 * n ** 3 / np.median(ts) / 1e9


def copy_ceiling(nbytes=256 << 20, reps=7):
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        ts.append(time.perf_counter() - t0)
    return 2 * nbytes / np.median(ts) / 1e9


def blas_kernel():
    try:
        import ctypes
        from rnnbook.numba_cpu import gemm
        lib = ctypes.CDLL(gemm.BLAS_SOURCE)  # already loaded: same handle
        f = lib.scipy_openblas_get_corename64_
        f.restype = ctypes.c_char_p
        return f().decode()
    except Exception as exc:  # noqa: BLE001 - only for the report
        return f"unknown ({type(exc).__name__})"


def machine_description():
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model, os.cpu_count()


# ----------------------------------------------------------------------------------- compile time
_COMPILE_SNIPPET = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import rnnbook as rb
import rnnbook.numba_cpu
t_import = time.perf_counter() - t0
arch, opts, dtype = sys.argv[1], json.loads(sys.argv[2]), np.dtype(sys.argv[3])
strategy = sys.argv[4]
from rnnbook.numba_cpu import bptt
params = rb.init_params(arch, 3, 4, dtype=dtype, **opts)
x = np.ones((2, 3, 3), dtype)
with bptt.strategy(strategy):
    t0 = time.perf_counter(); y, s, c = rb.forward(arch, params, x, backend="numba", **opts); t1 = time.perf_counter()
    rb.backward(arch, params, c, np.ones_like(y)); t2 = time.perf_counter()
print(json.dumps({"import": t_import, "forward": t1 - t0, "backward": t2 - t1}))
"""


def compile_times(quick=False):
    """Cold (empty NUMBA_CACHE_DIR) and cached first-call times per (kernel, dtype), fresh processes."""
    variants = [("rnn", {"nonlinearity": "tanh"}), ("lstm", {}), ("gru", {"reset_after": True}),
                ("gru", {"reset_after": False})]
    dtypes = ["float32"] if quick else ["float32", "float64"]
    rows = []
    for arch, opts in variants:
        for dt in dtypes:
            with tempfile.TemporaryDirectory() as cache_dir:
                env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT)
                res = []
                for _ in range(2):                         # cold, then from the cache just written
                    out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET, arch, json.dumps(opts), dt,
                                          "loops"], env=env, capture_output=True, text=True, check=True)
                    res.append(json.loads(out.stdout.strip().splitlines()[-1]))
            rows.append((arch, opts, dt, res[0], res[1]))
    return rows


# ----------------------------------------------------------------------------------- report
def main():
    args = ARGS
    reps = max(args.reps, 1) if not args.quick else max(3, min(args.reps, 5))
    import numba
    import rnnbook  # noqa: F401
    try:
        import torch
        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch, torch_version = None, "not installed"
    model, ncpu = machine_description()
    today = _dt.date.today().isoformat()
    lines = []
    out = args.out
    if out is None:
        slug = re.sub(r"[^a-z0-9]+", "-", f"{model}-{ncpu}c".lower()).strip("-")
        out = os.path.join(HERE, "results", f"cpu-{today}-{slug}{'-quick' if args.quick else ''}.md")
    os.makedirs(os.path.dirname(out), exist_ok=True)

    def emit(s=""):
        """Print a line and rewrite the report with it, so an interrupted run keeps what it measured."""
        print(s, flush=True)
        lines.append(s)
        with open(out, "w") as fh:
            fh.write("\n".join(lines) + "\n")

    emit(f"# CPU benchmark, {today}")
    emit()
    emit(f"- machine: {model}, {ncpu} cores; host {platform.node()}")
    emit(f"- threads for every contender: {args.threads} (NUMBA_NUM_THREADS=OMP_NUM_THREADS="
         f"OPENBLAS_NUM_THREADS={args.threads}, torch.set_num_threads({args.threads}))")
    emit(f"- numpy {np.__version__} (OpenBLAS kernel: {blas_kernel()}; OPENBLAS_CORETYPE="
         f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}), numba {numba.__version__}, torch {torch_version}, "
         f"Python {platform.python_version()}")
    from rnnbook.numba_cpu import bptt as nb_bptt
    emit(f"- Numba product strategy: {os.environ.get('RNNBOOK_NUMBA_STRATEGY', 'auto')} "
         f"(BLAS from {BLAS_MIN_MACS_DESC(nb_bptt)})")
    emit(f"- dtype float32; D = H unless stated; times are medians of {reps} interleaved repetitions "
         "after one warm-up (NumPy reference: fewer where stated in the `n` column)")
    emit(f"- load average at start: {os.getloadavg()[0]:.1f} (the machine may be shared; contenders are "
         "interleaved so that they see the same load)")
    if not args.no_compile:
        emit()
        emit("## First-call compile time per signature (fresh process each; kernels on the loop path, "
             "which compiles the BLAS branch too)")
        emit()
        emit("| kernel | dtype | forward cold s | backward cold s | forward cached s | backward cached s |")
        emit("|---|---|---:|---:|---:|---:|")
        for arch, opts, dt, cold, cached in compile_times(args.quick):
            label = arch + (f" {opts}" if opts else "")
            emit(f"| {label} | {dt} | {cold['forward']:.2f} | {cold['backward']:.2f} | "
                 f"{cached['forward']:.2f} | {cached['backward']:.2f} |")
        emit()
        emit("Targets: cold ≤ 2 s, cached ≤ 0.3 s per signature.  'Cold' includes Numba's one-time "
             "start-up in the process (the first compile of anything); `import rnnbook` itself is not counted.")

        emit()
        emit("## Side-by-side timings")
        emit()
    t_start = time.perf_counter()
    sg, cp = sgemm_ceiling(), copy_ceiling()
    emit(f"- load average before timing: {os.getloadavg()[0]:.1f}")
    emit(f"- ceilings measured in this run: SGEMM {sg:.0f} GFLOP/s (NumPy fp32 2048²), "
         f"copy {cp:.1f} GB/s (np.copyto, 256 MiB)")
    emit()

    header = ("| regime | configuration | mode | NumPy µs/step | Numba µs/step | PyTorch µs/step | "
              "Numba GFLOP/s | Numba/NumPy | Numba/PyTorch | target | n (np/nb/pt) |")
    emit(header)
    emit("|---|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    results = []
    for regime, name, arch, T, B, D, H, layers in configurations(args.quick):
        if args.only and not re.search(args.only, name):
            continue
        if args.skip and re.search(args.skip, name):
            continue
        runs = make_runs(arch, T, B, D, H, layers)
        flops_fwd = 2 * GATES[arch] * H * H * B * layers       # recurrent FLOPs per step
        # the NumPy reference is slow at large sizes: fewer repetitions there (stated in the table)
        work = T * B * H * H * GATES[arch] * layers
        np_reps = reps if work < 2e8 else (3 if work < 5e9 else 1)
        for mode, idx, mult in (("train", 0, 3), ("forward", 1, 1)):
            fns = {k: v[idx] for k, v in runs.items()}
            med = measure(fns, reps, {"numpy": min(np_reps, reps)})
            us = {k: v[0] / T * 1e6 for k, v in med.items()}
            n = "/".join(str(med[k][1]) if k in med else "-" for k in ("numpy", "numba", "torch"))
            gf = mult * flops_fwd / (us["numba"] * 1e-6) / 1e9
            r_np = us["numpy"] / us["numba"]
            r_pt = us["torch"] / us["numba"] if "torch" in us else float("nan")
            tgt = target_vs_torch(regime, arch, B, H) if mode == "train" else None
            verdict = ""
            if tgt is not None:
                ok = r_pt >= tgt and r_np >= TARGET_VS_NUMPY
                verdict = f"≥{tgt:g}× PT, ≥5× NP: {'met' if ok else 'MISSED'}"
            elif mode == "forward":
                verdict = f"≥5× NP: {'met' if r_np >= TARGET_VS_NUMPY else 'MISSED'}"
            pt = f"{us['torch']:.1f}" if "torch" in us else "-"
            emit(f"| {regime} | {name} | {mode} | {us['numpy']:.1f} | {us['numba']:.1f} | {pt} | {gf:.1f} | "
                 f"{r_np:.1f}× | {r_pt:.2f}× | {verdict} | {n} |")
            results.append(dict(regime=regime, name=name, mode=mode, us=us, gflops=gf, vs_numpy=r_np,
                                vs_torch=r_pt, target=tgt))
    emit()
    emit(f"Timing part: {time.perf_counter() - t_start:.0f} s; load average at the end "
         f"{os.getloadavg()[0]:.1f}.")

    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"\nwrote {out}")


def BLAS_MIN_MACS_DESC(bptt):  # noqa: N802 - small helper for the header line
    return f"{bptt.BLAS_MIN_MACS} multiply-adds per step; loop kernel below, row blocks on threads"


if __name__ == "__main__":
    main()

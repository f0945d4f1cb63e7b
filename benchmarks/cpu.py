"""CPU benchmark: NumPy reference vs the Numba backend vs PyTorch nn.RNN/LSTM/GRU, side by side.

One command::

    python benchmarks/cpu.py            # full run (10-15 minutes on 2 cores), writes benchmarks/results/
    python benchmarks/cpu.py --quick    # a few configurations, for a look
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu.py   # see "BLAS kernel" below

What it does, in one run (PERFORMANCE.md, "How to measure"):

* **one worker process per contender** (``numpy``, ``numba``, ``torch``), started by this
  script with ``--worker NAME``, a fresh set for every configuration.  Each imports only
  what it needs (the NumPy worker never imports Numba or PyTorch, the PyTorch worker never
  imports rnnbook), so no contender is ever timed in a process where another contender's
  thread pool exists, and no row depends on what ran before it in the same process (glibc's
  adaptive malloc thresholds decide whether a call's temporaries page-fault; the report
  gives minor page faults per call).  All get the same thread count
  (``NUMBA_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``,
  ``torch.set_num_threads``), default: all cores; the PyTorch worker uses NumPy only to draw
  its inputs, with ``OPENBLAS_NUM_THREADS=1`` so that it has no OpenBLAS thread pool at all.
  The parent only sends commands and collects times;
* each worker builds a configuration's inputs itself from the same seed (``x``, ``dy`` from
  ``np.random.default_rng(0)``; rnnbook's weights from ``init_params(seed=0)``; PyTorch's
  module after ``torch.manual_seed(0)``), warms up once, and for each command makes
  untimed *lead-in* calls for at least ``--lead-in-ms`` (20 ms; at least one call) and
  times the call straight after them.  The lead-in is there because the worker has just
  been idle (see the next points), and on the development VM the first calls after an
  idle spell run up to 2× slower for every contender (PyTorch's LSTM B=8 H=128 forward 55
  µs/step after idling against 14 back to back); one short lead-in call was not always
  enough (LSTM B=1 H=32 training step after 0.1 s idle: Numba 1.4 µs/step after one 1.2 ms
  call, 1.2 after four; PyTorch 3.5 after one, 3.3 after four).  Back-to-back calls are what
  a training loop makes; ``--after-idle`` times the first call after the wait instead;
* the parent interleaves *rounds*: in each round every contender times one call, one after
  the other (the order rotates from round to round), so that load from other work on a
  shared machine hits all of them alike; medians of ``--reps`` rounds;
* after each call, before it answers, a worker waits until *its own* helper threads are
  idle (:func:`settle`): PyTorch's OpenMP workers spin for ~6 ms after a call and
  OpenBLAS's for ~120 ms (2^28 cycles) after a multi-threaded GEMM, and a spinning thread
  of an idle worker still takes a core from the next contender.  The time reported is the
  call's own; the wait is not counted (the report lists how long it took);
* measures the machine's ceilings in a NumPy worker, before and after the timings (SGEMM
  also before every configuration): fp32 SGEMM on 2048² matrices and copy bandwidth (``np.copyto`` of 256 MiB; read + write
  bytes counted);
* runs the CPU nonlinear configurations of PERFORMANCE.md in fp32, each as a training
  step (forward + backward, gradients for every parameter *and* the input) and as a
  forward pass alone;
* reports µs per time step, recurrent GFLOP/s (``2·G·H²·B`` per step forward, three times
  that for a training step; G = 1, 4, 3 for RNN, LSTM, GRU), the ratios against the targets,
  and for each row the *bound* on Numba/NumPy: NumPy's time divided by the time all the
  step's matrix products (:func:`gemm_flops_per_step`) would take at the measured SGEMM
  ceiling.  No implementation that does those products can beat NumPy by more than that,
  so a "≥5× NumPy" miss where the bound is below 5 is physical, not a missing optimisation;
* measures first-call compile time of every Numba kernel signature, cold (empty
  cache directory) and from the on-disk cache, each in a fresh process.

BLAS kernel: where ``OPENBLAS_CORETYPE`` is set in the environment (older OpenBLAS
builds needed it on some processors) NumPy's OpenBLAS is pinned to that kernel; the
report prints the kernel in use so that a slow one is visible.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONTENDERS = ("numpy", "numba", "torch")
THREAD_VARS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every contender")
    ap.add_argument("--quick", action="store_true", help="a few configurations and fewer repetitions")
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported; >= 10)")
    ap.add_argument("--out", default=None, help="Markdown report path (default benchmarks/results/cpu-<date>-<machine>[-quick][-subset][-n].md, "
                         "-2, -3, ... where a report of that name exists)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compile-time measurement")
    ap.add_argument("--skip", default=None, help="regex on configuration names to leave out")
    ap.add_argument("--only", default=None, help="regex on configuration names")
    ap.add_argument("--no-settle", action="store_true",
                    help="diagnostic: a fixed 50 ms pause before each call instead of waiting for idle helper threads")
    ap.add_argument("--lead-in-ms", type=float, default=20.0,
                    help="untimed calls before each timed one, for at least this long (at least one call)")
    ap.add_argument("--after-idle", action="store_true",
                    help="diagnostic: time each call straight after the idle wait, without the untimed lead-in calls")
    ap.add_argument("--worker", choices=CONTENDERS, default=None, help=argparse.SUPPRESS)
    return ap.parse_args()


def worker_env(contender: str, threads: int) -> dict:
    """The environment of one contender's worker: the same thread count for everything it uses."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    for v in THREAD_VARS:
        env[v] = str(threads)
    if contender == "torch":
        env["OPENBLAS_NUM_THREADS"] = "1"   # NumPy only draws the inputs there: no OpenBLAS pool at all
    return env


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    if ARGS.worker is None:                 # the parent (and the compile-time subprocesses it starts)
        for _v in THREAD_VARS:
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


def gemm_flops_per_step(arch: str, B: int, D: int, H: int, layers: int = 1, mode: str = "train") -> int:
    """All matrix-product FLOPs of one time step (2 per multiply-add), as in ``numba_cpu/bptt.py``.

    Per layer, with ``G·H`` pre-activation columns (G = 1, 4, 3 for RNN, LSTM, GRU) and input
    width ``D`` (``H`` from the second layer on)::

        forward   X W_ih^T      (B, D)   @ (D, G·H)      2·B·D·G·H   input projection
                  h W_hh^T      (B, H)   @ (H, G·H)      2·B·H·G·H   recurrent product
        backward  dZ W_hh       (B, G·H) @ (G·H, H)      2·B·G·H·H   recurrent product
                  dZ^T X        (G·H, B) @ (B, D)        2·B·G·H·D   dW_ih
                  dZ^T H_prev   (G·H, B) @ (B, H)        2·B·G·H·H   dW_hh
                  dZ W_ih       (B, G·H) @ (G·H, D)      2·B·G·H·D   dX (the input gradient)

    so a forward step is ``2·B·G·H·(D+H)`` and a training step three times that.  The GRU
    with the reset gate before the product splits ``h W_hh^T`` into ``h W_h{rz}^T`` (2H
    columns) and ``(r⊙h) W_hn^T`` (H columns): the same total.  Bias sums and gate
    arithmetic are not matrix products and are not counted, so time at the SGEMM ceiling
    for these FLOPs is a lower bound on any implementation's step time.
    """
    G = GATES[arch]
    fwd = sum(2 * B * G * H * ((D if layer == 0 else H) + H) for layer in range(layers))
    return fwd if mode == "forward" else 3 * fwd


def speedup_bound(t_s: float, flops: float, sgemm_gflops: float) -> float:
    """Upper bound on (a contender's time / any implementation's time): ``t_s`` over ``flops`` at the
    SGEMM ceiling.  For NumPy that is the *NP bound*, for PyTorch the *PT bound*."""
    return t_s / (flops / (sgemm_gflops * 1e9))


# ----------------------------------------------------------------------------------- contenders (worker side)
def make_runs(arch, T, B, D, H, layers, seed=0, contenders=CONTENDERS):
    """``{contender: (train_fn, forward_fn)}`` on the same fp32 data; only ``contenders`` are imported."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    dy = rng.standard_normal((T, B, H)).astype(np.float32)
    runs = {}
    ours = [c for c in contenders if c in ("numpy", "numba")]
    if ours:
        import rnnbook as rb
        if layers == 1:
            name, opts = arch, {}
            params = rb.init_params(arch, D, H, seed=seed, dtype=np.float32)
        else:
            name, opts = "stacked", {"cell": arch}
            params = rb.init_params("stacked", D, H, seed=seed, dtype=np.float32, num_layers=layers, cell=arch)

        def make(backend):
            def train():
                y, _, cache = rb.forward(name, params, x, backend=backend, **opts)
                rb.backward(name, params, cache, dy)

            def fwd():
                rb.forward(name, params, x, backend=backend, **opts)
            return train, fwd
        runs.update({c: make(c) for c in ours})
    if "torch" in contenders:
        import torch
        torch.manual_seed(seed)
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


def settle(quiet_s=0.02, window_s=0.005, busy=0.1, cap_s=2.0):
    """Wait until this process's other threads are idle; ``(seconds waited, settled)``.

    Called by a worker after each call, before it answers.  ``time.process_time`` counts
    the CPU time of every thread of the process; while this thread sleeps, whatever it
    advances by comes from helper threads still spinning after the call (PyTorch's
    OpenMP pool, OpenBLAS's pool, or any spin-waiting pool of the Numba backend).  Idle
    means less than ``busy`` of a core over ``quiet_s`` in a row; gives up after ``cap_s``.
    """
    t_start = time.perf_counter()
    quiet = 0.0
    c = time.process_time()
    while quiet < quiet_s:
        w0 = time.perf_counter()
        if w0 - t_start > cap_s:
            return w0 - t_start, False
        time.sleep(window_s)
        c2 = time.process_time()
        dt = time.perf_counter() - w0
        quiet = quiet + dt if c2 - c < busy * dt else 0.0
        c = c2
    return time.perf_counter() - t_start, True


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
    """The OpenBLAS core NumPy's bundled library runs on (the same library the Numba backend calls)."""
    import ctypes
    import glob
    libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libdir, "*openblas*"))):
        for fname in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            try:
                f = getattr(ctypes.CDLL(path), fname)
            except (OSError, AttributeError):
                continue
            f.restype = ctypes.c_char_p
            return f().decode()
    return "unknown"


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


# ----------------------------------------------------------------------------------- worker process
def worker_main(contender: str):
    """Serve one contender: JSON commands on stdin, one JSON answer per line on stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)                     # whatever the libraries print goes to stderr, not into the protocol
    sys.stdout = sys.stderr

    def send(obj):
        proto.write(json.dumps(obj) + "\n")

    info = {"threads": ARGS.threads}
    try:
        if contender == "torch":
            import torch
            torch.set_num_threads(ARGS.threads)
            info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        else:
            import rnnbook  # noqa: F401 - fails here, not at the first configuration
            if contender == "numba":
                import numba
                import rnnbook.numba_cpu  # registers the backend (dispatch would import it at the first call)
                if not hasattr(rnnbook.numba_cpu, "CELLS"):   # it marked itself unavailable
                    raise ImportError("rnnbook.numba_cpu: the Numba backend is unavailable")
                from rnnbook.numba_cpu import bptt
                from rnnbook.numba_cpu import panels
                info.update(numba=numba.__version__, numba_threads=numba.get_num_threads(),
                            blas_min_macs=getattr(bptt, "BLAS_MIN_MACS", None),
                            panel_min_rows=getattr(bptt, "PANEL_MIN_ROWS", None),
                            panel_row_max_macs=getattr(bptt, "PANEL_ROW_MAX_MACS", None),
                            panel_shape=f"{panels.ROWS} rows × {panels.panel_width(np.float32)} float32 columns, "
                                        f"{panels.VECTOR_BYTES}-byte vectors")
    except Exception as exc:  # noqa: BLE001 - reported by the parent, which then runs without it
        send({"unavailable": f"{type(exc).__name__}: {exc}"})
        return
    send(info)
    fns = {}
    for line in sys.stdin:
        msg = json.loads(line)
        try:
            cmd = msg["cmd"]
            if cmd == "quit":
                break
            if cmd == "ceilings":     # then let OpenBLAS's workers go idle, as after a timed call
                ans = {"sgemm": sgemm_ceiling()}
                if msg.get("copy", True):
                    ans["copy"] = copy_ceiling()
                settle()
                send(ans)
            elif cmd == "setup":
                fns.clear()
                train, fwd = make_runs(*msg["config"], contenders=(contender,))[contender]
                fns.update(train=train, forward=fwd)
                send({"ok": True})
            elif cmd == "run":        # lead-in calls, then one call of fns[mode] timed; then wait for the helper threads
                f = fns[msg["mode"]]
                if ARGS.no_settle:
                    time.sleep(0.05)
                if not ARGS.after_idle:
                    lead_in_end = time.perf_counter() + ARGS.lead_in_ms * 1e-3
                    f()
                    while time.perf_counter() < lead_in_end:
                        f()
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                t0 = time.perf_counter()
                f()
                t = time.perf_counter() - t0
                faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
                waited, settled = (0.0, True) if ARGS.no_settle else settle()
                send({"t": t, "faults": faults, "settle": waited, "settled": settled})
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception:  # noqa: BLE001 - the parent raises it
            send({"error": traceback.format_exc()})


#: per contender, over all its worker processes: seconds waited after each call, and calls that hit the cap
SETTLE_STATS: dict = {}


class Worker:
    """The parent's handle on one contender's worker process (started here, answers read by :meth:`ready`)."""

    def __init__(self, contender: str, threads: int):
        self.name = contender
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", contender, "--threads", str(threads),
               "--lead-in-ms", str(ARGS.lead_in_ms)]
        if ARGS.no_settle:
            cmd.append("--no-settle")
        if ARGS.after_idle:
            cmd.append("--after-idle")
        self.proc = subprocess.Popen(cmd, env=worker_env(contender, threads), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.info = None
        self.stats = SETTLE_STATS.setdefault(contender, {"waits": [], "unsettled": 0})

    def ready(self):
        """Wait for the worker's greeting: its versions, or ``{"unavailable": reason}``."""
        self.info = self._read()
        return self.info

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} worker exited (code {self.proc.poll()}); see its stderr above")
        ans = json.loads(line)
        if "error" in ans:
            raise RuntimeError(f"{self.name} worker failed:\n{ans['error']}")
        return ans

    def call(self, **msg):
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        ans = self._read()
        if "settle" in ans:
            self.stats["waits"].append(ans["settle"])
            self.stats["unsettled"] += not ans["settled"]
        return ans

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def workers_for(names, threads: int):
    """A fresh worker process per contender in ``names`` (started together); closed on exit.

    Yields ``({name: Worker}, {name: reason})`` for the contenders that could start and those
    that could not.  ``cpu.py`` starts a fresh set for every configuration, so that no row
    depends on what ran before it in the same process (thread-pool state, and glibc's
    malloc thresholds, which rise after large frees and decide whether later temporaries
    come from fresh, page-faulting memory — measured: 1240 vs 0 page faults per call).
    """
    started = [Worker(c, threads) for c in names]
    workers, missing = {}, {}
    try:
        for w in started:
            info = w.ready()
            if "unavailable" in info:
                missing[w.name] = info["unavailable"]
            else:
                workers[w.name] = w
        yield workers, missing
    finally:
        for w in started:
            w.close()


def measure(workers: dict, mode: str, reps: int, reps_for: dict | None = None):
    """Warm each contender up once, then ``reps`` rounds, one call per contender per round.

    The order inside a round rotates (round r starts with contender r mod n), so no
    contender always follows the same one.  Returns ``{name: (median seconds, count, median
    minor page faults per call, {round: seconds})}``; the last lets two contenders be
    compared round by round (:func:`paired_ratios`).
    """
    reps_for = reps_for or {}
    names = list(workers)
    for k in names:
        workers[k].call(cmd="run", mode=mode)
    times = {k: {} for k in names}
    faults = {k: [] for k in names}
    for r in range(reps):
        for i in range(len(names)):
            k = names[(r + i) % len(names)]
            if r >= reps_for.get(k, reps):
                continue
            ans = workers[k].call(cmd="run", mode=mode)
            times[k][r] = ans["t"]
            faults[k].append(ans["faults"])
    return {k: (float(np.median(list(v.values()))), len(v), float(np.median(faults[k])), v)
            for k, v in times.items()}


def paired_ratios(slow: dict, fast: dict) -> list[float]:
    """``slow[r] / fast[r]`` for every round ``r`` that timed both (``{round: seconds}`` from
    :func:`measure`).  The two calls of a round ran one right after the other, so a load
    spike on a shared machine tends to hit both; the spread of these ratios says how firmly
    a ratio of medians stands (on the development VM a contender's own median moves by up
    to ±20% from run to run)."""
    return [slow[r] / fast[r] for r in sorted(slow) if r in fast]


def spread(ratios: list[float]) -> str:
    """``q25–q75`` of per-round ratios (``-`` for fewer than 5 rounds, where quartiles say little)."""
    if len(ratios) < 5:
        return "-"
    q25, q75 = np.percentile(ratios, [25, 75])
    return f"{q25:.2f}–{q75:.2f}"


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
    with bptt.split("rows", 2):   # on panels each row block computes its input rows: gemm.project_rows
        rb.forward(arch, params, x, backend="numba", **opts); t3 = time.perf_counter()
print(json.dumps({"import": t_import, "forward": t1 - t0, "backward": t2 - t1, "rows": t3 - t2}))
"""


#: the two forms a tile kernel is compiled for (``gemm``'s module docstring): the weight as a
#: matrix (loop and BLAS paths) or as packed panels (panel path); a signature is one of each
COMPILE_PATHS = ("loops", "panels")


def compile_times(quick=False):
    """Cold (empty NUMBA_CACHE_DIR) and cached first-call times per (kernel, dtype, path),
    fresh processes."""
    variants = [("rnn", {"nonlinearity": "tanh"}), ("lstm", {}), ("gru", {"reset_after": True}),
                ("gru", {"reset_after": False})]
    dtypes = ["float32"] if quick else ["float32", "float64"]
    rows = []
    for arch, opts in variants:
        for dt in dtypes:
            for path in COMPILE_PATHS:
                with tempfile.TemporaryDirectory() as cache_dir:
                    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT)
                    res = []
                    for _ in range(2):                         # cold, then from the cache just written
                        out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET, arch, json.dumps(opts), dt,
                                              path], env=env, capture_output=True, text=True, check=True)
                        res.append(json.loads(out.stdout.strip().splitlines()[-1]))
                rows.append((arch, opts, dt, path, res[0], res[1]))
    return rows


# ----------------------------------------------------------------------------------- report
def main():
    args = ARGS
    reps = max(args.reps, 1) if not args.quick else max(3, min(args.reps, 5))
    model, ncpu = machine_description()
    today = _dt.date.today().isoformat()
    lines = []
    out = args.out
    if out is None:
        slug = re.sub(r"[^a-z0-9]+", "-", f"{model}-{ncpu}c".lower()).strip("-")
        # a quick run or a subset never overwrites a full run's report, nor each other's
        kind = ("-quick" if args.quick else "") + ("-subset" if (args.only or args.skip) else "")
        out = os.path.join(HERE, "results", f"cpu-{today}-{slug}{kind}.md")
        # nor an earlier run of the same day and kind, whose report the README may cite
        stem, n = out[:-len(".md")], 2
        while os.path.exists(out) or os.path.exists(out[:-len(".md")] + ".json"):
            out, n = f"{stem}-{n}.md", n + 1
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
    load_start = os.getloadavg()[0]
    if not args.no_compile:
        compile_rows = compile_times(args.quick)      # before any worker exists: fresh processes on a quiet machine
    with workers_for(CONTENDERS, args.threads) as (workers, missing):
        info = {k: w.info for k, w in workers.items()}
        ceil = workers["numpy"].call(cmd="ceilings") if "numpy" in workers else None
    numba_info, torch_info = info.get("numba", {}), info.get("torch", {})
    emit(f"- numpy {np.__version__} (OpenBLAS kernel: {blas_kernel()}; OPENBLAS_CORETYPE="
         f"{os.environ.get('OPENBLAS_CORETYPE', 'unset')}), numba {numba_info.get('numba', 'not run')}, "
         f"torch {torch_info.get('torch', 'not run')}, Python {platform.python_version()}")
    for k, why in missing.items():
        emit(f"- **{k} not run**: {why}")
    macs = numba_info.get("blas_min_macs")
    emit(f"- Numba product strategy: {os.environ.get('RNNBOOK_NUMBA_STRATEGY', 'auto')} "
         f"(loop kernel below {macs if macs is not None else '?'} multiply-adds per step; above it packed "
         f"panels ({numba_info.get('panel_shape', '?')}) when each thread has at least "
         f"{numba_info.get('panel_min_rows', '?')} batch rows or B=1 with K·N at most "
         f"{numba_info.get('panel_row_max_macs', '?')} (single-row kernel), else BLAS; row blocks on threads; "
         "the GEMMs outside the recurrence split over the same threads, BLAS single-threaded in each)")
    emit("- method: one worker process per contender, each importing only its own libraries "
         f"({', '.join(info)}), a fresh set for every configuration; rounds interleaved across them (order "
         "rotating), one timed call per contender per round, " + (
             "**--after-idle: straight after the worker's idle wait** (diagnostic); " if args.after_idle else
             f"right after untimed lead-in calls lasting at least {args.lead_in_ms:g} ms (at least one call; back "
             "to back, as in a training loop: after an idle spell the first calls run up to ~2× slower for every "
             "contender on the development VM, and one short call is not enough to recover); ") + (
             "**--no-settle: a fixed 50 ms pause before each call** (diagnostic)" if args.no_settle else
             "after each call the worker waits until its own helper threads are idle before the next "
             "contender runs (PyTorch's OpenMP and OpenBLAS's workers spin after a call)"))
    emit(f"- dtype float32; D = H unless stated; times are medians of {reps} rounds after one warm-up "
         "(NumPy reference: fewer where stated in the `n` column)")
    emit(f"- load average at start: {load_start:.1f} (the machine may be shared; rounds are "
         "interleaved so that all contenders see the same load)")
    if not args.no_compile:
        emit()
        emit("## First-call compile time per signature (fresh process each; each kernel compiled for "
             "the weight as a matrix, `loops`, which holds the BLAS path too, and as packed `panels`)")
        emit()
        emit("| kernel | dtype | path | forward cold s | backward cold s | forward cached s | backward cached s "
             "| row blocks cold s | row blocks cached s |")
        emit("|---|---|---|---:|---:|---:|---:|---:|---:|")
        for arch, opts, dt, path, cold, cached in compile_rows:
            label = arch + (f" {opts}" if opts else "")
            emit(f"| {label} | {dt} | {path} | {cold['forward']:.2f} | {cold['backward']:.2f} | "
                 f"{cached['forward']:.2f} | {cached['backward']:.2f} | {cold['rows']:.2f} | {cached['rows']:.2f} |")
        emit()
        emit("Targets: cold ≤ 2 s, cached ≤ 0.3 s per signature.  'Cold' includes Numba's one-time "
             "start-up in the process (the first compile of anything); `import rnnbook` itself is not counted.  "
             "'Row blocks': a second forward call split into two row blocks, after the first; on the panels "
             "each block computes its own rows of the input projection, whose kernel (`gemm.project_rows`, "
             "one for all cells, per dtype and form of the weight) compiles then.")

        emit()
        emit("## Side-by-side timings")
        emit()
    results = timings(args, reps, list(info), ceil, emit)
    with open(os.path.splitext(out)[0] + ".json", "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"\nwrote {out}")


def timings(args, reps, names, ceil, emit):
    """The side-by-side table: for each configuration a fresh worker per contender in ``names``."""
    t_start = time.perf_counter()
    emit(f"- load average before timing: {os.getloadavg()[0]:.1f}")
    if ceil:
        emit(f"- ceilings measured in this run (NumPy worker, before the timings; medians of 7): SGEMM "
             f"{ceil['sgemm']:.0f} GFLOP/s (NumPy fp32 2048²), copy {ceil['copy']:.1f} GB/s (np.copyto, 256 MiB)")
    emit("- NP bound: NumPy's time over the time the step's matrix products (`gemm_flops_per_step`: input "
         "projection, recurrent products and, for training, the weight- and input-gradient products) take "
         "at the SGEMM ceiling — the most any implementation can beat NumPy by.  The ceiling used is the "
         "highest measured so far in the run (SGEMM is measured again before every configuration), so that "
         "a load spike cannot lower the bound.  Where it is below 5 the ≥5× NumPy target is out of reach on "
         "this machine (marked `MISSED (bound …)`).  PT bound: the same for PyTorch's time — where it is below "
         "a PyTorch target, that target would need more than the SGEMM ceiling")
    emit()
    emit("- Numba/PyTorch is the ratio of the medians; *per round* gives the quartiles (q25–q75) of "
         "the ratio taken round by round (the two calls of a round run one right after the other), and the "
         "target column says in how many rounds that ratio met the target: a ratio whose quartiles straddle "
         "the target is within this machine's noise")
    emit()
    emit("| regime | configuration | mode | NumPy µs/step | Numba µs/step | PyTorch µs/step | "
         "Numba GFLOP/s | Numba/NumPy | NP bound | Numba/PyTorch | per round | PT bound | target | n (np/nb/pt) |")
    emit("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    rows = []
    sgemms = [ceil["sgemm"]] if ceil else []
    for regime, name, arch, T, B, D, H, layers in configurations(args.quick):
        if args.only and not re.search(args.only, name):
            continue
        if args.skip and re.search(args.skip, name):
            continue
        with workers_for(names, args.threads) as (workers, missing):
            if missing:
                raise RuntimeError(f"workers failed to start: {missing}")
            if "numpy" in workers:
                sgemms.append(workers["numpy"].call(cmd="ceilings", copy=False)["sgemm"])
            for w in workers.values():
                w.call(cmd="setup", config=[arch, T, B, D, H, layers])
            rows += time_configuration(workers, reps, (regime, name, arch, T, B, D, H, layers),
                                       max(sgemms) if sgemms else None, emit)
    with workers_for(["numpy"] if "numpy" in names else [], args.threads) as (workers, _):
        ceil_end = workers["numpy"].call(cmd="ceilings") if "numpy" in workers else None
    emit()
    if ceil_end:
        sgemms.append(ceil_end["sgemm"])
        emit(f"Ceilings after the timings: SGEMM {ceil_end['sgemm']:.0f} GFLOP/s, copy {ceil_end['copy']:.1f} GB/s.  "
             f"SGEMM over the run ({len(sgemms)} measurements): min {min(sgemms):.0f}, median "
             f"{np.median(sgemms):.0f}, max {max(sgemms):.0f} GFLOP/s.")
    pf = {k: [r["page_faults_per_call"][k] for r in rows if k in r["page_faults_per_call"]] for k in names}
    emit("Minor page faults per timed call (median per row; first touch of freshly mapped memory, about 9 µs "
         "each on the 2-core development VM): "
         + "; ".join(f"{k} median {np.median(v):.0f}, max {max(v):.0f}" for k, v in pf.items() if v)
         + " (per row in the JSON file).")
    waits = "; ".join(f"{k} median {1e3 * np.median(st['waits']):.0f} ms, max {1e3 * max(st['waits']):.0f} ms"
                      + (f", **{st['unsettled']} calls never settled (2 s cap)**" if st["unsettled"] else "")
                      for k, st in SETTLE_STATS.items() if st["waits"])
    emit(f"Waits for each worker's helper threads to go idle after a call (not timed): {waits}.")
    emit(f"Timing part: {time.perf_counter() - t_start:.0f} s; load average at the end "
         f"{os.getloadavg()[0]:.1f}.")
    return rows


def time_configuration(workers, reps, config, sgemm, emit):
    """Training step and forward pass of one configuration: emits the table rows, returns the JSON rows."""
    regime, name, arch, T, B, D, H, layers = config
    nan = float("nan")
    flops_fwd = 2 * GATES[arch] * H * H * B * layers       # recurrent FLOPs per step
    # the NumPy reference is slow at large sizes: fewer repetitions there (stated in the table)
    work = T * B * H * H * GATES[arch] * layers
    np_reps = reps if work < 2e8 else (3 if work < 5e9 else 1)
    rows = []
    for mode, mult in (("train", 3), ("forward", 1)):
        med = measure(workers, mode, reps, {"numpy": min(np_reps, reps)})
        us = {k: v[0] / T * 1e6 for k, v in med.items()}
        n = "/".join(str(med[k][1]) if k in med else "-" for k in CONTENDERS)
        gf = mult * flops_fwd / (us["numba"] * 1e-6) / 1e9 if "numba" in us else nan
        r_np = us["numpy"] / us["numba"] if "numba" in us and "numpy" in us else nan
        r_pt = us["torch"] / us["numba"] if "torch" in us and "numba" in us else nan
        rounds_pt = paired_ratios(med["torch"][3], med["numba"][3]) if "torch" in med and "numba" in med else []
        gemm = gemm_flops_per_step(arch, B, D, H, layers, mode)
        bound = speedup_bound(us["numpy"] * 1e-6, gemm, sgemm) if sgemm and "numpy" in us else nan
        pt_bound = speedup_bound(us["torch"] * 1e-6, gemm, sgemm) if sgemm and "torch" in us else nan
        tgt = target_vs_torch(regime, arch, B, H) if mode == "train" else None
        np_verdict = "met" if r_np >= TARGET_VS_NUMPY else (
            f"MISSED (bound {bound:.1f}×)" if bound < TARGET_VS_NUMPY else "MISSED")
        verdict = f"≥5× NP: {np_verdict}"
        if tgt is not None:
            pt_verdict = "met" if r_pt >= tgt else (
                f"MISSED (bound {pt_bound:.1f}×)" if pt_bound < tgt else "MISSED")
            if rounds_pt:
                pt_verdict += f", {sum(r >= tgt for r in rounds_pt)}/{len(rounds_pt)} rounds"
            verdict = f"≥{tgt:g}× PT: {pt_verdict}; " + verdict
        cell = {k: (f"{us[k]:.1f}" if k in us else "-") for k in CONTENDERS}
        emit(f"| {regime} | {name} | {mode} | {cell['numpy']} | {cell['numba']} | {cell['torch']} | {gf:.1f} | "
             f"{r_np:.1f}× | {bound:.1f}× | {r_pt:.2f}× | {spread(rounds_pt)} | {pt_bound:.1f}× | {verdict} | {n} |")
        rows.append(dict(regime=regime, name=name, mode=mode, us=us, gflops=gf, vs_numpy=r_np,
                         vs_torch=r_pt, vs_torch_per_round=rounds_pt, target=tgt, gemm_flops_per_step=gemm, numpy_bound=bound, torch_bound=pt_bound,
                         sgemm_for_bound=sgemm, n={k: v[1] for k, v in med.items()},
                         page_faults_per_call={k: v[2] for k, v in med.items()}))
    return rows


if __name__ == "__main__":
    if ARGS.worker:
        worker_main(ARGS.worker)
    else:
        main()

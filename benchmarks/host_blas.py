"""A model's own array code between the backend's calls: with NumPy's BLAS threaded, or not.

    python benchmarks/host_blas.py                      # the demo's model, Numba and NumPy backends
    python benchmarks/host_blas.py --cell gru --hidden 256 --rounds 20

A ``SequenceModel`` runs its recurrent core on a backend and its embedding, read-out and
loss as NumPy code around it.  The read-out's products go through NumPy's OpenBLAS, which
threads them, and whose idle workers then spin for about 0.1 s on the cores they ran on:
the cores on which the Numba backend's threads run its next call.  ``dispatch.host_blas``
is the setting a backend asks for around its calls (for Numba: OpenBLAS on the calling
thread, ``gemm.single_threaded_blas``), and the models apply it to their ``forward`` and
``backward``.  This script times the training step of the demo's character model (forward,
softmax cross-entropy, backward; no optimiser) with that setting as registered ("as
registered") and with it removed ("NumPy's default": OpenBLAS threads the read-out), in
interleaved rounds, and prints the median ms per training step of each and the parts of
the step (core forward and backward, read-out forward and backward) in the last round.

Each round runs a few untimed steps first (after a pause the first steps run slower on
every setting) and then times ``--steps`` steps back to back; rounds are separated by a
0.3 s pause, so that OpenBLAS's workers from one setting have stopped spinning before the
other runs.
"""
import argparse
import contextlib
import os
import time

from arguments import positive, use_threads  # beside this script

ap = argparse.ArgumentParser()
ap.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
ap.add_argument("--hidden", type=positive, default=128)
ap.add_argument("--batch", type=positive, default=32)
ap.add_argument("--seq-len", type=positive, default=64)
ap.add_argument("--vocab", type=positive, default=65)
ap.add_argument("--embed", type=positive, default=32)
ap.add_argument("--backends", nargs="+", choices=["numba", "numpy"], default=["numba", "numpy"])
ap.add_argument("--rounds", type=positive, default=10)
ap.add_argument("--steps", type=positive, default=20)
ap.add_argument("--threads", type=positive, default=2)
args = ap.parse_args()
use_threads(args.threads)

import numpy as np  # noqa: E402

import rnnbook as rb  # noqa: E402
from rnnbook import dispatch  # noqa: E402
from rnnbook.layers import linear  # noqa: E402
from rnnbook.losses import softmax_cross_entropy  # noqa: E402
from rnnbook.model import SequenceModel  # noqa: E402

SETTINGS = ("as registered", "NumPy's default")
PARTS = {"core forward": (dispatch, "forward"), "core backward": (dispatch, "backward"),
         "read-out forward": (linear, "forward"), "read-out backward": (linear, "backward")}
spent = dict.fromkeys(PARTS, 0.0)


def timed(name, fn):
    def run(*a, **k):
        t0 = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[name] += time.perf_counter() - t0
    return run


for _name, (_module, _attr) in PARTS.items():     # the models look these up at call time
    setattr(_module, _attr, timed(_name, getattr(_module, _attr)))


@contextlib.contextmanager
def setting(backend, name):
    """Inside the block, ``name`` holds for ``backend``: its registered ``host_blas`` ("as
    registered"), or none ("NumPy's default": the registration is taken away, and put back
    at the end)."""
    registered = dispatch._host_blas.get(backend)
    if name == SETTINGS[1]:
        dispatch._host_blas.pop(backend, None)
    try:
        yield
    finally:
        if registered is not None:
            dispatch._host_blas[backend] = registered


def thread_control():
    """Whether this NumPy's OpenBLAS lets the Numba backend set its thread count (without it
    the two settings run the same code)."""
    from rnnbook.numba_cpu import gemm
    return gemm._threads is not None


print(f"{args.cell.upper()} character model: vocab {args.vocab}, embed {args.embed}, hidden {args.hidden}, "
      f"batch {args.batch} x {args.seq_len} steps, float32, {args.threads} threads; {args.rounds} interleaved "
      f"rounds of {args.steps} timed training steps (forward, loss, backward)")
print(f"{'backend':8} {'setting':16} {'ms/step':>8} {'q25-q75':>12}   parts in the last round, ms/step")
for backend in args.backends:
    try:
        dispatch.require_available(backend)
    except dispatch.BackendUnavailableError as exc:
        print(f"{backend:8} skipped: {exc}")
        continue
    model = SequenceModel(args.cell, hidden_size=args.hidden, vocab_size=args.vocab, embed_dim=args.embed,
                          backend=backend)
    params = model.init_params(seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, args.vocab, (args.seq_len, args.batch))
    targets = rng.integers(0, args.vocab, (args.seq_len, args.batch))

    def step():
        logits, _, cache = model.forward(params, inputs)
        _, dlogits = softmax_cross_entropy(logits, targets)
        model.backward(params, cache, dlogits)

    times = {name: [] for name in SETTINGS}
    parts = {}
    differs = backend in dispatch._host_blas and (backend != "numba" or thread_control())
    for r in range(args.rounds):
        for name in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            with setting(backend, name):
                for _ in range(3):
                    step()
                for k in spent:
                    spent[k] = 0.0
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
                parts[name] = {k: v / args.steps * 1e3 for k, v in spent.items()}
            time.sleep(0.3)
    for name in SETTINGS:
        t = np.array(times[name])
        q25, q75 = np.percentile(t, [25, 75])
        part = ", ".join(f"{k} {v:.2f}" for k, v in parts[name].items())
        same = "" if differs or name == SETTINGS[0] else "  (nothing to change here: the same code)"
        print(f"{backend:8} {name:16} {np.median(t):8.2f} {q25:5.2f}-{q75:<6.2f}   {part}{same}")
print(f"\nrnnbook {rb.__version__}, numpy {np.__version__}, load average {os.getloadavg()[0]:.1f}")

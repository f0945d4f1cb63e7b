"""A timeline of the backward pass with its gradients behind the loop (``bptt._gradients_alongside``):
when the loop ends, what each thread computes after it, and how long each product call takes
during the loop and after it.

    python benchmarks/timeline.py                          # LSTM B=1 H=32 T=1024, 200 training steps
    python benchmarks/timeline.py --cells lstm gru --H 32 64 --rounds 100
    python benchmarks/timeline.py --paths python           # the Python helper only

The script times the training step (forward and backward, float32, two threads) back to back, as a
training loop runs it, with the products behind the loop as compiled calls and as Python calls
(``bptt.COMPILED_ALONGSIDE``, ``--paths``; the two take turns, round by round).  It wraps, from
outside the library, ``_gradients_alongside`` (its start and its return), the store that ends the
loop (``store_release_py`` of ``_LOOP_OVER``) and, on the Python path, every block of steps that the
products recorded after the loop compute (``Product.steps``: the weight and bias sums on the
helper, the input gradient on whichever thread is free; the compiled path makes no Python call
to wrap).  It prints, per configuration and path:

* the medians over the calls of when the loop ends, in µs from the start of
  ``_gradients_alongside``, and of the tail after the loop, to its return;
* on the Python path, per product (``W`` sums, ``b`` sums, ``dX``), the median µs per 128 steps of its calls that
  ran during the loop and of those that ran after it, with their counts.  Only whole blocks
  of steps count (``bptt.STREAM_BLOCK_ROWS`` rows), or runs of them (the input gradient taken
  after the loop): the short blocks at the end pay the same fixed cost per call for fewer
  steps.  The same BLAS call at the same size should take the same time in both columns;
  where the calls after the loop take longer, both threads running products at once
  (Python, BLAS and the GIL on each) costs that much.

A diagnostic, not a benchmark of the backend: the wrapper around each call costs ~0.2 µs (measured).
"""
import argparse
import threading
import time
from collections import defaultdict

from arguments import random_problem, single_sequence_arguments, training_step  # beside this script

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--paths", nargs="+", choices=["compiled", "python"], default=["compiled", "python"],
                    help="the products behind the loop as compiled calls, or as Python calls (bptt.COMPILED_ALONGSIDE)")
args = single_sequence_arguments(parser, H=[32], rounds=200)

import numpy as np  # noqa: E402

from rnnbook.numba_cpu import bptt  # noqa: E402

events = []                       # (kind, steps, start, end) of the current call, kind "loop" or a product
started = [0.0]                   # when the current _gradients_alongside began
inside = [False]                  # whether it is under way
ON_THREADS, ALONGSIDE, STORE = bptt.on_threads, bptt._gradients_alongside, bptt.store_release_py
KINDS = {bptt.weight_gradient: "W", bptt.bias_gradient: "b", bptt.input_gradient: "dX"}
current = threading.local()       # the product being recorded (set by the wrapped recorders)


def recording(fn, kind):
    """``fn`` (a recorder of products after the loop) with its products labelled ``kind``."""
    def wrapper(*a, **k):
        current.kind = kind
        try:
            return fn(*a, **k)
        finally:
            current.kind = None
    return wrapper


def on_threads(part, R, macs, then=None, steps=None, total=None, per_step=False, blocks=None):
    """``bptt.on_threads`` with ``steps`` timed, each call an event of the product's kind."""
    kind = getattr(current, "kind", None)
    timed_steps = steps
    if steps is not None and kind is not None:
        def timed_steps(t0, t1, first):
            a = time.perf_counter()
            steps(t0, t1, first)
            events.append((kind, t1 - t0, a, time.perf_counter()))
    return ON_THREADS(part, R, macs, then=then, steps=timed_steps, total=total, per_step=per_step, blocks=blocks)


def alongside(*a, **k):
    """``bptt._gradients_alongside``, its start and its end (an event) noted."""
    started[0], inside[0] = time.perf_counter(), True
    try:
        return ALONGSIDE(*a, **k)
    finally:
        inside[0] = False
        events.append(("end", 0, started[0], time.perf_counter()))


def store(flags, i, value):
    """``bptt.store_release_py``; inside ``_gradients_alongside``, the store of ``_LOOP_OVER`` is
    the end of the loop (the forward pass stores the same value, ``ALL_READY``, for its inputs)."""
    STORE(flags, i, value)
    if inside[0] and value == bptt._LOOP_OVER:
        events.append(("loop", 0, started[0], time.perf_counter()))


def measure(cell, H):
    """Per path of ``args.paths``: the medians of when the loop ends and of the tail after it,
    and the product calls' µs per 128 steps (during, after the loop); the paths take turns,
    round by round.  ``None`` where the gradients do not run behind the loop."""
    params, x, dy = random_problem(cell, H, args.T, args.B)
    full = max(1, bptt.STREAM_BLOCK_ROWS // args.B)       # steps in a whole block (bptt.step_blocks)
    for path in args.paths:
        bptt.COMPILED_ALONGSIDE = path == "compiled"
        for _ in range(30):                               # compile, warm up, reach the steady state
            training_step(cell, params, x, dy)
    got = {path: ([], [], defaultdict(lambda: ([], []))) for path in args.paths}
    for r in range(args.rounds):
        for path in (args.paths if r % 2 else args.paths[::-1]):
            bptt.COMPILED_ALONGSIDE = path == "compiled"
            loop_end, tail, rates = got[path]
            events.clear()
            training_step(cell, params, x, dy)
            loop = [e for e in events if e[0] == "loop"]
            if not loop:                                  # the gradients did not run behind the loop
                return None
            over = loop[0][3]
            calls = [e for e in events if e[0] not in ("loop", "end")]
            loop_end.append((over - started[0]) * 1e6)
            tail.append((next(e[3] for e in events if e[0] == "end") - over) * 1e6)
            for kind, steps, a, b in calls:
                if steps >= full:                         # whole blocks, or runs of them (dX after the loop)
                    rates[kind][a >= over].append((b - a) * 1e6 / steps * 128)
    return {path: (np.median(loop_end), np.median(tail), rates) for path, (loop_end, tail, rates) in got.items()}


bptt.on_threads, bptt._gradients_alongside, bptt.store_release_py = on_threads, alongside, store
for fn, kind in KINDS.items():
    setattr(bptt, fn.__name__, recording(fn, kind))
try:
    print(f"B={args.B} T={args.T} float32, {args.threads} threads, {args.rounds} training steps back to back")
    print(f"{'cell':<5} {'H':>4} {'path':<8} {'loop ends':>9} {'tail':>6}   "
          "µs per 128 steps, median (calls): during the loop | after it")
    for cell in args.cells:
        for H in args.H:
            got = measure(cell, H)
            if got is None:
                print(f"{cell:<5} {H:>4}   (the gradients run after the loop here, not behind it)")
                continue
            for path, (loop_end, tail, rates) in got.items():
                cols = []
                for kind in ("W", "b", "dX"):
                    during, after = rates[kind]
                    cell_text = " | ".join(f"{np.median(v):5.1f} ({len(v):4d})" if v else "   -  (   0)"
                                           for v in (during, after))
                    cols.append(f"{kind} {cell_text}")
                products = "   ".join(cols) if path == "python" else "(compiled: no Python calls to time)"
                print(f"{cell:<5} {H:>4} {path:<8} {loop_end:9.0f} {tail:6.0f}   {products}", flush=True)
finally:
    bptt.COMPILED_ALONGSIDE = True
    bptt.on_threads, bptt._gradients_alongside, bptt.store_release_py = ON_THREADS, ALONGSIDE, STORE
    for fn in KINDS:
        setattr(bptt, fn.__name__, fn)

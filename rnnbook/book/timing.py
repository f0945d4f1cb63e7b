"""The backend swap of every chapter: time one architecture on every backend usable here.

    table = backend_timings("gru", input_size=32, hidden_size=128, seq_len=64, batch=32)
    table            # renders as a Markdown table in Jupyter; print(table) in a terminal

The rows follow ``rnnbook.available_backends()``, so the table grows by itself as
backends appear (Numba on any machine, CuPy where there is a GPU); a backend that
is usable but lacks this architecture, or this form of it (options such as the
LSTM's ``peepholes=True`` that a backend does not implement), gets a row that says
so instead of an error.
Each row gives the first call (which includes compiling, for Numba and CuPy), the
median forward and backward times after it, and the largest relative difference
from the NumPy reference, so a fast wrong backend cannot hide.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from .. import dispatch
from ..arrays import to_numpy


def _to_backend(a, backend):
    if backend == "cupy":
        import cupy
        return cupy.asarray(a)
    return a


def _sync(backend):
    if backend == "cupy":
        import cupy
        cupy.cuda.Device().synchronize()


def _max_rel_diff(a, b) -> float:
    a, b = np.asarray(to_numpy(a), np.float64), np.asarray(to_numpy(b), np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


class TimingTable:
    """Rows of backend timings; Markdown in Jupyter, aligned text with ``str``."""

    COLUMNS = ("backend", "first call (ms)", "forward (ms)", "backward (ms)", "speed-up vs numpy",
               "max rel diff vs numpy", "note")

    def __init__(self, rows: list[dict], title: str):
        self.rows = rows
        self.title = title

    def _cells(self):
        out = []
        for r in self.rows:
            def fmt(v, spec):
                return "" if v is None else format(v, spec)
            out.append([r["backend"], fmt(r.get("first_ms"), ".1f"), fmt(r.get("forward_ms"), ".2f"),
                        fmt(r.get("backward_ms"), ".2f"), fmt(r.get("speedup"), ".2f"),
                        fmt(r.get("max_rel_diff"), ".1e"), r.get("note", "")])
        return out

    def _repr_markdown_(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.COLUMNS) + " |",
                 "|" + "---|" * len(self.COLUMNS)]
        lines += ["| " + " | ".join(c) + " |" for c in self._cells()]
        return "\n".join(lines)

    def __str__(self) -> str:
        cells = [list(self.COLUMNS)] + self._cells()
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.COLUMNS))]
        lines = [self.title] + ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join(lines)

    __repr__ = __str__


def backend_timings(architecture: str, input_size: int, hidden_size: int, seq_len: int, batch: int,
                    dtype=np.float32, repeats: int = 5, seed: int = 0, backends=None, **options) -> TimingTable:
    """Time ``forward`` and ``backward`` of ``architecture`` on every usable backend (or ``backends``)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    names = list(backends) if backends is not None else dispatch.available_backends()
    rng = np.random.default_rng(seed)
    params = dispatch.init_params(architecture, input_size, hidden_size, seed=seed, dtype=dtype, backend="numpy",
                                  **options)
    shown, options = options, {k: v for k, v in options.items() if k != "num_layers"}   # depth lives in params
    x = rng.standard_normal((seq_len, batch, input_size)).astype(dtype)
    out_width = dispatch.forward(architecture, params, x[:1], backend="numpy", **options)[0].shape[2]  # 2H if bidirectional
    dy = rng.standard_normal((seq_len, batch, out_width)).astype(dtype)
    rows, reference = [], None
    for b in names:
        row = {"backend": b}
        rows.append(row)
        try:
            dispatch.lookup(architecture, "forward", b)
            dispatch.lookup(architecture, "backward", b)
        except dispatch.NotImplementedForBackendError:
            row["note"] = f"no {architecture} forward/backward on {b} yet"
            continue
        except dispatch.BackendUnavailableError as exc:
            row["note"] = str(exc)
            continue
        p = {k: _to_backend(v, b) for k, v in params.items()}
        xb, dyb = _to_backend(x, b), _to_backend(dy, b)

        def fwd():
            out = dispatch.forward(architecture, p, xb, backend=b, **options)
            _sync(b)
            return out

        def bwd(cache):
            g = dispatch.backward(architecture, p, cache, dyb)
            _sync(b)
            return g

        t0 = time.perf_counter()
        try:
            y, _, cache = fwd()
        except dispatch.NotImplementedForBackendError as exc:   # e.g. a form (options) the backend lacks
            row["note"] = str(exc)
            continue
        grads = bwd(cache)
        row["first_ms"] = 1e3 * (time.perf_counter() - t0)
        f_times, b_times = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            y, _, cache = fwd()
            t1 = time.perf_counter()
            grads = bwd(cache)
            t2 = time.perf_counter()
            f_times.append(t1 - t0)
            b_times.append(t2 - t1)
        row["forward_ms"] = 1e3 * statistics.median(f_times)
        row["backward_ms"] = 1e3 * statistics.median(b_times)
        if b == "numpy" or reference is None and "numpy" not in names:
            reference = (y, grads, row["forward_ms"] + row["backward_ms"])
        if reference is not None:
            ry, rg, rt = reference
            row["max_rel_diff"] = max([_max_rel_diff(y, ry)] + [_max_rel_diff(grads[k], rg[k]) for k in params])
            row["speedup"] = rt / (row["forward_ms"] + row["backward_ms"])
    opts = ", ".join(f"{k}={v!r}" for k, v in shown.items())
    title = (f"{architecture}{f' ({opts})' if opts else ''}: T={seq_len}, B={batch}, D={input_size}, "
             f"H={hidden_size}, {np.dtype(dtype).name}, median of {repeats}")
    return TimingTable(rows, title)

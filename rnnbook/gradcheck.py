r"""Numerical gradient checking: is a hand-derived backward pass right?

For a function ``y = f(θ)`` with any output shape we draw a random upstream
gradient ``G`` (fixed seed) and check the gradient of the scalar

    L(θ) = Σ G ⊙ f(θ)

which is exactly what a backward pass given ``dy = G`` returns.  Each entry is
estimated by centred differences in float64.  The two-point rule

    ∂L/∂θ_i ≈ (L(θ + ε e_i) - L(θ - ε e_i)) / (2ε)                       error O(ε²)

needs a tiny step (ε ≈ 1e-6) to keep its truncation error small, and then the
rounding error of ``L`` (≈ 1e-16·|L| / ε ≈ 1e-10) swamps gradient entries of
size 1e-4.  The default is therefore the four-point centred rule

    ∂L/∂θ_i ≈ (8[L(θ+εe_i) - L(θ-εe_i)] - [L(θ+2εe_i) - L(θ-2εe_i)]) / (12ε)   error O(ε⁴)

with ε = 1e-4: truncation ≈ 1e-16 and rounding ≈ 1e-12, a hundred times more
accurate for twice the evaluations (``order=2`` gives the textbook rule).  The
contraction itself is summed exactly (``math.fsum``).  Entries are compared

through the symmetric relative error

    err_i = max(|a_i - n_i| - η, 0) / max(|a_i| + |n_i|, floor)

(``floor`` keeps the error finite when both are zero: a dead ReLU unit).  ``η``
is the rounding noise of the numerical estimate itself: each evaluation of ``L``
is a sum whose terms have size ``S = Σ|G ⊙ f(θ)|`` and is off by about ``u·S``
(``u = 2⁻⁵³``), so the difference quotient is off by ``η = c·u·S/ε`` (``c = 1`` for
the two-point rule, ``18/12`` for the four-point rule).  Differences smaller than
that say nothing about the backward pass; without ``η`` a correct gradient entry
of size 1e-8 (a softmax probability, say) would "fail" at 1e-6.  The
report gives, per checked array, the worst entry, its index and both values, so
a wrong term points at itself.  Contracting with a *random* ``G`` matters: with
``G = 1`` a backward pass that mixes up two outputs can still pass.

Use :func:`check_architecture` for anything registered with ``rnnbook.dispatch``
and :func:`check_function` for any plain function (the exercises).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import math

import numpy as np

from .arrays import to_numpy

DEFAULT_EPS = {2: 1e-6, 4: 1e-4}
DEFAULT_FLOOR = 1e-12
DEFAULT_TOL = 1e-6


@dataclass
class Entry:
    """The result for one checked array."""
    name: str
    max_error: float            # max of err_i (rounding noise η discounted): what ``ok`` judges
    raw_error: float            # max of |a_i - n_i| / max(|a_i| + |n_i|, floor), η not discounted
    index: tuple
    analytic: float
    numeric: float
    size: int


@dataclass
class Report:
    """Per-array results of a gradient check.  ``report.ok()`` / ``report.assert_ok()``."""
    entries: list[Entry] = field(default_factory=list)
    noise: float = 0.0          # η, the rounding noise allowed for (see the module docstring)

    @property
    def max_error(self) -> float:
        return max((e.max_error for e in self.entries), default=0.0)

    @property
    def worst(self) -> Entry | None:
        return max(self.entries, key=lambda e: e.max_error, default=None)

    def __getitem__(self, name) -> Entry:
        for e in self.entries:
            if e.name == name:
                return e
        raise KeyError(name)

    def ok(self, tol: float = DEFAULT_TOL) -> bool:
        return self.max_error < tol

    def failing(self, tol: float = DEFAULT_TOL) -> list[Entry]:
        return [e for e in self.entries if e.max_error >= tol]

    def assert_ok(self, tol: float = DEFAULT_TOL) -> "Report":
        if not self.ok(tol):
            bad = ", ".join(f"{e.name}{list(e.index)} (error {e.max_error:.2e}: analytic "
                            f"{e.analytic:.6g} vs numeric {e.numeric:.6g})" for e in self.failing(tol))
            raise AssertionError(f"gradient check failed (tolerance {tol:g}): {bad}\n{self}")
        return self

    def __str__(self) -> str:
        w = max([len(e.name) for e in self.entries] + [4])
        lines = [f"{'name':<{w}}  {'entries':>7}  {'rel err':>9}  {'beyond η':>9}  {'worst index':<16} "
                 f"{'analytic':>12} {'numeric':>12}"]
        for e in self.entries:
            lines.append(f"{e.name:<{w}}  {e.size:>7}  {e.raw_error:>9.2e}  {e.max_error:>9.2e}  "
                         f"{str(list(e.index)):<16} {e.analytic:>12.6g} {e.numeric:>12.6g}")
        lines.append(f"('beyond η' discounts the rounding noise η = {self.noise:.1e} of the numerical estimate; "
                     "it is what ok() judges)")
        return "\n".join(lines)

    __repr__ = __str__


def relative_error(analytic, numeric, floor: float = DEFAULT_FLOOR, noise: float = 0.0):
    """``max(|a - n| - noise, 0) / max(|a| + |n|, floor)`` entry by entry."""
    a = np.asarray(analytic, np.float64)
    n = np.asarray(numeric, np.float64)
    return np.maximum(np.abs(a - n) - noise, 0.0) / np.maximum(np.abs(a) + np.abs(n), floor)


def rounding_noise(scale: float, eps: float, order: int) -> float:
    """``η = c·u·S/ε``: how far rounding alone moves a difference quotient of a sum of size ``S``."""
    c = {2: 1.0, 4: 18.0 / 12.0}[order]
    return c * np.finfo(np.float64).eps / 2 * scale / eps


def numerical_gradient(loss: Callable[[], float], array: np.ndarray, eps: float | None = None,
                       order: int = 4) -> np.ndarray:
    """Centred-difference gradient of the scalar ``loss()`` w.r.t. ``array``, perturbed in place.

    ``loss`` takes no arguments: it reads ``array`` (and whatever else it closes over).
    ``order`` is 2 (two-point rule) or 4 (four-point rule); ``eps`` defaults per order.
    """
    if order not in DEFAULT_EPS:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    eps = DEFAULT_EPS[order] if eps is None else eps
    if not (isinstance(array, np.ndarray) and array.dtype == np.float64):
        raise TypeError("numerical_gradient needs a float64 NumPy array (differences in float32 are "
                        f"too coarse), got {type(array).__name__} of dtype {getattr(array, 'dtype', None)}")
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)

    def at(i, step):
        old = flat[i]
        flat[i] = old + step
        value = float(loss())
        flat[i] = old
        return value

    for i in range(flat.size):
        if order == 2:
            gflat[i] = (at(i, eps) - at(i, -eps)) / (2 * eps)
        else:
            gflat[i] = (8 * (at(i, eps) - at(i, -eps)) - (at(i, 2 * eps) - at(i, -2 * eps))) / (12 * eps)
    return grad


def _entry(name, analytic, numeric, floor, noise) -> Entry:
    analytic = np.asarray(to_numpy(analytic), np.float64)
    if analytic.shape != numeric.shape:
        raise ValueError(f"analytic gradient for {name!r} has shape {analytic.shape}, "
                         f"expected {numeric.shape}")
    if analytic.size == 0:
        return Entry(name, 0.0, 0.0, (), 0.0, 0.0, 0)
    raw = relative_error(analytic, numeric, floor)
    err = relative_error(analytic, numeric, floor, noise)
    # point at the worst judged entry; when every entry is within noise, at the worst raw one
    idx = np.unravel_index(int(np.argmax(err if err.max() > 0 else raw)), err.shape)
    return Entry(name, float(err.max()), float(raw.max()), tuple(int(i) for i in idx),
                 float(analytic[idx]), float(numeric[idx]), int(err.size))


def _contract(out, upstream) -> float:
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return math.fsum(math.fsum((np.asarray(to_numpy(o), np.float64) * g).ravel()) for o, g in zip(outs, upstream))


def check_function(f: Callable[[dict], object], inputs: dict, grad_fn: Callable[[dict, object], dict],
                   seed: int = 0, eps: float | None = None, order: int = 4,
                   floor: float = DEFAULT_FLOOR, names=None) -> Report:
    """Check ``grad_fn`` against centred differences of ``f``.

    ``f(inputs)`` returns an array (or a tuple of arrays); ``grad_fn(inputs, upstream)``
    returns ``{name: dL/d inputs[name]}`` for ``L = Σ upstream ⊙ f(inputs)``, where
    ``upstream`` has the structure of ``f``'s output (an array, or a tuple of arrays).
    ``names`` restricts which inputs are checked (default: every key ``grad_fn`` returns).
    Inputs are copied to float64 first.
    """
    if not isinstance(inputs, dict):
        raise TypeError(f"inputs must be a dict of arrays, got {type(inputs).__name__}")
    if order not in DEFAULT_EPS:
        raise ValueError(f"order must be 2 or 4, got {order!r}")
    inputs = {k: np.array(to_numpy(v), dtype=np.float64) if np.asarray(to_numpy(v)).dtype.kind == "f" else v
              for k, v in inputs.items()}
    out = f(inputs)
    rng = np.random.default_rng(seed)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    upstream = tuple(rng.standard_normal(tuple(o.shape) if hasattr(o, 'shape') else ()) for o in outs)
    analytic = grad_fn(inputs, upstream if isinstance(out, (tuple, list)) else upstream[0])
    scale = math.fsum(math.fsum(np.abs(np.asarray(to_numpy(o), np.float64) * g).ravel())
                      for o, g in zip(outs, upstream))
    noise = rounding_noise(scale, DEFAULT_EPS[order] if eps is None else eps, order)
    if not isinstance(analytic, dict):
        raise TypeError(f"grad_fn must return a dict {{name: gradient}}, got {type(analytic).__name__}")
    report = Report(noise=noise)
    for name in (names if names is not None else analytic):
        if name not in inputs:
            raise KeyError(f"grad_fn returned a gradient for {name!r}, which is not an input")
        if name not in analytic:
            raise KeyError(f"grad_fn returned no gradient for {name!r}")
        numeric = numerical_gradient(lambda: _contract(f(inputs), upstream), inputs[name], eps, order)
        report.entries.append(_entry(name, analytic[name], numeric, floor, noise))
    return report


def check_architecture(architecture: str, params: dict, x, state0=None, backend=None, seed: int = 0,
                       eps: float | None = None, order: int = 4, floor: float = DEFAULT_FLOOR, window=None,
                       check_state=True, **options) -> Report:
    """Gradient-check ``rnnbook.backward`` for ``architecture`` (any backend) in float64.

    Inputs are NumPy float64 copies (a GPU backend moves them to the device itself);
    results are brought back with ``to_numpy``.  Checks every parameter, the input
    ``x`` and each array of the initial state,
    with random ``dy`` and a random gradient on the final state.  With ``window``
    the truncated gradient is checked instead (only meaningful for ``window >= T``).
    """
    from . import dispatch

    to64 = lambda a: np.array(a, dtype=np.float64)  # noqa: E731
    params = {k: to64(v) for k, v in params.items()}
    x = to64(x)
    y, state, _ = dispatch.forward(architecture, params, x, state0, backend=backend, **options)
    if state0 is None:
        state0 = tuple(np.zeros(s.shape) for s in state)
    state0 = tuple(to64(s) for s in state0)
    inputs = {**{f"params.{k}": v for k, v in params.items()}, "x": x,
              **{f"state0[{i}]": s for i, s in enumerate(state0)}}

    def f(inp):
        p = {k[len("params."):]: v for k, v in inp.items() if k.startswith("params.")}
        s0 = tuple(inp[f"state0[{i}]"] for i in range(len(state0)))
        y, state, _ = dispatch.forward(architecture, p, inp["x"], s0, backend=backend, **options)
        return (to_numpy(y),) + tuple(to_numpy(s) for s in state) if check_state else to_numpy(y)

    def grad_fn(inp, upstream):
        dy, dstate = (upstream[0], tuple(upstream[1:])) if check_state else (upstream, None)
        p = {k[len("params."):]: v for k, v in inp.items() if k.startswith("params.")}
        s0 = tuple(inp[f"state0[{i}]"] for i in range(len(state0)))
        _, _, cache = dispatch.forward(architecture, p, inp["x"], s0, backend=backend, **options)
        g = dispatch.backward(architecture, p, cache, dy, dstate, window=window)
        out = {f"params.{k}": to_numpy(g[k]) for k in p}
        out["x"] = to_numpy(g["x"])
        out.update({f"state0[{i}]": to_numpy(s) for i, s in enumerate(g["state0"])})
        return out

    return check_function(f, inputs, grad_fn, seed=seed, eps=eps, order=order, floor=floor)

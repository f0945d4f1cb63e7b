"""Input validation shared by every backend.

Bad input must fail early with a message that names the argument, what it got
and what was expected -- never a broadcasting error from deep inside a cell and
never a silently wrong answer.  Every backend calls these helpers before it
computes anything.  They work on anything with ``shape``/``dtype``/``ndim``
(NumPy and CuPy arrays alike).
"""
from __future__ import annotations

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _describe(a) -> str:
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return f"{type(a).__name__} of shape {tuple(a.shape)} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def check_float_array(a, name: str, ndim: int | None = None, dtype=None):
    """``a`` must be a float32/float64 array (of ``ndim`` dims and ``dtype`` when given)."""
    if not (hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "ndim")):
        raise TypeError(f"{name} must be an array, got {_describe(a)}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {_describe(a)}"
                        + ("; convert with .astype(np.float64)" if a.dtype.kind in "iub" else ""))
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got {_describe(a)}")
    if dtype is not None and a.dtype != np.dtype(dtype):
        raise TypeError(f"{name} has dtype {a.dtype} but the parameters are {np.dtype(dtype)}; "
                        "use one dtype for parameters, inputs and states")
    return a


def check_sequence(x, name: str = "x", dtype=None):
    """A time-major sequence ``(T, B, D)`` with ``T, B, D >= 1``; returns ``(T, B, D)``."""
    check_float_array(x, name, ndim=3, dtype=dtype)
    if min(x.shape) < 1:
        raise ValueError(f"{name} must have shape (T, B, D) with every size >= 1, got {_describe(x)}")
    return tuple(int(s) for s in x.shape)


def check_params(params, expected: dict[str, tuple], architecture: str):
    """``params`` must hold exactly the names in ``expected`` with those shapes and one float dtype.

    Returns the common dtype.
    """
    if not isinstance(params, dict):
        raise TypeError(f"params for {architecture!r} must be a dict of arrays, got {type(params).__name__}")
    missing = [k for k in expected if k not in params]
    if missing:
        raise ValueError(f"params for {architecture!r} are missing {missing}; expected {sorted(expected)}")
    extra = [k for k in params if k not in expected]
    if extra:
        raise ValueError(f"params for {architecture!r} have unexpected entries {extra}; "
                         f"expected {sorted(expected)} (wrong options for this architecture?)")
    dtype = None
    for k, shape in expected.items():
        check_float_array(params[k], f"params[{k!r}]", dtype=dtype)
        dtype = params[k].dtype
        if tuple(params[k].shape) != tuple(shape):
            raise ValueError(f"params[{k!r}] of {architecture!r} must have shape {tuple(shape)}, "
                             f"got {_describe(params[k])}")
    return dtype


def check_state(state, expected: tuple[tuple, ...], names: tuple[str, ...], dtype, what="state0"):
    """``state`` must be a tuple of arrays with the given shapes (``None`` is allowed by callers)."""
    if not isinstance(state, (tuple, list)):
        raise TypeError(f"{what} must be a tuple of arrays {names}, got {_describe(state)}")
    if len(state) != len(expected):
        raise ValueError(f"{what} must have {len(expected)} arrays {names}, got {len(state)}")
    for s, shape, n in zip(state, expected, names):
        check_float_array(s, f"{what} {n}", dtype=dtype)
        if tuple(s.shape) != tuple(shape):
            raise ValueError(f"{what} {n} must have shape {tuple(shape)}, got {_describe(s)}")
    return tuple(state)


def check_options(architecture: str, options: dict, allowed: dict[str, tuple]) -> dict:
    """Fill defaults and reject unknown option names or values.

    ``allowed`` maps an option name to its allowed values; the first is the default.
    """
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise TypeError(f"{architecture!r} got unknown option(s) {unknown}; "
                        f"its options are {sorted(allowed) or 'none'}")
    out = {}
    for k, values in allowed.items():
        v = options.get(k, values[0])
        if v not in values:
            raise ValueError(f"option {k}={v!r} of {architecture!r} must be one of {values}")
        out[k] = v
    return out


def check_sizes(input_size, hidden_size):
    for n, v in (("input_size", input_size), ("hidden_size", hidden_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{n} must be a positive integer, got {v!r}")


def check_window(window, T):
    if window is None:
        return T
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"window must be a positive integer (steps of truncated BPTT), got {window!r}")
    return int(min(window, T))


def hidden_size_from(params, name: str, axis: int, architecture: str) -> int:
    """Read the hidden size off one parameter (e.g. the last axis of ``W_hh``)."""
    if not isinstance(params, dict):
        raise TypeError(f"params for {architecture!r} must be a dict of arrays, got {type(params).__name__}")
    if name not in params:
        raise ValueError(f"params for {architecture!r} are missing {name!r} (present: {sorted(params)})")
    w = params[name]
    if not hasattr(w, "ndim") or w.ndim < 1:
        raise TypeError(f"params[{name!r}] must be an array, got {_describe(w)}")
    return int(w.shape[axis])


def state_names(cell, options) -> tuple:
    """The names of a cell's state arrays under ``options``.

    Most cells have a fixed ``STATE_NAMES``; a cell whose state depends on its
    options (an LSTM with gate recurrence carries its gates) defines
    ``state_names(**options)`` instead.
    """
    fn = getattr(cell, "state_names", None)
    return tuple(fn(**options)) if fn is not None else tuple(cell.STATE_NAMES)


def check_forward_call(cell, params, x, state0, options):
    """Validate a ``forward`` call against a cell's spec module.

    The spec module provides ``NAME``, ``OPTIONS``, ``STATE_NAMES`` (or
    ``state_names(**options)``), ``hidden_size(params)`` and
    ``param_shapes(D, H, **options)``.
    Returns ``(options, (T, B, D, H), dtype, state0)`` with ``state0`` a tuple
    (``None`` when the caller passed ``None``).
    """
    opts = check_options(cell.NAME, options, cell.OPTIONS)
    check_float_array(x, "x", ndim=3)
    T, B, D = check_sequence(x)
    H = cell.hidden_size(params)
    dtype = check_params(params, cell.param_shapes(D, H, **opts), cell.NAME)
    check_float_array(x, "x", dtype=dtype)
    if state0 is not None:
        names = state_names(cell, opts)
        state0 = check_state(state0, tuple((B, H) for _ in names), names, dtype)
    return opts, (T, B, D, H), dtype, state0


def check_backward_call(cell, cache_shape, dtype, dy, dstate, names):
    """``dy`` must match the outputs ``(T, B, H)``; ``dstate`` (or ``None``) the final state.

    ``names`` are the state arrays' names (or just their number).
    """
    if isinstance(names, int):
        names = tuple(cell.STATE_NAMES[:names]) if names <= len(cell.STATE_NAMES) else tuple(range(names))
    T, B, H = cache_shape
    check_float_array(dy, "dy", ndim=3, dtype=dtype)
    if tuple(dy.shape) != (T, B, H):
        raise ValueError(f"dy must have the shape of the outputs {(T, B, H)}, got {_describe(dy)}")
    if dstate is not None:
        dstate = check_state(dstate, tuple((B, H) for _ in names), tuple(map(str, names)), dtype,
                             what="dstate")
    return dstate


def non_default_options(cell, options) -> dict:
    """The options that differ from the cell's defaults (the first allowed value of each)."""
    return {k: v for k, v in options.items() if k in cell.OPTIONS and v != cell.OPTIONS[k][0]}


def require_default_options(cell, options, backend: str) -> None:
    """A backend that implements only a cell's default form refuses the other forms clearly."""
    extra = non_default_options(cell, options)
    if extra:
        from .dispatch import NotImplementedForBackendError
        raise NotImplementedForBackendError(
            f"backend {backend!r} implements {cell.NAME!r} only with its default options; "
            f"{extra} are implemented on backend 'numpy'")

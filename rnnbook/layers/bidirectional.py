r"""Bidirectional recurrent layer over any registered cell.

One cell reads the sequence forwards, a second (own parameters) reads it backwards;
their outputs are concatenated per time step::

    →y = Cell_fwd(x_0 … x_{T-1})
    ←y = reverse(Cell_bwd(x_{T-1} … x_0))          so ←y_t has seen x_t … x_{T-1}
    y_t = [→y_t | ←y_t]                            (T, B, 2H)

Parameters: ``"fwd.<name>"`` and ``"bwd.<name>"``.  State: the forward cell's final
state followed by the backward cell's (which is its state after reading ``x_0``).

Backward: split ``dy`` into halves, reverse the second half in time, run each cell's
backward, and add the two input gradients (reversing the backward cell's again).
"""
from .. import dispatch
from ..arrays import array_module

NAME = "bidirectional"


def _split(params):
    if not isinstance(params, dict):
        raise TypeError(f"params for 'bidirectional' must be a dict of arrays, got {type(params).__name__}")
    halves = {"fwd": {}, "bwd": {}}
    for key, value in params.items():
        head, _, rest = key.partition(".")
        if head not in halves or not rest:
            raise ValueError(f"params for 'bidirectional' must be named 'fwd.<name>' or 'bwd.<name>', got {key!r}")
        halves[head][rest] = value
    return halves["fwd"], halves["bwd"]


def _reverse(a):
    """Time-reversed contiguous copy of a ``(T, …)`` array (backends want contiguous input)."""
    return array_module(a).ascontiguousarray(a[::-1])


def _check_cell(cell):
    if not isinstance(cell, str):
        raise TypeError("'bidirectional' needs the option cell=<architecture name>, e.g. cell='lstm'")


def init_params(input_size, hidden_size, seed=0, dtype=None, *, backend, cell=None, **cell_options):
    _check_cell(cell)
    params = {}
    for i, direction in enumerate(("fwd", "bwd")):
        p = dispatch.init_params(cell, input_size, hidden_size, seed=2 * seed + i,
                                 dtype=dtype, backend=backend, **cell_options)
        params.update({f"{direction}.{k}": v for k, v in p.items()})
    return params


def forward(params, x, state0=None, *, backend, cell=None, **cell_options):
    """``x (T, B, D)`` -> ``(y (T, B, 2H), state_fwd + state_bwd, cache)``."""
    _check_cell(cell)
    p_f, p_b = _split(params)
    if state0 is not None and (not isinstance(state0, (tuple, list)) or len(state0) % 2):
        raise ValueError("state0 for 'bidirectional' must be a tuple: the forward cell's state "
                         "arrays followed by the backward cell's")
    n = None if state0 is None else len(state0) // 2
    s_f0 = None if state0 is None else tuple(state0[:n])
    s_b0 = None if state0 is None else tuple(state0[n:])
    y_f, s_f, c_f = dispatch.forward(cell, p_f, x, s_f0, backend=backend, **cell_options)
    y_b, s_b, c_b = dispatch.forward(cell, p_b, _reverse(x), s_b0, backend=backend, **cell_options)
    xp = array_module(y_f)
    y = xp.concatenate([y_f, _reverse(y_b)], axis=2)
    cache = {"fwd": c_f, "bwd": c_b, "cell": cell, "H": int(y_f.shape[2]), "n_state": len(s_f)}
    return y, tuple(s_f) + tuple(s_b), cache


def backward(params, cache, dy, dstate=None, window=None, *, backend):
    p_f, p_b = _split(params)
    H, n = cache["H"], cache["n_state"]
    if not hasattr(dy, "shape") or dy.ndim != 3 or dy.shape[2] != 2 * H:
        raise ValueError(f"dy for 'bidirectional' must have shape (T, B, {2 * H}), "
                         f"got {getattr(dy, 'shape', type(dy).__name__)}")
    if dstate is not None and (not isinstance(dstate, (tuple, list)) or len(dstate) != 2 * n):
        raise ValueError(f"dstate for 'bidirectional' must be a tuple of {2 * n} arrays")
    xp = array_module(dy)
    ds_f = None if dstate is None else tuple(dstate[:n])
    ds_b = None if dstate is None else tuple(dstate[n:])
    g_f = dispatch.backward(cache["cell"], p_f, cache["fwd"], xp.ascontiguousarray(dy[:, :, :H]), ds_f,
                            window=window)
    g_b = dispatch.backward(cache["cell"], p_b, cache["bwd"], _reverse(dy[:, :, H:]), ds_b, window=window)
    grads = {**{f"fwd.{k}": v for k, v in g_f.items() if k not in ("x", "state0")},
             **{f"bwd.{k}": v for k, v in g_b.items() if k not in ("x", "state0")}}
    grads = {k: grads[k] for k in params}
    grads["x"] = g_f["x"] + _reverse(g_b["x"])      # the backward cell read x reversed
    grads["state0"] = tuple(g_f["state0"]) + tuple(g_b["state0"])
    return grads

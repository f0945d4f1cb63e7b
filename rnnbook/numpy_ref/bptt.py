"""Unrolling a cell in time, and backpropagation through time (BPTT) for any cell.

A *cell* is a module with ``step_forward`` and ``step_backward`` (see ``rnn.py``,
``lstm.py``, ``gru.py``).  Unrolled over ``T`` steps it computes

    s_t = F(s_{t-1}, x_t; θ),   y_t = h_t = s_t[0],   t = 0 .. T-1

and the scalar we differentiate is, by the project's convention,

    L = Σ_t <dy_t, y_t> + <dstate, s_{T-1}>.

BPTT walks the unrolled graph backwards.  The error arriving at ``s_t`` is
``δ_t = dy_t (on h) + δ_{t+1} ∂s_{t+1}/∂s_t``; each ``step_backward`` turns
``δ_t`` into the gradients of that step's parameters, its input and ``δ_{t-1}``;
parameter gradients are summed over steps because θ is shared across time.

Truncated BPTT with a window of ``k`` steps (Williams & Peng's BPTT(k)) lets the
error injected at step ``s`` flow back through steps ``s, s-1, …, s-k+1`` only.
It is computed here literally, one backward chain per injection (O(T·k) steps),
so that ``k >= T`` reproducing full BPTT is a real check and not the same code.
"""
import numpy as np

from ..checks import check_backward_call, check_forward_call, check_window, state_names


def forward(cell, params, x, state0=None, **options):
    """Unroll ``cell`` over ``x`` ``(T, B, D)``.  Returns ``(y (T, B, H), final state, cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(cell, params, x, state0, options)
    names = state_names(cell, opts)
    if state0 is None:
        state0 = tuple(np.zeros((B, H), dtype) for _ in names)
    y = np.empty((T, B, H), dtype)
    steps = []                           # one step cache per time step
    state = state0
    for t in range(T):
        state, step_cache = cell.step_forward(params, x[t], state, **opts)
        y[t] = state[0]
        steps.append(step_cache)
    cache = {"x": x, "state0": state0, "steps": steps, "options": opts, "state_names": names,
             "shape": (T, B, H), "dtype": dtype}
    return y, state, cache


def _zeros_like_params(params):
    return {k: np.zeros_like(v) for k, v in params.items()}


def backward(cell, params, cache, dy, dstate=None, window=None):
    """Gradients of ``L`` w.r.t. every parameter, ``"x"`` and ``"state0"``.

    ``window=None`` is full BPTT in one backward sweep; ``window=k`` is BPTT(k).
    """
    T, B, H = cache["shape"]
    names = cache["state_names"]
    dstate = check_backward_call(cell, cache["shape"], cache["dtype"], dy, dstate, names)
    if window is not None:
        return _backward_windowed(cell, params, cache, dy, dstate, check_window(window, T))
    grads = _zeros_like_params(params)
    dx = np.zeros_like(cache["x"])
    # δ_{T-1}: only what flows in from the final state so far; dy_t is added at each step
    delta = tuple(np.zeros((B, H), cache["dtype"]) for _ in names) if dstate is None else dstate
    for t in reversed(range(T)):
        delta = (delta[0] + dy[t],) + tuple(delta[1:])          # y_t = h_t = s_t[0]
        dx[t], delta, dparams = cell.step_backward(params, cache["steps"][t], delta)
        for k in grads:
            grads[k] += dparams[k]                              # θ is shared by every step
    grads["x"] = dx
    grads["state0"] = delta
    return grads


def _backward_windowed(cell, params, cache, dy, dstate, k):
    """BPTT(k): the error injected at step ``s`` runs back through at most ``k`` steps."""
    T, B, H = cache["shape"]
    grads = _zeros_like_params(params)
    dx = np.zeros_like(cache["x"])
    names = cache["state_names"]
    dstate0 = [np.zeros((B, H), cache["dtype"]) for _ in names]
    for s in range(T):
        # the error injected at step s: dy_s on h, plus dstate on the final state
        inject = [np.zeros((B, H), cache["dtype"]) for _ in names]
        inject[0] = inject[0] + dy[s]
        if s == T - 1 and dstate is not None:
            inject = [a + b for a, b in zip(inject, dstate)]
        delta = tuple(inject)
        for t in range(s, max(s - k, -1), -1):                   # k steps: s, s-1, ..., s-k+1
            dx_t, delta, dparams = cell.step_backward(params, cache["steps"][t], delta)
            dx[t] += dx_t
            for name in grads:
                grads[name] += dparams[name]
        if s - k < 0:                                            # the chain reached the initial state
            dstate0 = [a + b for a, b in zip(dstate0, delta)]
    grads["x"] = dx
    grads["state0"] = tuple(dstate0)
    return grads

r"""LSTM on the Numba backend: ``numpy_ref.lstm`` with the time loop compiled and fused.

Same equations, names and gate order (**i, f, g, o**) as ``numpy_ref.lstm``::

    z_t = x_t W_ih^T + b  +  h_{t-1} W_hh^T      (B, 4H) = [z_i | z_f | z_g | z_o]
          ╰── G[t]: all steps, one GEMM ──╯ ╰── per step, inside the compiled loop ──╯
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g        h_t = o ⊙ tanh(c_t)

Arrays of the compiled loop (see ``bptt`` for the schedule)::

    gates (T, B, 4H)   G[t] before step t, the gate values [i|f|g|o] after it (the cache)
    hs    (T+1, B, H)  hs[0] = h_0,  hs[t+1] = h_t      (y = hs[1:])
    cs    (T+1, B, H)  cs[0] = c_0,  cs[t+1] = c_t
    WT    (H, 4H)      W_hh^T, so that the product runs along contiguous rows

Backward of one step (``_cell_backward``; each line differentiates the forward line named)::

    do  = dh ⊙ tanh(c_t)                          # h = o ⊙ tanh(c)
    dc  = dc_t + dh ⊙ o ⊙ (1 - tanh²(c_t))        # h = o ⊙ tanh(c), and c_t feeds step t+1
    di  = dc ⊙ g,  dg = dc ⊙ i,  df = dc ⊙ c_{t-1} # c = f ⊙ c_prev + i ⊙ g
    dc_{t-1} = dc ⊙ f
    dz  = [di·i(1-i) | df·f(1-f) | dg·(1-g²) | do·o(1-o)]   # the four gate nonlinearities
    dh_{t-1} = dz W_hh                             # z = … + h_prev W_hh^T   (in the compiled loop)
    dW_ih = Σ_t dz_t^T x_t,  dW_hh = Σ_t dz_t^T h_{t-1},  db = Σ dz,  dx_t = dz_t W_ih   (GEMMs after it)
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call, check_window, require_default_options
from ..numpy_ref import lstm as _spec
from . import bptt
from .functions import KERNEL_OPTIONS, dsigmoid_from_output, dtanh_from_output, sigmoid, tanh
from .gemm import add, copy, fill, matmul_rows

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params


# ------------------------------------------------------------------------------------ compiled
@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward(z, c_prev, h, c):
    """Gate nonlinearities and state update of one batch row; ``z (4H)`` becomes ``[i|f|g|o]``."""
    H = h.shape[0]
    for j in range(H):
        i = sigmoid(z[j])
        f = sigmoid(z[H + j])
        g = tanh(z[2 * H + j])
        o = sigmoid(z[3 * H + j])
        c[j] = f * c_prev[j] + i * g                   # c = f ⊙ c_prev + i ⊙ g
        h[j] = o * tanh(c[j])                          # h = o ⊙ tanh(c)
        z[j], z[H + j], z[2 * H + j], z[3 * H + j] = i, f, g, o


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_rows(gates, WT, hs, cs, r0, r1, use_blas):
    """The whole recurrence for batch rows ``r0 .. r1-1`` (no Python between steps)."""
    T = gates.shape[0]
    for t in range(T):
        matmul_rows(hs[t], WT, gates[t], r0, r1, use_blas)      # z_t = G[t] + h_{t-1} W_hh^T
        for r in range(r0, r1):
            _cell_forward(gates[t, r], cs[t, r], hs[t + 1, r], cs[t + 1, r])


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward(acts, c_prev, c, dh, dc, dz):
    """Backward of one row of one step: reads ``dh``, ``dc`` (at step t), writes ``dz``, ``dc <- dc_{t-1}``."""
    H = dh.shape[0]
    for j in range(H):
        i, f, g, o = acts[j], acts[H + j], acts[2 * H + j], acts[3 * H + j]
        tc = tanh(c[j])
        do = dh[j] * tc                                     # h = o ⊙ tanh(c)
        dcj = dc[j] + dh[j] * o * dtanh_from_output(tc)     # h = o ⊙ tanh(c); c feeds t+1
        dz[j] = dcj * g * dsigmoid_from_output(i)           # c = … + i ⊙ g,  i = σ(z_i)
        dz[H + j] = dcj * c_prev[j] * dsigmoid_from_output(f)   # c = f ⊙ c_prev + …,  f = σ(z_f)
        dz[2 * H + j] = dcj * i * dtanh_from_output(g)      # c = … + i ⊙ g,  g = tanh(z_g)
        dz[3 * H + j] = do * dsigmoid_from_output(o)        # o = σ(z_o)
        dc[j] = dcj * f                                     # c = f ⊙ c_prev + …


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_rows(gates, hs, cs, W_hh, dy, dstate_h, dstate_c, chains, inject_all,
                   dZ, dz, dh, dc, dh0, dc0, r0, r1, use_blas):
    """Backward chains for rows ``r0 .. r1-1``; ``dZ`` += every chain's gate gradients.

    ``chains[n] = (s, lo)``: start at step ``s`` with ``dy[s]`` (plus ``dstate`` when
    ``s = T-1``) and run down to step ``lo``; with ``inject_all`` also add ``dy[t]`` at
    every step (full BPTT is the single chain ``(T-1, 0)``).  A chain that ends at
    step 0 adds what is left into ``dh0, dc0`` (the gradient on the initial state).
    """
    T = gates.shape[0]
    for n in range(chains.shape[0]):
        s, lo = chains[n, 0], chains[n, 1]
        for r in range(r0, r1):
            if s == T - 1:
                copy(dh[r], dstate_h[r])
                copy(dc[r], dstate_c[r])
            else:
                fill(dh[r], 0)
                fill(dc[r], 0)
        for t in range(s, lo - 1, -1):
            for r in range(r0, r1):
                if inject_all or t == s:
                    add(dh[r], dy[t, r])                        # y_t = h_t
                _cell_backward(gates[t, r], cs[t, r], cs[t + 1, r], dh[r], dc[r], dz[r])
                add(dZ[t, r], dz[r])
                fill(dh[r], 0)
            matmul_rows(dz, W_hh, dh, r0, r1, use_blas)         # dh_{t-1} = dz W_hh
        if lo == 0:
            for r in range(r0, r1):
                add(dh0[r], dh[r])
                add(dc0[r], dc[r])


# ------------------------------------------------------------------------------------ Python
def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T, c_T), cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    require_default_options(_spec, opts, "numba")     # the fused kernel is the PyTorch LSTM
    W_ih, W_hh, b = bptt.contiguous(params, ("W_ih", "W_hh", "b"))
    gates = bptt.input_projection(x, W_ih, b)                   # G = X W_ih^T + b   (T, B, 4H)
    hs = np.empty((T + 1, B, H), dtype)
    cs = np.empty((T + 1, B, H), dtype)
    hs[0], cs[0] = (0, 0) if state0 is None else state0
    use_blas, n_chunks = bptt.plan(B, H, 4 * H, T)
    bptt.run(_forward_rows, (gates, np.ascontiguousarray(W_hh.T), hs, cs),
             B, use_blas, n_chunks)
    cache = {"x": x, "gates": gates, "hs": hs, "cs": cs, "options": opts,
             "shape": (T, B, H), "dtype": dtype}
    return hs[1:], (hs[T].copy(), cs[T].copy()), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.lstm.backward``."""
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 2)
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    if dstate is None:
        dstate = (np.zeros((B, H), dtype), np.zeros((B, H), dtype))
    if window is None:
        chains, inject_all = np.array([[T - 1, 0]], np.int64), True
    else:
        chains, inject_all = np.array(bptt.windows(T, check_window(window, T)), np.int64), False
    dZ = np.zeros((T, B, 4 * H), dtype)
    dz, dh, dc = np.empty((B, 4 * H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
    dh0, dc0 = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
    use_blas, n_chunks = bptt.plan(B, 4 * H, H, T)
    args = (cache["gates"], cache["hs"], cache["cs"], W_hh, np.ascontiguousarray(dy),
            np.ascontiguousarray(dstate[0]), np.ascontiguousarray(dstate[1]), chains, inject_all,
            dZ, dz, dh, dc, dh0, dc0)
    bptt.run(_backward_rows, args, B, use_blas, n_chunks)
    hs = cache["hs"]
    return {"W_ih": bptt.weight_gradient(dZ, cache["x"]),         # z = x W_ih^T + …
            "W_hh": bptt.weight_gradient(dZ, hs[:-1]),             # z = … + h_prev W_hh^T
            "b": dZ.sum(axis=(0, 1)),                               # z = … + b
            "x": bptt.input_gradient(dZ, W_ih),
            "state0": (dh0, dc0)}


def step_forward(params, x_t, state):
    """One step, ``x_t (B, D)``: the compiled loop on a sequence of length 1 -> ``(state, cache)``."""
    _, state, cache = forward(params, x_t[None], state)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh, dc)`` -> ``(dx_t, (dh_prev, dc_prev), dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1)}

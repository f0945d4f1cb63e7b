r"""Elman RNN on the Numba backend: ``numpy_ref.rnn`` with the time loop compiled and fused.

Same equations and names as ``numpy_ref.rnn`` (``φ`` is ``tanh`` or ``relu``)::

    a_t = x_t W_ih^T + b  +  h_{t-1} W_hh^T        (B, H)
          ╰─ G[t]: one GEMM ─╯ ╰─ compiled loop ─╯
    h_t = φ(a_t)

Arrays of the compiled loop (see ``bptt`` for the schedule)::

    pre (T, B, H)     G[t] before step t, the pre-activation a_t after it
    hs  (T+1, B, H)   hs[0] = h_0, hs[t+1] = h_t  (y = hs[1:]; φ'(a_t) is read off h_t)
    WT  (H, H)        W_hh^T

Backward of one step (``_cell_backward``)::

    da_t     = dh_t ⊙ φ'(a_t)          # h = φ(a);  φ' from the output: 1 - h², or [h > 0]
    dh_{t-1} = da_t W_hh               # a = … + h_prev W_hh^T        (compiled loop)
    dW_ih = Σ da^T x,  dW_hh = Σ da^T h_prev,  db = Σ da,  dx = da W_ih   (GEMMs after it)
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call
from ..numpy_ref import rnn as _spec
from . import bptt
from .bptt import revisits
from .functions import KERNEL_OPTIONS, drelu_from_output, dtanh_from_output, relu, tanh
from .gemm import matmul_tile, operand
from .sync import arrive_and_wait, threads_of, wait_for_inputs
from .units import fill_units, put_units

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params


# ------------------------------------------------------------------------------------ compiled
@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward(a, h, use_relu, j0, j1):
    """``h = φ(a)`` for one batch row, units ``j0 .. j1-1``."""
    a, h = a[j0:j1], h[j0:j1]          # the tile's units as views (see lstm._cell_forward)
    for j in range(j1 - j0):
        h[j] = relu(a[j]) if use_relu else tanh(a[j])


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_tile(pre, WT, hs, use_relu, r0, r1, j0, j1, product, flags, me):
    """The whole recurrence for rows ``r0 .. r1-1`` × units ``j0 .. j1-1`` (see ``bptt.run_tiles``)."""
    n = threads_of(flags)
    for t in range(pre.shape[0]):
        wait_for_inputs(flags, t + 1)                   # G[t] is complete (see bptt.run_tiles)
        matmul_tile(hs[t], WT, pre[t], r0, r1, j0, j1, product, t % 2)   # a_t = G[t] + h_{t-1} W_hh^T
        for r in range(r0, r1):
            _cell_forward(pre[t, r], hs[t + 1, r], use_relu, j0, j1)
        arrive_and_wait(flags, me, n, t + 1)            # all of h_t is written before step t+1 reads it


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward(h, dh, da, use_relu, j0, j1):
    """``da = dh ⊙ φ'(a)`` for one row, units ``j0 .. j1-1``, ``φ'`` written through the output ``h``."""
    h, dh, da = h[j0:j1], dh[j0:j1], da[j0:j1]
    for j in range(j1 - j0):
        da[j] = dh[j] * (drelu_from_output(h[j]) if use_relu else dtanh_from_output(h[j]))


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_tile(hs, W_hh, dy, dstate_h, use_relu, chains, inject_all, dA, da, dh, dh0,
                   r0, r1, j0, j1, product, flags, me):
    """Backward chains for rows ``r0 .. r1-1`` × units ``j0 .. j1-1`` (see ``lstm._backward_tile``
    for ``chains``, the first chain's writes straight into ``dA[t]`` and the double-buffered
    ``da (2, B, H)`` of the others)."""
    T = dy.shape[0]
    n = threads_of(flags)
    passed = 0
    for c in range(chains.shape[0]):
        s, lo = chains[c, 0], chains[c, 1]
        for r in range(r0, r1):
            if s == T - 1:
                put_units(dh[r], dstate_h[r], j0, j1, 1, False)
            else:
                fill_units(dh[r], 0, j0, j1)
        for t in range(s, lo - 1, -1):
            again = revisits(chains, c, t)                   # the first chain writes into dA[t] itself
            buf = da[passed % 2] if again else dA[t]
            for r in range(r0, r1):
                if inject_all or t == s:
                    put_units(dh[r], dy[t, r], j0, j1, 1, True)          # y_t = h_t
                _cell_backward(hs[t + 1, r], dh[r], buf[r], use_relu, j0, j1)
                if again:
                    put_units(dA[t, r], buf[r], j0, j1, 1, True)
                fill_units(dh[r], 0, j0, j1)
            passed += 1
            arrive_and_wait(flags, me, n, passed)            # all of da_t is written before it is read
            matmul_tile(buf, W_hh, dh, r0, r1, j0, j1, product, passed % 2)    # dh_{t-1} = da W_hh
        if lo == 0:
            for r in range(r0, r1):
                put_units(dh0[r], dh[r], j0, j1, 1, True)


# ------------------------------------------------------------------------------------ Python
def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T,), cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    W_ih, W_hh, b = bptt.contiguous(params, ("W_ih", "W_hh", "b"))
    with bptt.deferred() as before_loop:      # recorded: run_tiles computes it before the loop, or ahead of it
        pre = bptt.input_projection(x, W_ih, b)                 # G = X W_ih^T + b   (T, B, H)
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = 0 if state0 is None else state0[0]
    use_relu = opts["nonlinearity"] == "relu"
    tiling = bptt.plan_tiles(B, H, H, T, H, ahead=True)
    bptt.run_tiles(_forward_tile, (pre, operand(W_hh.T, tiling.product), hs, use_relu), B, H, tiling,
                   before=before_loop, stream=T)
    cache = {"x": x, "hs": hs, "options": opts, "shape": (T, B, H), "dtype": dtype}
    return hs[1:], (hs[T].copy(),), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.rnn.backward``."""
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 1)
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    dstate_h = np.zeros((B, H), dtype) if dstate is None else np.ascontiguousarray(dstate[0])
    chains, inject_all = bptt.chain_schedule(T, window)
    dA = np.empty((T, B, H), dtype)         # every element stored at a chain's first visit (bptt.revisits)
    da, dh, dh0 = np.empty((2, B, H), dtype), np.empty((B, H), dtype), np.zeros((B, H), dtype)
    use_relu = cache["options"]["nonlinearity"] == "relu"
    tiling = bptt.plan_tiles(B, H, H, T, H, behind=window is None)
    args = (cache["hs"], operand(W_hh, tiling.product), np.ascontiguousarray(dy), dstate_h, use_relu,
            chains, inject_all, dA, da, dh, dh0)
    hs = cache["hs"]
    with bptt.deferred() as after_loop:                              # the products after the loop, recorded:
        grads = {"W_ih": bptt.weight_gradient(dA, cache["x"]),      # a = x W_ih^T + …
                 "W_hh": bptt.weight_gradient(dA, hs[:-1]),          # a = … + h_prev W_hh^T
                 "b": bptt.bias_gradient(dA),                                 # a = … + b
                 "x": bptt.input_gradient(dA, W_ih),
                 "state0": (dh0,)}
    # ... run_tiles fills them: after the loop with one hand-off, or alongside it on an idle thread
    bptt.run_tiles(_backward_tile, args, B, H, tiling, then=after_loop, stream=T if window is None else 0)
    return grads


def step_forward(params, x_t, state, nonlinearity="tanh"):
    """One step, ``x_t (B, D)``: the compiled loop on a sequence of length 1 -> ``((h,), cache)``."""
    _, state, cache = forward(params, x_t[None], state, nonlinearity=nonlinearity)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh,)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1)}

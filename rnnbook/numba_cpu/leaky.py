r"""Leaky RNN with trainable time constants on the Numba backend: ``numpy_ref.leaky`` compiled and fused.

Same equations and names as ``numpy_ref.leaky`` (``φ`` is leaky ReLU, ``tanh`` or ReLU;
``κ = 1/τ`` per unit, ``τ = 1 + softplus(ρ)`` or ``τ`` itself, see ``numpy_ref.leaky.time_constants``)::

    a_t = x_t W_ih^T + b  +  h_{t-1} W_hh^T        (B, H)
          ╰─ G[t]: one GEMM ─╯ ╰─ compiled loop ─╯
    f_t = φ(a_t)
    h_t = (1 - κ) ⊙ h_{t-1} + κ ⊙ f_t

Arrays of the compiled loop (see ``bptt`` for the schedule)::

    fs  (T, B, H)     G[t] before step t, f_t = φ(a_t) after it (φ'(a_t) is read off f_t)
    hs  (T+1, B, H)   hs[0] = h_0, hs[t+1] = h_t  (y = hs[1:])
    kappa, keep (H,)  κ and 1 - κ, computed once in NumPy exactly as the reference does

Backward of one step (``_cell_backward``), ``dh`` the total error arriving at ``h_t``::

    dκ      += Σ_rows dh ⊙ (f_t - h_{t-1})     # h = (1-κ) h_prev + κ f   (per row, summed after)
    da_t     = dh ⊙ κ ⊙ φ'(a_t)                # h = … + κ φ(a);  φ' from f: 1-f², [f>0], [f>0] + 0.01[f≤0]
    dh_{t-1} = dh ⊙ (1 - κ) + da_t W_hh         # h = (1-κ) h_prev + …,  a = … + h_prev W_hh^T  (compiled loop)
    dW_ih = Σ da^T x,  dW_hh = Σ da^T h_prev,  db = Σ da,  dx = da W_ih   (GEMMs after it)
    dτ = -dκ / τ²                               # κ = 1/τ
    dρ = dτ ⊙ σ(ρ)                              # τ = 1 + softplus(ρ)   (tau_param="softplus")
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call
from ..numpy_ref import leaky as _spec
from . import bptt
from .functions import KERNEL_OPTIONS, dtanh_from_output, relu, tanh
from .gemm import matmul_rows, operand
from .units import add, copy, fill

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params
time_constants, clip_tau, LEAKY_SLOPE = _spec.time_constants, _spec.clip_tau, _spec.LEAKY_SLOPE

#: the nonlinearity, as the integer the kernels take
_PHI = {"leaky_relu": 0, "tanh": 1, "relu": 2}


# ------------------------------------------------------------------------------------ compiled
@njit(inline="always", **KERNEL_OPTIONS)
def _phi(a, phi, slope):
    """``φ(a)``: 0 leaky ReLU ``max(a, slope·a)``, 1 ``tanh``, 2 ReLU."""
    if phi == 1:
        return tanh(a)
    if phi == 2:
        return relu(a)
    return a if a > 0 else slope * a


@njit(inline="always", **KERNEL_OPTIONS)
def _dphi_from_output(f, phi, slope):
    """``φ'(a)`` written through ``f = φ(a)`` (0 or ``slope`` at ``a = 0``, as ``numpy_ref``)."""
    if phi == 1:
        return dtanh_from_output(f)
    one = type(f)(1)
    if f > 0:
        return one
    return slope if phi == 0 else one - one


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward(a, h_prev, h, kappa, keep, phi, slope):
    """One row: ``a`` becomes ``f = φ(a)``; ``h = (1-κ) h_prev + κ f``."""
    for j in range(h.shape[0]):
        f = _phi(a[j], phi, slope)
        a[j] = f
        h[j] = keep[j] * h_prev[j] + kappa[j] * f


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_rows(fs, WT, kappa, keep, hs, phi, slope, r0, r1, use_blas):
    """The whole recurrence for batch rows ``r0 .. r1-1``."""
    for t in range(fs.shape[0]):
        matmul_rows(hs[t], WT, fs[t], r0, r1, use_blas)         # a_t = G[t] + h_{t-1} W_hh^T
        for r in range(r0, r1):
            _cell_forward(fs[t, r], hs[t, r], hs[t + 1, r], kappa, keep, phi, slope)


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward(f, h_prev, kappa, keep, dh, da, dk, phi, slope):
    """One row: writes ``da``, adds into ``dk`` (the row's dκ), leaves ``dh ⊙ (1-κ)`` in ``dh``."""
    for j in range(dh.shape[0]):
        d = dh[j]
        dk[j] += d * (f[j] - h_prev[j])                         # h = (1-κ) h_prev + κ f
        da[j] = d * kappa[j] * _dphi_from_output(f[j], phi, slope)   # h = … + κ φ(a)
        dh[j] = d * keep[j]                                     # h = (1-κ) h_prev + …


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_rows(fs, hs, kappa, keep, W_hh, dy, dstate_h, phi, slope, chains, inject_all,
                   dA, dK, da, dh, dh0, r0, r1, use_blas):
    """Backward chains for rows ``r0 .. r1-1`` (``chains`` as in ``lstm._backward_tile``).

    ``dA[t]`` += every chain's ``da_t``; ``dK[r]`` += the row's contribution to ``dκ``.
    """
    T = dy.shape[0]
    for n in range(chains.shape[0]):
        s, lo = chains[n, 0], chains[n, 1]
        for r in range(r0, r1):
            if s == T - 1:
                copy(dh[r], dstate_h[r])
            else:
                fill(dh[r], 0)
        for t in range(s, lo - 1, -1):
            for r in range(r0, r1):
                if inject_all or t == s:
                    add(dh[r], dy[t, r])                          # y_t = h_t
                _cell_backward(fs[t, r], hs[t, r], kappa, keep, dh[r], da[r], dK[r], phi, slope)
                add(dA[t, r], da[r])
            matmul_rows(da, W_hh, dh, r0, r1, use_blas)           # dh_{t-1} = dh ⊙ (1-κ) + da W_hh
        if lo == 0:
            for r in range(r0, r1):
                add(dh0[r], dh[r])


# ------------------------------------------------------------------------------------ Python
def _leak(params, tau_param):
    """``(τ, dτ/dparam, κ, 1-κ)`` as the reference computes them (errors for ``τ < 1`` included)."""
    tau, dtau_dparam = time_constants(params, tau_param)
    kappa = 1 / tau
    return tau, dtau_dparam, np.ascontiguousarray(kappa), np.ascontiguousarray(1 - kappa)


def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T,), cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    _, _, kappa, keep = _leak(params, opts["tau_param"])
    W_ih, W_hh, b = bptt.contiguous(params, ("W_ih", "W_hh", "b"))
    fs = bptt.input_projection(x, W_ih, b)                       # G = X W_ih^T + b   (T, B, H)
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = 0 if state0 is None else state0[0]
    use_blas, n_chunks = bptt.plan(B, H, H, T)
    args = (fs, operand(W_hh.T, use_blas), kappa, keep, hs, _PHI[opts["nonlinearity"]],
            dtype.type(LEAKY_SLOPE))
    bptt.run(_forward_rows, args, B, use_blas, n_chunks)
    cache = {"x": x, "fs": fs, "hs": hs, "options": opts, "shape": (T, B, H), "dtype": dtype}
    return hs[1:], (hs[T].copy(),), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.leaky.backward``."""
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    opts = cache["options"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 1)
    tau, dtau_dparam, kappa, keep = _leak(params, opts["tau_param"])
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    dstate_h = np.zeros((B, H), dtype) if dstate is None else np.ascontiguousarray(dstate[0])
    chains, inject_all = bptt.chain_schedule(T, window)
    dA, dK = np.zeros((T, B, H), dtype), np.zeros((B, H), dtype)
    da, dh, dh0 = np.empty((B, H), dtype), np.empty((B, H), dtype), np.zeros((B, H), dtype)
    use_blas, n_chunks = bptt.plan(B, H, H, T)
    args = (cache["fs"], cache["hs"], kappa, keep, operand(W_hh, use_blas), np.ascontiguousarray(dy), dstate_h,
            _PHI[opts["nonlinearity"]], dtype.type(LEAKY_SLOPE), chains, inject_all, dA, dK, da, dh, dh0)
    bptt.run(_backward_rows, args, B, use_blas, n_chunks)
    hs = cache["hs"]
    dtau = -dK.sum(axis=0) / (tau * tau)                          # κ = 1/τ
    with bptt.together():                                            # the products after the loop: one hand-off
        grads = {"W_ih": bptt.weight_gradient(dA, cache["x"]),      # a = x W_ih^T + …
                 "W_hh": bptt.weight_gradient(dA, hs[:-1]),          # a = … + h_prev W_hh^T
                 "b": bptt.bias_gradient(dA),                                 # a = … + b
                 _spec._tau_name(opts["tau_param"]): dtau * dtau_dparam,  # τ = 1 + softplus(ρ), or τ itself
                 "x": bptt.input_gradient(dA, W_ih),
                 "state0": (dh0,)}
    return grads


def step_forward(params, x_t, state, nonlinearity="leaky_relu", tau_param="softplus"):
    """One step, ``x_t (B, D)``: the compiled loop on a sequence of length 1 -> ``((h,), cache)``."""
    _, state, cache = forward(params, x_t[None], state, nonlinearity=nonlinearity, tau_param=tau_param)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh,)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1, **cache["options"])}

r"""Gated recurrent unit (GRU), in both placements of the reset gate.

Gate order **r, z, n** (PyTorch ``nn.GRU``).  With the input part
``gi = x_t W_ih^T + b_ih  (B, 3H) = [gi_r | gi_z | gi_n]`` shared by both forms:

*Reset after the product* (``reset_after=True``, the default; PyTorch and cuDNN)::

    gh  = h_{t-1} W_hh^T + b_hh                 (B, 3H) = [gh_r | gh_z | gh_n]
    r_t = σ(gi_r + gh_r)      z_t = σ(gi_z + gh_z)
    n_t = tanh(gi_n + r_t ⊙ gh_n)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

*Reset before the product* (``reset_after=False``; Cho et al. 2014)::

    r_t = σ(gi_r + h_{t-1} W_hr^T + b_hr)      z_t = σ(gi_z + h_{t-1} W_hz^T + b_hz)
    n_t = tanh(gi_n + (r_t ⊙ h_{t-1}) W_hn^T + b_hn)
    h_t = (1 - z_t) ⊙ n_t + z_t ⊙ h_{t-1}

where ``W_hr, W_hz, W_hn`` are the three row blocks of ``W_hh``.

Parameters: ``W_ih (3H, D)``, ``W_hh (3H, H)``, ``b_ih (3H,)``, ``b_hh (3H,)``.
State: ``(h,)``.  Output ``y_t = h_t``.

Backward of one step (``a_n``, ``a_z``, ``a_r`` are the arguments of tanh and σ)::

    dn   = dh ⊙ (1 - z),  dz = dh ⊙ (h_{t-1} - n),  dh_{t-1} = dh ⊙ z + …   # h = (1-z) n + z h_prev
    da_n = dn ⊙ (1 - n²),  da_z = dz ⊙ z(1-z)                               # n = tanh(a_n), z = σ(a_z)
    reset after:  dgh_n = da_n ⊙ r,  dr = da_n ⊙ gh_n                       # a_n = gi_n + r ⊙ gh_n
    reset before: d(r⊙h) = da_n W_hn,  dr = d(r⊙h) ⊙ h_{t-1}                # a_n = gi_n + (r ⊙ h_prev) W_hn^T + b_hn
    da_r = dr ⊙ r(1-r)                                                      # r = σ(a_r)
"""
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import dsigmoid_from_output, dtanh_from_output, sigmoid
from .rtrl import diag_blocks, outer

NAME = "gru"
OPTIONS = {"reset_after": (True, False)}
STATE_NAMES = ("h",)
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers


def param_shapes(D, H, **options):
    return {"W_ih": (3 * H, D), "W_hh": (3 * H, H), "b_ih": (3 * H,), "b_hh": (3 * H,)}


def hidden_size(params):
    return hidden_size_from(params, "W_hh", -1, NAME)


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """``U(-1/√H, 1/√H)`` for every entry, biases included (as PyTorch does)."""
    check_sizes(input_size, hidden_size)
    check_options(NAME, options, OPTIONS)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    return {n: rng.uniform(-k, k, s).astype(dtype) for n, s in param_shapes(input_size, hidden_size).items()}


def step_forward(params, x_t, state, reset_after=True):
    """One step.  ``x_t (B, D)``, ``state = (h_prev (B, H),)`` -> ``((h,), cache)``."""
    (h_prev,) = state
    H = h_prev.shape[1]
    W_hh, b_hh = params["W_hh"], params["b_hh"]
    gi = x_t @ params["W_ih"].T + params["b_ih"]
    if reset_after:
        gh = h_prev @ W_hh.T + b_hh
        r = sigmoid(gi[:, :H] + gh[:, :H])
        z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        gh_n = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * gh_n)
    else:
        gh_rz = h_prev @ W_hh[:2 * H].T + b_hh[:2 * H]
        r = sigmoid(gi[:, :H] + gh_rz[:, :H])
        z = sigmoid(gi[:, H:2 * H] + gh_rz[:, H:])
        gh_n = None                                    # not needed by the backward pass
        n = np.tanh(gi[:, 2 * H:] + (r * h_prev) @ W_hh[2 * H:].T + b_hh[2 * H:])
    h = (1 - z) * n + z * h_prev
    return (h,), (x_t, h_prev, r, z, n, gh_n, reset_after)


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh (B, H),)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    x_t, h_prev, r, z, n, gh_n, reset_after = cache
    (dh,) = dstate
    H = h_prev.shape[1]
    W_hh = params["W_hh"]
    dn = dh * (1 - z)                                  # h = (1-z) n + z h_prev
    dz = dh * (h_prev - n)
    dh_prev = dh * z
    da_n = dn * dtanh_from_output(n)                   # n = tanh(a_n)
    da_z = dz * dsigmoid_from_output(z)                # z = σ(a_z)
    if reset_after:
        dgh_n = da_n * r                               # a_n = gi_n + r ⊙ gh_n
        dr = da_n * gh_n
        da_r = dr * dsigmoid_from_output(r)            # r = σ(a_r)
        dgh = np.concatenate([da_r, da_z, dgh_n], axis=1)
        dW_hh = dgh.T @ h_prev                         # gh = h_prev W_hh^T + b_hh
        dh_prev = dh_prev + dgh @ W_hh
    else:
        d_rh = da_n @ W_hh[2 * H:]                     # a_n = gi_n + (r ⊙ h_prev) W_hn^T + b_hn
        dr = d_rh * h_prev                             # r ⊙ h_prev
        da_r = dr * dsigmoid_from_output(r)            # r = σ(a_r)
        dgh = np.concatenate([da_r, da_z, da_n], axis=1)
        dW_hh = np.concatenate([dgh[:, :2 * H].T @ h_prev,         # a_r, a_z = … + h_prev W_h{r,z}^T
                                da_n.T @ (r * h_prev)], axis=0)    # a_n = … + (r ⊙ h_prev) W_hn^T
        dh_prev = dh_prev + dgh[:, :2 * H] @ W_hh[:2 * H] + d_rh * r
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)   # gi = x W_ih^T + b_ih feeds every gate
    dparams = {"W_ih": dgi.T @ x_t, "W_hh": dW_hh,
               "b_ih": dgi.sum(axis=0), "b_hh": dgh.sum(axis=0)}
    dx_t = dgi @ params["W_ih"]
    return dx_t, (dh_prev,), dparams


def step_jacobians(params, x_t, state, reset_after=True):
    """Per-sample Jacobians of one step for RTRL (S = H).

    With ``Dn = (1-z)(1-n²) = ∂h/∂a_n`` and ``Dz = (h_prev - n) z(1-z) = ∂h/∂a_z``:

    reset after:  ``∂h/∂a_r = diag(Dn ⊙ gh_n ⊙ r(1-r))``, ``∂h/∂gh_n = diag(Dn ⊙ r)``,
                  ``∂h/∂h_prev = diag(z) + ∂h/∂gh · W_hh``
    reset before: ``∂h/∂a_r = diag(Dn) W_hn diag(h_prev ⊙ r(1-r))`` (dense: r mixes units),
                  ``∂h/∂h_prev = diag(z) + ∂h/∂a_r W_hr + diag(Dz) W_hz + diag(Dn) W_hn diag(r)``
    """
    (h,), (x_t, h_prev, r, z, n, gh_n, _) = step_forward(params, x_t, state, reset_after)
    B, H = h.shape
    W_hh = params["W_hh"]
    Dn = (1 - z) * dtanh_from_output(n)
    Dz = (h_prev - n) * dsigmoid_from_output(z)
    eye = np.eye(H, dtype=h.dtype)
    if reset_after:
        Dr = Dn * gh_n * dsigmoid_from_output(r)
        dgi = diag_blocks(Dr, Dz, Dn)                             # ∂h/∂gi        (B, H, 3H)
        dgh = diag_blocks(Dr, Dz, Dn * r)                         # ∂h/∂gh        (B, H, 3H)
        J_state = z[:, :, None] * eye + dgh @ W_hh
        J_W_hh = outer(dgh, h_prev)
    else:
        dh_dar = Dn[:, :, None] * W_hh[None, 2 * H:] * (h_prev * dsigmoid_from_output(r))[:, None, :]
        dgi = np.concatenate([dh_dar, diag_blocks(Dz, Dn)], axis=2)   # ∂h/∂[a_r|a_z|a_n]
        dgh = dgi
        J_state = (z[:, :, None] * eye + dgi[:, :, :2 * H] @ W_hh[:2 * H]
                   + Dn[:, :, None] * W_hh[None, 2 * H:] * r[:, None, :])
        J_W_hh = np.concatenate([outer(dgi[:, :, :2 * H], h_prev),
                                 outer(dgi[:, :, 2 * H:], r * h_prev)], axis=2)
    J_x = dgi @ params["W_ih"]
    J_params = {"W_ih": outer(dgi, x_t), "W_hh": J_W_hh, "b_ih": dgi, "b_hh": dgh}
    return (h,), J_state, J_x, J_params


def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T,), cache)``."""
    return bptt.forward(_CELL, params, x, state0, **options)


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k); see ``bptt.backward``."""
    return bptt.backward(_CELL, params, cache, dy, dstate, window)


def rtrl(params, x, dy, state0=None, dstate=None, **options):
    """The gradients of ``backward``, forward in time; see ``rtrl.rtrl``."""
    return _rtrl.rtrl(_CELL, params, x, dy, state0, dstate, **options)

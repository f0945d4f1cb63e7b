r"""Elman RNN: the simplest recurrent cell.

Equations (one step, batch of ``B`` rows; ``φ`` is ``tanh`` or ``relu``)::

    a_t = x_t W_ih^T + h_{t-1} W_hh^T + b        (B, H)   pre-activation
    h_t = φ(a_t)                                 (B, H)

Parameters (PyTorch ``nn.RNN`` layout, with ``b = b_ih + b_hh`` folded into one)::

    W_ih (H, D)    W_hh (H, H)    b (H,)

State: ``(h,)``.  Output ``y_t = h_t``.

Backward of one step, given ``dh_t`` (the total error arriving at ``h_t``)::

    da_t     = dh_t ⊙ φ'(a_t)            # h_t = φ(a_t)
    dW_ih   += da_t^T x_t                # a_t = x_t W_ih^T + ...
    dW_hh   += da_t^T h_{t-1}            # a_t = ... + h_{t-1} W_hh^T
    db      += Σ_b da_t                  # a_t = ... + b
    dx_t     = da_t W_ih
    dh_{t-1} = da_t W_hh

Options: ``nonlinearity`` in ``("tanh", "relu")``.  ``init_params`` also takes
``init="uniform"`` (PyTorch's ``U(-1/√H, 1/√H)`` for every entry) or
``init="identity"`` (IRNN, Le et al. 2015: ``W_hh = I``, ``b = 0``, for ReLU units).
"""
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import drelu_from_output, dtanh_from_output, relu

NAME = "rnn"
OPTIONS = {"nonlinearity": ("tanh", "relu")}
STATE_NAMES = ("h",)
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers


def param_shapes(D, H, **options):
    return {"W_ih": (H, D), "W_hh": (H, H), "b": (H,)}


def hidden_size(params):
    return hidden_size_from(params, "W_hh", -1, NAME)


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, init="uniform", **options):
    """``U(-1/√H, 1/√H)`` for every entry (biases included), or the IRNN identity start."""
    check_sizes(input_size, hidden_size)
    check_options(NAME, options, OPTIONS)
    if init not in ("uniform", "identity"):
        raise ValueError(f"init must be 'uniform' or 'identity', got {init!r}")
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    p = {n: rng.uniform(-k, k, s).astype(dtype) for n, s in param_shapes(input_size, hidden_size).items()}
    if init == "identity":
        p["W_hh"] = np.eye(hidden_size, dtype=dtype)
        p["b"] = np.zeros(hidden_size, dtype)
    return p


def _phi(nonlinearity):
    """The nonlinearity and its derivative written through its output."""
    return (np.tanh, dtanh_from_output) if nonlinearity == "tanh" else (relu, drelu_from_output)


def step_forward(params, x_t, state, nonlinearity="tanh"):
    """One step.  ``x_t (B, D)``, ``state = (h_prev (B, H),)`` -> ``((h,), cache)``."""
    (h_prev,) = state
    phi, dphi = _phi(nonlinearity)
    a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    h = phi(a)
    return (h,), (x_t, h_prev, dphi(h))


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh (B, H),)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    x_t, h_prev, dphi_a = cache
    (dh,) = dstate
    da = dh * dphi_a                          # h = φ(a)
    dparams = {
        "W_ih": da.T @ x_t,                   # a = x W_ih^T + ...
        "W_hh": da.T @ h_prev,                # a = ... + h_prev W_hh^T
        "b": da.sum(axis=0),                  # a = ... + b
    }
    dx_t = da @ params["W_ih"]
    dh_prev = da @ params["W_hh"]
    return dx_t, (dh_prev,), dparams


def step_jacobians(params, x_t, state, nonlinearity="tanh"):
    """Per-sample Jacobians of one step, for RTRL.

    With ``d = φ'(a)`` (B, H)::

        ∂h_i/∂h_prev_j = d_i W_hh[i, j]          ∂h_i/∂x_j = d_i W_ih[i, j]
        ∂h_i/∂W_ih[k, j] = d_i δ_ik x_j          ∂h_i/∂W_hh[k, j] = d_i δ_ik h_prev_j
        ∂h_i/∂b_k = d_i δ_ik
    """
    (h,), (x_t, h_prev, d) = step_forward(params, x_t, state, nonlinearity)
    B, H = h.shape
    eye = np.eye(H, dtype=h.dtype)
    dh_da = d[:, :, None] * eye                              # (B, H, H): diagonal
    J_state = dh_da @ params["W_hh"]
    J_x = dh_da @ params["W_ih"]
    J_params = {
        "W_ih": dh_da[:, :, :, None] * x_t[:, None, None, :],
        "W_hh": dh_da[:, :, :, None] * h_prev[:, None, None, :],
        "b": dh_da,
    }
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

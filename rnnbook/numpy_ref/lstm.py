r"""Long short-term memory (LSTM), with a forget gate, as in PyTorch ``nn.LSTM``.

Equations (one step; ``σ`` is the logistic sigmoid; gate order **i, f, g, o**)::

    z_t = x_t W_ih^T + h_{t-1} W_hh^T + b        (B, 4H)  = [z_i | z_f | z_g | z_o]
    i_t = σ(z_i)   f_t = σ(z_f)   g_t = tanh(z_g)   o_t = σ(z_o)     (B, H) each
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                (B, H)   the constant error carousel
    h_t = o_t ⊙ tanh(c_t)                          (B, H)

Parameters (PyTorch layout, ``b = b_ih + b_hh`` folded into one)::

    W_ih (4H, D)    W_hh (4H, H)    b (4H,)

State: ``(h, c)``.  Output ``y_t = h_t``.

Backward of one step, given ``dh_t`` and ``dc_t`` arriving from above and from ``t+1``::

    do   = dh_t ⊙ tanh(c_t)                        # h = o ⊙ tanh(c)
    dc   = dc_t + dh_t ⊙ o_t ⊙ (1 - tanh²(c_t))    # h = o ⊙ tanh(c), c also feeds t+1
    di   = dc ⊙ g_t,  dg = dc ⊙ i_t                 # c = … + i ⊙ g
    df   = dc ⊙ c_{t-1}                             # c = f ⊙ c_prev + …
    dc_{t-1} = dc ⊙ f_t
    dz   = [di ⊙ i(1-i) | df ⊙ f(1-f) | dg ⊙ (1-g²) | do ⊙ o(1-o)]   # the gate nonlinearities
    dW_ih += dz^T x_t,  dW_hh += dz^T h_{t-1},  db += Σ_b dz,  dx_t = dz W_ih,  dh_{t-1} = dz W_hh
"""
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import dsigmoid_from_output, dtanh_from_output, sigmoid
from .rtrl import diag_blocks, outer

NAME = "lstm"
OPTIONS: dict = {}
STATE_NAMES = ("h", "c")
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers


def param_shapes(D, H, **options):
    return {"W_ih": (4 * H, D), "W_hh": (4 * H, H), "b": (4 * H,)}


def hidden_size(params):
    return hidden_size_from(params, "W_hh", -1, NAME)


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """``U(-1/√H, 1/√H)`` for every entry, biases included (as PyTorch does)."""
    check_sizes(input_size, hidden_size)
    check_options(NAME, options, OPTIONS)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    return {n: rng.uniform(-k, k, s).astype(dtype) for n, s in param_shapes(input_size, hidden_size).items()}


def step_forward(params, x_t, state):
    """One step.  ``x_t (B, D)``, ``state = (h_prev, c_prev)`` each ``(B, H)``."""
    h_prev, c_prev = state
    H = h_prev.shape[1]
    z = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    i = sigmoid(z[:, 0 * H:1 * H])
    f = sigmoid(z[:, 1 * H:2 * H])
    g = np.tanh(z[:, 2 * H:3 * H])
    o = sigmoid(z[:, 3 * H:4 * H])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    return (h, c), (x_t, h_prev, c_prev, i, f, g, o, tc)


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh, dc)`` -> ``(dx_t, (dh_prev, dc_prev), dparams)``."""
    x_t, h_prev, c_prev, i, f, g, o, tc = cache
    dh, dc_next = dstate
    do = dh * tc                                         # h = o ⊙ tanh(c)
    dc = dc_next + dh * o * dtanh_from_output(tc)        # h = o ⊙ tanh(c)
    di = dc * g                                          # c = f ⊙ c_prev + i ⊙ g
    dg = dc * i
    df = dc * c_prev
    dc_prev = dc * f
    dz = np.concatenate([di * dsigmoid_from_output(i),   # i = σ(z_i)
                         df * dsigmoid_from_output(f),   # f = σ(z_f)
                         dg * dtanh_from_output(g),      # g = tanh(z_g)
                         do * dsigmoid_from_output(o)],  # o = σ(z_o)
                        axis=1)
    dparams = {"W_ih": dz.T @ x_t,                       # z = x W_ih^T + …
               "W_hh": dz.T @ h_prev,                    # z = … + h_prev W_hh^T
               "b": dz.sum(axis=0)}                      # z = … + b
    dx_t = dz @ params["W_ih"]
    dh_prev = dz @ params["W_hh"]
    return dx_t, (dh_prev, dc_prev), dparams


def step_jacobians(params, x_t, state):
    """Per-sample Jacobians of one step for RTRL, state flattened as ``s = [h | c]`` (S = 2H).

    Every state entry depends on the pre-activations of its own unit only::

        ∂c/∂z = diag blocks [g ⊙ i(1-i) | c_prev ⊙ f(1-f) | i ⊙ (1-g²) | 0]
        ∂h/∂z = o ⊙ (1-tanh²c) ⊙ ∂c/∂z + diag block [0 | 0 | 0 | tanh(c) ⊙ o(1-o)]
        ∂c/∂c_prev = diag(f),   ∂h/∂c_prev = diag(o ⊙ (1-tanh²c) ⊙ f)
        ∂s/∂h_prev = ∂s/∂z W_hh,   ∂s/∂x = ∂s/∂z W_ih,   ∂s/∂W = ∂s/∂z ⊗ input
    """
    (h, c), (x_t, h_prev, c_prev, i, f, g, o, tc) = step_forward(params, x_t, state)
    B, H = h.shape
    zero = np.zeros_like(i)
    Dc = [g * dsigmoid_from_output(i), c_prev * dsigmoid_from_output(f), i * dtanh_from_output(g), zero]
    dh_dc = o * dtanh_from_output(tc)
    Dh = [dh_dc * d for d in Dc[:3]] + [tc * dsigmoid_from_output(o)]
    ds_dz = np.concatenate([diag_blocks(*Dh), diag_blocks(*Dc)], axis=1)      # (B, 2H, 4H)
    J_state = np.zeros((B, 2 * H, 2 * H), h.dtype)
    J_state[:, :, :H] = ds_dz @ params["W_hh"]
    eye = np.eye(H, dtype=h.dtype)
    J_state[:, :H, H:] = (dh_dc * f)[:, :, None] * eye
    J_state[:, H:, H:] = f[:, :, None] * eye
    J_x = ds_dz @ params["W_ih"]
    J_params = {"W_ih": outer(ds_dz, x_t), "W_hh": outer(ds_dz, h_prev), "b": ds_dz}
    return (h, c), J_state, J_x, J_params


def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T, c_T), cache)``."""
    return bptt.forward(_CELL, params, x, state0, **options)


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k); see ``bptt.backward``."""
    return bptt.backward(_CELL, params, cache, dy, dstate, window)


def rtrl(params, x, dy, state0=None, dstate=None, **options):
    """The gradients of ``backward``, forward in time; see ``rtrl.rtrl``."""
    return _rtrl.rtrl(_CELL, params, x, dy, state0, dstate, **options)

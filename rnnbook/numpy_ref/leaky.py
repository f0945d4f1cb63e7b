r"""Leaky RNN with a trainable time constant per neuron.

The setting of Khajehabdollahi, Zeraati, Giannakakis, Schäfer, Martius & Levina
(2024), *Emergent mechanisms for long timescales depend on training curriculum
and affect performance in memory tasks*: each unit ``i`` is a leaky integrator
with its own single-neuron timescale ``τ_i ≥ 1``, trained together with the
weights.  ``τ_i = 1`` is an ordinary Elman unit; a large ``τ_i`` makes the unit
keep most of its previous value, ``h_i`` then forgets with time constant ``≈ τ_i`` steps.

Equations (one step, batch of ``B`` rows; ``φ`` is the nonlinearity)::

    a_t = x_t W_ih^T + h_{t-1} W_hh^T + b                    (B, H)   pre-activation
    h_t = (1 - 1/τ) ⊙ h_{t-1} + (1/τ) ⊙ φ(a_t)               (B, H)   leaky update

**Keeping τ ≥ 1.**  Two parameterisations (option ``tau_param``):

- ``"softplus"`` (default): the trained parameter is ``rho (H,)`` and
  ``τ = 1 + softplus(ρ) = 1 + log(1 + e^ρ)``, which is > 1 for every real ``ρ``,
  so any optimiser step keeps the constraint and the gradient is smooth
  (``dτ/dρ = sigmoid(ρ)``).
- ``"direct"``: the trained parameter is ``tau (H,)`` itself, as in the paper
  (initialised at ``1 + U(0, 1)``).  The constraint is then kept by projection:
  call :func:`clip_tau` after each optimiser step.  A forward pass with some
  ``τ < 1`` raises an error rather than computing an unstable update.

Parameters: ``W_ih (H, D)``, ``W_hh (H, H)``, ``b (H,)`` and ``rho (H,)`` or ``tau (H,)``.
State: ``(h,)``.  Output ``y_t = h_t``.

Backward of one step, given ``dh_t`` (the total error arriving at ``h_t``),
writing ``κ = 1/τ``::

    dφ       = dh_t ⊙ κ                                 # h = (1-κ) h_prev + κ φ(a)
    dκ       = Σ_b dh_t ⊙ (φ(a_t) - h_{t-1})
    da       = dφ ⊙ φ'(a_t)
    dW_ih   += da^T x_t,   dW_hh += da^T h_{t-1},   db += Σ_b da       # a = x W_ih^T + h_prev W_hh^T + b
    dx_t     = da W_ih
    dh_{t-1} = dh_t ⊙ (1-κ) + da W_hh
    dτ      += dκ ⊙ (-1/τ²)                             # κ = 1/τ
    dρ      += dτ ⊙ sigmoid(ρ)                          # τ = 1 + softplus(ρ)   ("softplus" only)

Options: ``nonlinearity`` in ``("leaky_relu", "tanh", "relu")``; the default is
the paper's leaky ReLU, ``φ(a) = max(a, 0.01 a)`` (PyTorch's slope).  With the
paper's 0/1 bit inputs it learns N-parity and N-DMS where ``tanh`` units stall at
chance (see ``rnnbook.data.timing_tasks``).  ``tau_param`` in ``("softplus", "direct")``.

Sources: the update (nonlinearity inside the leak, trainable ``τ`` per neuron
starting at ``1 + U(0, 1)``, leaky ReLU) follows the paper and its authors'
released training code; the ``softplus`` parameterisation is this package's
choice, and the backward pass and RTRL Jacobians are derived here and checked
against finite differences and against each other (``tests/test_scrn_leaky.py``).
"""
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import drelu_from_output, dtanh_from_output, relu, sigmoid
from .rtrl import outer

NAME = "leaky"
OPTIONS = {"nonlinearity": ("leaky_relu", "tanh", "relu"), "tau_param": ("softplus", "direct")}
STATE_NAMES = ("h",)
LEAKY_SLOPE = 0.01
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers


def _tau_name(tau_param):
    return "rho" if tau_param == "softplus" else "tau"


def param_shapes(D, H, tau_param="softplus", **options):
    return {"W_ih": (H, D), "W_hh": (H, H), "b": (H,), _tau_name(tau_param): (H,)}


def hidden_size(params):
    return hidden_size_from(params, "W_hh", -1, NAME)


# ------------------------------------------------------------------ τ and its parameterisation
def softplus(z):
    """``log(1 + e^z)`` without overflow."""
    return np.logaddexp(0, z).astype(z.dtype, copy=False)


def softplus_inverse(y):
    """``ρ`` with ``softplus(ρ) = y`` for ``y > 0``: ``log(e^y - 1)``, written stably."""
    y = np.asarray(y)
    return y + np.log(-np.expm1(-y))


def time_constants(params, tau_param="softplus"):
    """``(τ (H,), dτ/d(parameter) (H,))`` for either parameterisation."""
    if tau_param == "softplus":
        rho = params["rho"]
        return 1 + softplus(rho), sigmoid(rho)
    tau = params["tau"]
    if np.any(tau < 1) or not np.all(np.isfinite(tau)):
        raise ValueError(f"params['tau'] must be >= 1 in every entry (the leaky update needs τ ≥ 1), "
                         f"got min {float(np.min(tau)):g}; call rnnbook.numpy_ref.leaky.clip_tau(params) "
                         "after each optimiser step, or use tau_param='softplus'")
    return tau, np.ones_like(tau)


def clip_tau(params):
    """Project ``params["tau"]`` back onto ``τ ≥ 1`` in place (for ``tau_param="direct"``)."""
    if "tau" not in params:
        raise ValueError("clip_tau needs params with a 'tau' entry (tau_param='direct')")
    np.maximum(params["tau"], 1, out=params["tau"])
    return params


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """``U(-1/√H, 1/√H)`` weights and bias; ``τ = 1 + U(0, 1)`` per neuron, as in the paper."""
    check_sizes(input_size, hidden_size)
    opts = check_options(NAME, options, OPTIONS)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    shapes = param_shapes(input_size, hidden_size, **opts)
    p = {n: rng.uniform(-k, k, shapes[n]).astype(dtype) for n in ("W_ih", "W_hh", "b")}
    excess = rng.uniform(0.05, 1.0, hidden_size)          # τ - 1, kept away from 0 for softplus⁻¹
    if opts["tau_param"] == "softplus":
        p["rho"] = softplus_inverse(excess).astype(dtype)
    else:
        p["tau"] = (1 + excess).astype(dtype)
    return p


# ------------------------------------------------------------------ one step
def _phi(nonlinearity):
    """The nonlinearity and its derivative written through its output."""
    if nonlinearity == "tanh":
        return np.tanh, dtanh_from_output
    if nonlinearity == "relu":
        return relu, drelu_from_output
    return (lambda a: np.where(a > 0, a, LEAKY_SLOPE * a),
            lambda f: np.where(f > 0, 1, LEAKY_SLOPE).astype(f.dtype))


def step_forward(params, x_t, state, nonlinearity="leaky_relu", tau_param="softplus"):
    """One step.  ``x_t (B, D)``, ``state = (h_prev (B, H),)`` -> ``((h,), cache)``."""
    (h_prev,) = state
    phi, dphi = _phi(nonlinearity)
    tau, dtau_dparam = time_constants(params, tau_param)
    kappa = 1 / tau                                                   # (H,)
    a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    f = phi(a)
    h = (1 - kappa) * h_prev + kappa * f
    return (h,), (x_t, h_prev, f, dphi(f), tau, dtau_dparam, tau_param)


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh (B, H),)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    x_t, h_prev, f, dphi_a, tau, dtau_dparam, tau_param = cache
    (dh,) = dstate
    kappa = 1 / tau
    dkappa = (dh * (f - h_prev)).sum(axis=0)          # h = (1-κ) h_prev + κ φ(a)
    da = dh * kappa * dphi_a                          # φ(a), then a
    dtau = -dkappa / (tau * tau)                      # κ = 1/τ
    dparams = {
        "W_ih": da.T @ x_t,                           # a = x W_ih^T + …
        "W_hh": da.T @ h_prev,                        # a = … + h_prev W_hh^T
        "b": da.sum(axis=0),                          # a = … + b
        _tau_name(tau_param): dtau * dtau_dparam,     # τ = 1 + softplus(ρ), or τ itself
    }
    dx_t = da @ params["W_ih"]
    dh_prev = dh * (1 - kappa) + da @ params["W_hh"]
    return dx_t, (dh_prev,), dparams


def step_jacobians(params, x_t, state, nonlinearity="leaky_relu", tau_param="softplus"):
    """Per-sample Jacobians of one step, for RTRL (S = H).

    With ``g = φ'(a) / τ`` (B, H)::

        ∂h_i/∂h_prev_j = δ_ij (1 - 1/τ_i) + g_i W_hh[i, j]      ∂h_i/∂x_j = g_i W_ih[i, j]
        ∂h_i/∂W[k, j]  = g_i δ_ik input_j                         ∂h_i/∂b_k = g_i δ_ik
        ∂h_i/∂τ_k      = δ_ik (h_prev_i - φ(a_i)) / τ_i²          (× sigmoid(ρ_k) for ρ)
    """
    (h,), (x_t, h_prev, f, dphi_a, tau, dtau_dparam, _) = step_forward(params, x_t, state, nonlinearity,
                                                                        tau_param)
    eye = np.eye(h.shape[1], dtype=h.dtype)
    dh_da = (dphi_a / tau)[:, :, None] * eye                          # (B, H, H): diagonal
    J_state = (1 - 1 / tau)[:, None] * eye + dh_da @ params["W_hh"]
    J_x = dh_da @ params["W_ih"]
    dh_dtau = (h_prev - f) / (tau * tau) * dtau_dparam                # (B, H)
    J_params = {
        "W_ih": outer(dh_da, x_t),
        "W_hh": outer(dh_da, h_prev),
        "b": dh_da,
        _tau_name(tau_param): dh_dtau[:, :, None] * eye,
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

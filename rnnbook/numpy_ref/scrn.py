r"""Structurally constrained recurrent network (SCRN): slow context units next to an Elman layer.

Mikolov, Joulin, Chopra, Mathieu & Ranzato (2015), *Learning Longer Memory in
Recurrent Neural Networks*.  Part of the recurrent matrix is fixed to a
near-identity diagonal ``α I``: those *context units* change slowly, so the
gradient along them decays like ``α^k`` instead of vanishing through a squashing
nonlinearity, and the network can keep a bag-of-recent-inputs memory for a long
time.  The other units form an ordinary (fast) sigmoid recurrent layer that also
reads the context.

Equations (one step, batch of ``N`` rows; the paper's symbols, with ``B`` the
input-to-context matrix, so the batch size is written ``N`` here)::

    s_t = (1 - α) x_t B^T + α s_{t-1}                      (N, H)   slow context
    a_t = s_t P^T + x_t A^T + h_{t-1} R^T + b              (N, H)   pre-activation
    h_t = σ(a_t)                                           (N, H)   fast hidden units

``σ`` is the logistic sigmoid, as in the paper (``nonlinearity="tanh"`` swaps it).
``α`` is a fixed number, not a parameter (the paper fixes it; 0.95 by default).
The paper's output layer reads both layers, ``y_t = f(h_t U^T + s_t V^T)``.

Parameters (the paper's names; ``b`` is an addition, the paper has no hidden bias)::

    A (H, D)  input -> hidden     B (H, D)  input -> context
    P (H, H)  context -> hidden   R (H, H)  hidden -> hidden    b (H,)

State: ``(h, s)``.  Output ``y_t = h_t`` (the project's contract: the output is the
first state array).  A read-out that also wants the context, as the paper's
does, gets the whole sequence ``s_0 … s_{T-1}`` from :func:`context_sequence` and
sends the gradient that comes back on it through :func:`context_backward` (the
context is a linear filter of the input, so that part of the backward pass is a
short linear recursion of its own).

**Context size.**  In the paper the context layer has its own size (usually much
smaller than the hidden layer).  The generic drivers of this package carry a
state whose arrays all have the hidden size ``H``, so here the context layer
has ``H`` units as well; a smaller effective context is had by zeroing rows of
``B`` and columns of ``P`` (``s`` then stays zero in those units).

Backward of one step, given ``dh_t`` and ``ds_t`` (the errors arriving at
``h_t`` and ``s_t`` from above and from step ``t+1``)::

    da       = dh_t ⊙ σ'(a_t)                    # h = σ(a)
    dP      += da^T s_t                           # a = s P^T + …
    dA      += da^T x_t                           # a = … + x A^T + …
    dR      += da^T h_{t-1}                       # a = … + h_prev R^T + …
    db      += Σ_n da                             # a = … + b
    dh_{t-1} = da R
    ds       = ds_t + da P                        # s_t feeds a_t and s_{t+1}
    dB      += (1 - α) ds^T x_t                   # s = (1-α) x B^T + …
    ds_{t-1} = α ds                               # s = … + α s_prev
    dx_t     = da A + (1 - α) ds B

Options: ``alpha`` (any number in [0, 1], default 0.95) and ``nonlinearity``
in ``("sigmoid", "tanh")``.

Sources: the forward equations are the paper's (written there with column
vectors, ``s_t = (1-α) B x_t + α s_{t-1}``, ``h_t = σ(P s_t + A x_t + R h_{t-1})``,
``y_t = f(U h_t + V s_t)``), transposed to this package's row-per-sample layout;
the backward pass and the RTRL Jacobians are derived here and checked against
finite differences and against each other (``tests/test_scrn_leaky.py``).
"""
import numbers
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import dsigmoid_from_output, dtanh_from_output, sigmoid
from .rtrl import outer

NAME = "scrn"
STATE_NAMES = ("h", "s")
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers


class UnitInterval:
    """The allowed values of a real-valued option: any number in ``[0, 1]``.

    ``checks.check_options`` reads an option's allowed values as a container whose
    first item is the default; this is such a container for a continuum of values.
    """

    def __init__(self, default):
        self.default = default

    def __getitem__(self, index):
        if index != 0:
            raise IndexError(index)
        return self.default

    def __contains__(self, value):
        return (isinstance(value, numbers.Real) and not isinstance(value, bool)
                and 0.0 <= float(value) <= 1.0)

    def __repr__(self):
        return f"any real number in [0, 1] (default {self.default})"


OPTIONS = {"alpha": UnitInterval(0.95), "nonlinearity": ("sigmoid", "tanh")}


def param_shapes(D, H, **options):
    return {"A": (H, D), "B": (H, D), "P": (H, H), "R": (H, H), "b": (H,)}


def hidden_size(params):
    return hidden_size_from(params, "R", -1, NAME)


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """``U(-1/√H, 1/√H)`` for every entry, bias included (PyTorch's rule for ``nn.RNN``)."""
    check_sizes(input_size, hidden_size)
    check_options(NAME, options, OPTIONS)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    return {n: rng.uniform(-k, k, s).astype(dtype) for n, s in param_shapes(input_size, hidden_size).items()}


def _phi(nonlinearity):
    """The squashing function and its derivative written through its output."""
    return (sigmoid, dsigmoid_from_output) if nonlinearity == "sigmoid" else (np.tanh, dtanh_from_output)


def step_forward(params, x_t, state, alpha=0.95, nonlinearity="sigmoid"):
    """One step.  ``x_t (N, D)``, ``state = (h_prev, s_prev)`` each ``(N, H)`` -> ``((h, s), cache)``."""
    h_prev, s_prev = state
    phi, dphi = _phi(nonlinearity)
    s = (1 - alpha) * (x_t @ params["B"].T) + alpha * s_prev
    a = s @ params["P"].T + x_t @ params["A"].T + h_prev @ params["R"].T + params["b"]
    h = phi(a)
    return (h, s), (x_t, h_prev, s, dphi(h), alpha)


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh, ds)`` -> ``(dx_t, (dh_prev, ds_prev), dparams)``."""
    x_t, h_prev, s, dphi_a, alpha = cache
    dh, ds_next = dstate
    da = dh * dphi_a                                  # h = φ(a)
    ds = ds_next + da @ params["P"]                   # s feeds a (through P) and the next step
    dparams = {
        "P": da.T @ s,                                # a = s P^T + …
        "A": da.T @ x_t,                              # a = … + x A^T + …
        "R": da.T @ h_prev,                           # a = … + h_prev R^T + …
        "b": da.sum(axis=0),                          # a = … + b
        "B": (1 - alpha) * (ds.T @ x_t),              # s = (1-α) x B^T + α s_prev
    }
    dh_prev = da @ params["R"]
    ds_prev = alpha * ds
    dx_t = da @ params["A"] + (1 - alpha) * (ds @ params["B"])
    return dx_t, (dh_prev, ds_prev), dparams


def step_jacobians(params, x_t, state, alpha=0.95, nonlinearity="sigmoid"):
    """Per-sample Jacobians of one step for RTRL, state flattened as ``[h | s]`` (S = 2H).

    With ``d = φ'(a)`` (N, H) and ``D = diag(d)``::

        ∂s/∂s_prev = α I            ∂s/∂h_prev = 0          ∂s/∂x = (1-α) B
        ∂h/∂s_prev = α D P          ∂h/∂h_prev = D R        ∂h/∂x = D (A + (1-α) P B)
        ∂s_i/∂B[k, j] = (1-α) δ_ik x_j            ∂h/∂B = ∂h/∂s · ∂s/∂B = D P · ∂s/∂B
        ∂h/∂{P, A, R} = D ⊗ {s, x, h_prev}        ∂h/∂b = D
    """
    (h, _), (x_t, h_prev, s, d, _) = step_forward(params, x_t, state, alpha, nonlinearity)
    N, H = h.shape
    eye = np.eye(H, dtype=h.dtype)
    dh_da = d[:, :, None] * eye                                   # (N, H, H): diagonal
    dh_ds = dh_da @ params["P"]                                   # ∂h/∂s_t   (N, H, H)
    J_state = np.zeros((N, 2 * H, 2 * H), h.dtype)
    J_state[:, :H, :H] = dh_da @ params["R"]
    J_state[:, :H, H:] = alpha * dh_ds
    J_state[:, H:, H:] = alpha * eye
    ds_dx = (1 - alpha) * params["B"]                             # (H, D)
    J_x = np.concatenate([dh_da @ params["A"] + dh_ds @ ds_dx,
                          np.broadcast_to(ds_dx, (N,) + ds_dx.shape)], axis=1)
    ds_dB = (1 - alpha) * outer(np.broadcast_to(eye, (N, H, H)), x_t)       # (N, H, H, D)
    zeros_s = np.zeros((N, H, H), h.dtype)                        # s does not depend on P, A, R, b
    J_params = {
        "A": np.concatenate([outer(dh_da, x_t), outer(zeros_s, x_t)], axis=1),
        "P": np.concatenate([outer(dh_da, s), outer(zeros_s, s)], axis=1),
        "R": np.concatenate([outer(dh_da, h_prev), outer(zeros_s, h_prev)], axis=1),
        "b": np.concatenate([dh_da, zeros_s], axis=1),
        "B": np.concatenate([np.einsum("nik,nkjd->nijd", dh_ds, ds_dB), ds_dB], axis=1),
    }
    return (h, s), J_state, J_x, J_params


def forward(params, x, state0=None, **options):
    """Run over ``x (T, N, D)``: returns ``(y (T, N, H), (h_T, s_T), cache)``."""
    return bptt.forward(_CELL, params, x, state0, **options)


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k); see ``bptt.backward``."""
    return bptt.backward(_CELL, params, cache, dy, dstate, window)


def rtrl(params, x, dy, state0=None, dstate=None, **options):
    """The gradients of ``backward``, forward in time; see ``rtrl.rtrl``."""
    return _rtrl.rtrl(_CELL, params, x, dy, state0, dstate, **options)


# ------------------------------------------------------------------ the context for a read-out
def _check_cache(cache):
    if not isinstance(cache, dict) or "steps" not in cache or "options" not in cache \
            or "alpha" not in cache["options"]:
        raise TypeError("cache must be the third value returned by a forward pass of 'scrn' "
                        "on the numpy backend")


def context_sequence(cache):
    """The context states ``s_0 … s_{T-1}`` of a forward pass, ``(T, N, H)``.

    ``y`` holds the hidden states; this is the other half of what the paper's
    output layer ``f(h_t U^T + s_t V^T)`` reads.
    """
    _check_cache(cache)
    return np.stack([step[2] for step in cache["steps"]])


def context_backward(params, cache, ds_seq):
    """Gradients of ``Σ_t <ds_t, s_t>`` for an error ``ds_seq (T, N, H)`` on the context sequence.

    The context does not depend on ``h``, so this is the linear recursion on ``s`` alone::

        δ_{T-1} = ds_{T-1},   δ_t = ds_t + α δ_{t+1}              (error arriving at s_t)
        dB = (1-α) Σ_t δ_t^T x_t     dx_t = (1-α) δ_t B     ds_{-1} = α δ_0

    Returns ``{"B": dB, "x": dx, "state0": (zeros, ds_{-1})}``; add it to what
    ``backward`` returns for the error on ``y`` (gradients of a sum add up).
    """
    _check_cache(cache)
    T, N, H = cache["shape"]
    if not (hasattr(ds_seq, "shape") and tuple(ds_seq.shape) == (T, N, H)):
        raise ValueError(f"ds_seq must have the shape of the context sequence {(T, N, H)}, "
                         f"got {getattr(ds_seq, 'shape', type(ds_seq).__name__)}")
    alpha = cache["options"]["alpha"]
    x = cache["x"]
    dx = np.zeros_like(x)
    dB = np.zeros_like(params["B"])
    delta = np.zeros((N, H), cache["dtype"])
    for t in reversed(range(T)):
        delta = ds_seq[t] + alpha * delta                         # s_t feeds s_{t+1} = … + α s_t
        dB += (1 - alpha) * (delta.T @ x[t])                      # s_t = (1-α) x_t B^T + …
        dx[t] = (1 - alpha) * (delta @ params["B"])
    return {"B": dB, "x": dx, "state0": (np.zeros((N, H), cache["dtype"]), alpha * delta)}

r"""Long short-term memory (LSTM), and the eight variants of *LSTM: A Search Space Odyssey*.

Default form: PyTorch ``nn.LSTM`` (forget gate, no peepholes).  Gate order **i, f, g, o**;
``σ`` is the logistic sigmoid::

    z_t = x_t W_ih^T + h_{t-1} W_hh^T + b        (B, 4H)  = [z_i | z_f | z_g | z_o]
    i_t = σ(z_i)   f_t = σ(z_f)   g_t = tanh(z_g)   o_t = σ(z_o)     (B, H) each
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t                (B, H)   the constant error carousel
    h_t = o_t ⊙ tanh(c_t)                          (B, H)

Parameters (PyTorch layout, ``b = b_ih + b_hh`` folded into one)::

    W_ih (4H, D)    W_hh (4H, H)    b (4H,)

State: ``(h, c)``.  Output ``y_t = h_t``.

**Options** (each switches one piece of the cell; Greff et al. 2017 study them one at a time):

=====================  ====================================================================
``peepholes=True``     ``z_i += p_i ⊙ c_{t-1}``, ``z_f += p_f ⊙ c_{t-1}``, ``z_o += p_o ⊙ c_t``;
                       parameters ``p_i, p_f, p_o (H,)``
``input_gate=False``   ``i_t = 1``                                     (NIG)
``forget_gate=False``  ``f_t = 1``                                     (NFG)
``output_gate=False``  ``o_t = 1``                                     (NOG)
``input_activation``   ``=False``: ``g_t = z_g`` (no tanh)             (NIAF)
``output_activation``  ``=False``: ``h_t = o_t ⊙ c_t`` (no tanh)       (NOAF)
``coupled=True``       ``f_t = 1 - i_t``, ``z_f`` unused               (CIFG)
``gate_recurrence``    ``=True``: ``[z_i|z_f|z_o] += [i|f|o]_{t-1} R^T`` with ``R (3H, 3H)``;
                       the state then carries the previous gates: ``(h, c, i, f, o)``  (FGR)
=====================  ====================================================================

The paper's "vanilla" LSTM is ``peepholes=True`` (see ``ODYSSEY``); its variant NP
(no peepholes) is PyTorch's LSTM, this module's default.  Disabled gates keep their
rows in ``W_ih``/``W_hh``/``b`` so every variant shares one layout; those rows get a
zero gradient.

Backward of one step (default form), given ``dh_t`` and ``dc_t`` arriving from above
and from ``t+1``::

    do   = dh_t ⊙ tanh(c_t)                        # h = o ⊙ tanh(c)
    dc   = dc_t + dh_t ⊙ o_t ⊙ (1 - tanh²(c_t))    # h = o ⊙ tanh(c), c also feeds t+1
    di   = dc ⊙ g_t,  dg = dc ⊙ i_t                 # c = … + i ⊙ g
    df   = dc ⊙ c_{t-1}                             # c = f ⊙ c_prev + …
    dc_{t-1} = dc ⊙ f_t
    dz   = [di ⊙ i(1-i) | df ⊙ f(1-f) | dg ⊙ (1-g²) | do ⊙ o(1-o)]   # the gate nonlinearities
    dW_ih += dz^T x_t,  dW_hh += dz^T h_{t-1},  db += Σ_b dz,  dx_t = dz W_ih,  dh_{t-1} = dz W_hh

The options add the terms written next to them in ``step_backward``.
"""
import sys

import numpy as np

from ..checks import check_options, check_sizes, hidden_size_from
from . import bptt, rtrl as _rtrl
from .functions import dsigmoid_from_output, dtanh_from_output, sigmoid
from .rtrl import diag_blocks, outer

NAME = "lstm"
OPTIONS = {"peepholes": (False, True), "input_gate": (True, False), "forget_gate": (True, False),
           "output_gate": (True, False), "input_activation": (True, False),
           "output_activation": (True, False), "coupled": (False, True), "gate_recurrence": (False, True)}
STATE_NAMES = ("h", "c")
_CELL = sys.modules[__name__]   # this module, handed to the generic bptt / rtrl drivers

#: The variants of Greff et al., *LSTM: A Search Space Odyssey*, as options of this cell.
ODYSSEY = {
    "V": dict(peepholes=True),
    "NIG": dict(peepholes=True, input_gate=False),
    "NFG": dict(peepholes=True, forget_gate=False),
    "NOG": dict(peepholes=True, output_gate=False),
    "NIAF": dict(peepholes=True, input_activation=False),
    "NOAF": dict(peepholes=True, output_activation=False),
    "NP": dict(),
    "CIFG": dict(peepholes=True, coupled=True),
    "FGR": dict(peepholes=True, gate_recurrence=True),
}


def _options(options):
    opts = check_options(NAME, options, OPTIONS)
    if opts["coupled"] and not (opts["input_gate"] and opts["forget_gate"]):
        raise ValueError("coupled=True sets f = 1 - i: it needs input_gate=True and forget_gate=True")
    return opts


def state_names(**options):
    """``(h, c)``, plus the previous gates ``(i, f, o)`` under ``gate_recurrence``."""
    return STATE_NAMES + (("i", "f", "o") if options.get("gate_recurrence") else ())


def param_shapes(D, H, **options):
    shapes = {"W_ih": (4 * H, D), "W_hh": (4 * H, H), "b": (4 * H,)}
    if options.get("peepholes"):
        shapes.update(p_i=(H,), p_f=(H,), p_o=(H,))
    if options.get("gate_recurrence"):
        shapes["R"] = (3 * H, 3 * H)
    return shapes


def hidden_size(params):
    return hidden_size_from(params, "W_hh", -1, NAME)


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """``U(-1/√H, 1/√H)`` for every entry, biases and peepholes included (as PyTorch does)."""
    check_sizes(input_size, hidden_size)
    opts = _options(options)
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(hidden_size)
    return {n: rng.uniform(-k, k, s).astype(dtype)
            for n, s in param_shapes(input_size, hidden_size, **opts).items()}


def step_forward(params, x_t, state, **options):
    """One step.  ``x_t (B, D)``, ``state = (h_prev, c_prev[, i, f, o])`` each ``(B, H)``."""
    o_ = {**{k: v[0] for k, v in OPTIONS.items()}, **options}
    h_prev, c_prev = state[0], state[1]
    H = h_prev.shape[1]
    z = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    a_prev = None
    if o_["gate_recurrence"]:
        a_prev = np.concatenate(state[2:5], axis=1)                  # [i|f|o]_{t-1}   (B, 3H)
        r = a_prev @ params["R"].T
        z[:, :2 * H] += r[:, :2 * H]
        z[:, 3 * H:] += r[:, 2 * H:]
    z_i, z_f, z_g, z_o = (z[:, k * H:(k + 1) * H] for k in range(4))
    if o_["peepholes"]:
        z_i = z_i + params["p_i"] * c_prev
        z_f = z_f + params["p_f"] * c_prev
    one = np.ones_like(h_prev)
    i = sigmoid(z_i) if o_["input_gate"] else one
    f = 1 - i if o_["coupled"] else (sigmoid(z_f) if o_["forget_gate"] else one)
    g = np.tanh(z_g) if o_["input_activation"] else z_g
    c = f * c_prev + i * g
    if o_["peepholes"]:
        z_o = z_o + params["p_o"] * c
    o = sigmoid(z_o) if o_["output_gate"] else one
    tc = np.tanh(c) if o_["output_activation"] else c
    h = o * tc
    new_state = (h, c) + ((i, f, o) if o_["gate_recurrence"] else ())
    return new_state, (x_t, h_prev, c_prev, a_prev, i, f, g, o, c, tc, o_)


def _local_slopes(cache):
    """The derivatives of each gate's activation w.r.t. its own pre-activation (0 if disabled)."""
    x_t, h_prev, c_prev, a_prev, i, f, g, o, c, tc, o_ = cache
    zero = np.zeros_like(i)
    si = dsigmoid_from_output(i) if o_["input_gate"] else zero
    sf = dsigmoid_from_output(f) if (o_["forget_gate"] and not o_["coupled"]) else zero
    sg = dtanh_from_output(g) if o_["input_activation"] else np.ones_like(g)
    so = dsigmoid_from_output(o) if o_["output_gate"] else zero
    sc = dtanh_from_output(tc) if o_["output_activation"] else np.ones_like(tc)   # d tc / d c
    return si, sf, sg, so, sc


def step_backward(params, cache, dstate):
    """Backward of one step.  ``dstate = (dh, dc[, di, df, do])`` -> ``(dx_t, dstate_prev, dparams)``."""
    x_t, h_prev, c_prev, a_prev, i, f, g, o, c, tc, o_ = cache
    si, sf, sg, so, sc = _local_slopes(cache)
    dh, dc_next = dstate[0], dstate[1]
    fgr = o_["gate_recurrence"]
    do = dh * tc + (dstate[4] if fgr else 0)              # h = o ⊙ tc  (+ o is carried as state)
    dz_o = do * so                                        # o = σ(z_o)
    dc = dc_next + dh * o * sc                            # h = o ⊙ tanh(c), c also feeds t+1
    if o_["peepholes"]:
        dc = dc + dz_o * params["p_o"]                    # z_o = … + p_o ⊙ c
    di = dc * g + (dstate[2] if fgr else 0)               # c = … + i ⊙ g  (+ i carried as state)
    dg = dc * i
    df = dc * c_prev + (dstate[3] if fgr else 0)          # c = f ⊙ c_prev + …  (+ f carried)
    dc_prev = dc * f
    if o_["coupled"]:
        di = di - df                                      # f = 1 - i
    dz_i = di * si                                        # i = σ(z_i)
    dz_f = df * sf                                        # f = σ(z_f)
    dz_g = dg * sg                                        # g = tanh(z_g)
    dparams = {}
    if o_["peepholes"]:
        dc_prev = dc_prev + dz_i * params["p_i"] + dz_f * params["p_f"]   # z_i, z_f = … + p ⊙ c_prev
        dparams.update(p_i=(dz_i * c_prev).sum(0), p_f=(dz_f * c_prev).sum(0), p_o=(dz_o * c).sum(0))
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)
    dparams.update(W_ih=dz.T @ x_t,                       # z = x W_ih^T + …
                   W_hh=dz.T @ h_prev,                    # z = … + h_prev W_hh^T
                   b=dz.sum(axis=0))                      # z = … + b
    dx_t = dz @ params["W_ih"]
    dh_prev = dz @ params["W_hh"]
    dstate_prev = (dh_prev, dc_prev)
    if fgr:
        dz_ifo = np.concatenate([dz_i, dz_f, dz_o], axis=1)
        dparams["R"] = dz_ifo.T @ a_prev                  # [z_i|z_f|z_o] += a_prev R^T
        da_prev = dz_ifo @ params["R"]
        H = h_prev.shape[1]
        dstate_prev += (da_prev[:, :H], da_prev[:, H:2 * H], da_prev[:, 2 * H:])
    return dx_t, dstate_prev, dparams


def step_jacobians(params, x_t, state, **options):
    """Per-sample Jacobians of one step for RTRL, state flattened as ``s = [h | c (| i | f | o)]``.

    Every state entry of unit ``k`` depends only on unit ``k``'s pre-activations
    ``z_{·,k}`` and ``c_prev_k``; with ``s·`` the gates' slopes (0 for a disabled gate)::

        ∂i/∂z_i = si,                 ∂i/∂c_prev = si p_i
        ∂f/∂z_f = sf  (CIFG: ∂f/∂z_i = -si),   ∂f/∂c_prev = sf p_f  (CIFG: -si p_i)
        ∂c/∂· = c_prev ∂f/∂· + g ∂i/∂· + i sg [· = z_g],   ∂c/∂c_prev = f + c_prev ∂f/∂c_prev + g ∂i/∂c_prev
        ∂o/∂· = so p_o ∂c/∂·  (+ so for z_o)
        ∂h/∂· = tc ∂o/∂· + o sc ∂c/∂·

    then ``∂s/∂h_prev = ∂s/∂z W_hh``, ``∂s/∂x = ∂s/∂z W_ih``, ``∂s/∂a_prev = ∂s/∂z_{ifo} R``,
    ``∂s/∂W = ∂s/∂z ⊗ input``, ``∂s/∂p_i = ∂s/∂z_i ⊙ c_prev``, ``∂s/∂p_o = ∂s/∂z_o ⊙ c``.
    """
    new_state, cache = step_forward(params, x_t, state, **options)
    x_t, h_prev, c_prev, a_prev, i, f, g, o, c, tc, o_ = cache
    si, sf, sg, so, sc = _local_slopes(cache)
    B, H = h_prev.shape
    zero = np.zeros_like(i)
    p = {k: params[k] if o_["peepholes"] else 0 for k in ("p_i", "p_f", "p_o")}
    # local derivatives w.r.t. (z_i, z_f, z_g, z_o, c_prev), each (B, H)
    d_i = [si, zero, zero, zero, si * p["p_i"]]
    d_f = ([-si, zero, zero, zero, -si * p["p_i"]] if o_["coupled"]
           else [zero, sf, zero, zero, sf * p["p_f"]])
    d_c = [c_prev * df_ + g * di_ for df_, di_ in zip(d_f, d_i)]
    d_c[2] = d_c[2] + i * sg
    d_c[4] = d_c[4] + f
    d_o = [so * p["p_o"] * dc_ for dc_ in d_c]
    d_o[3] = d_o[3] + so
    d_h = [tc * do_ + o * sc * dc_ for do_, dc_ in zip(d_o, d_c)]
    rows = [d_h, d_c] + ([d_i, d_f, d_o] if o_["gate_recurrence"] else [])
    ds_dz = np.concatenate([diag_blocks(*r[:4]) for r in rows], axis=1)           # (B, S, 4H)
    ds_dcprev = np.concatenate([diag_blocks(r[4]) for r in rows], axis=1)         # (B, S, H)
    S = ds_dz.shape[1]
    J_state = np.zeros((B, S, S), h_prev.dtype)
    J_state[:, :, :H] = ds_dz @ params["W_hh"]
    J_state[:, :, H:2 * H] = ds_dcprev
    J_params = {"W_ih": outer(ds_dz, x_t), "W_hh": outer(ds_dz, h_prev), "b": ds_dz}
    ds_dzifo = np.concatenate([ds_dz[:, :, :2 * H], ds_dz[:, :, 3 * H:]], axis=2)  # (B, S, 3H)
    if o_["gate_recurrence"]:
        J_state[:, :, 2 * H:] = ds_dzifo @ params["R"]
        J_params["R"] = outer(ds_dzifo, a_prev)
    if o_["peepholes"]:
        J_params["p_i"] = ds_dz[:, :, :H] * c_prev[:, None, :]
        J_params["p_f"] = ds_dz[:, :, H:2 * H] * c_prev[:, None, :]
        J_params["p_o"] = ds_dz[:, :, 3 * H:] * c[:, None, :]
    J_x = ds_dz @ params["W_ih"]
    return new_state, J_state, J_x, J_params


def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T, c_T[, i, f, o]), cache)``."""
    _options(options)
    return bptt.forward(_CELL, params, x, state0, **options)


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k); see ``bptt.backward``."""
    return bptt.backward(_CELL, params, cache, dy, dstate, window)


def rtrl(params, x, dy, state0=None, dstate=None, **options):
    """The gradients of ``backward``, forward in time; see ``rtrl.rtrl``."""
    _options(options)
    return _rtrl.rtrl(_CELL, params, x, dy, state0, dstate, **options)

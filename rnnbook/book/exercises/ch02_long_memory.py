r"""Chapter 2 (long memory without gates): the SCRN step backward, the leaky unit's step backward
with the time constant, and the RTRL influence update of the leaky unit.

Every checker compares each parameter gradient and each path with the float64
reference, then isolates paths by "zeroing everything but one term":

* SCRN (2.1): ``dh = 0`` leaves only the context path (the error carried in on
  ``s``), ``ds_next = 0`` leaves only the path from ``h`` through ``P``, and ``B = 0``
  leaves only the input path through ``A``;
* leaky unit (2.2): ``W_hh = 0`` (with the same cache) leaves the leak term of
  ``dh_prev`` alone, and the same step with ``τ`` trained directly (``tau_param="direct"``)
  gives ``dτ`` without the softplus chain factor, so that an error in that factor
  is told apart from an error in ``dτ`` itself;
* leaky RTRL (2.3): ``M_prev = 0`` leaves the immediate term, and the carried term
  is split into the leak's diagonal (``W_hh = 0``) and the recurrent part.
"""
from __future__ import annotations

import numpy as np

from ...numpy_ref import bptt, leaky, scrn
from ..grading import BadAnswer, exercise
from .common import random_params, sequence_check, unpack_step_backward

B, D, H = 3, 4, 5            # D != H, so a transposed A, B or W_ih shows up in the shapes
ALPHA = 0.7                  # not 0.5, where α and 1 − α could not be told apart


# =========================================================================== 2.1
SCRN_FORM = "(dx_t, (dh_prev, ds_prev), {'A': dA, 'B': dB, 'P': dP, 'R': dR, 'b': db})"
SCRN_HINTS = {
    "A": "dA = daᵀ x_t",
    "P": "dP = daᵀ s_t (s_t = cache[2], the new context)",
    "R": "dR = daᵀ h_prev",
    "b": "db = Σ over the batch of da",
    "B": "dB = (1 − α) dsᵀ x_t with ds = ds_next + da P",
    "h_prev": "dh_prev = da R",
    "s_prev": "ds_prev = α ds with ds = ds_next + da P",
    "x": "dx_t = da A + (1 − α) ds B",
    "x via A": "dx_t = da A + … (the input's direct path into a)",
    "x via s": "dx_t = … + (1 − α) ds B (the input's path through the context)",
}
SCRN_GROUP = {"A": "hidden layer", "P": "hidden layer", "R": "hidden layer", "b": "hidden layer",
              "h_prev": "hidden layer", "B": "context layer", "s_prev": "context layer", "x": "input"}


def _scrn_run(probe, params, x_t, h_prev, s_prev, dh, ds_next, nonlinearity="sigmoid"):
    _, cache = scrn.step_forward(params, x_t, (h_prev, s_prev), alpha=ALPHA, nonlinearity=nonlinearity)
    ref = scrn.step_backward(params, cache, (dh, ds_next))
    got = unpack_step_backward(probe, probe.call(params, cache, (dh, ds_next)), 2, SCRN_FORM, record=False)
    return cache, got, ref


def _scrn_slips(params, cache, s_prev, dh, ds_next):
    """What the usual slips give, computed from the same inputs (to name the slip)."""
    x_t, h_prev, s, dphi_a, a = cache
    da = dh * dphi_a
    ds = ds_next + da @ params["P"]
    no_dphi = "the value with da = dh: the factor φ'(a) (cache[3], dphi_a) is missing"
    swapped = "the value with α and 1 − α swapped"
    no_P = "the value without the path through P (ds = ds_next only; ds = ds_next + da P)"
    return {
        "A": {no_dphi: dh.T @ x_t},
        "P": {no_dphi: dh.T @ s, "daᵀ s_prev: a reads the new context s_t (cache[2]), not s_prev": da.T @ s_prev},
        "R": {no_dphi: dh.T @ h_prev},
        "b": {no_dphi: dh.sum(0)},
        "h_prev": {no_dphi: dh @ params["R"], "da Rᵀ: R is transposed (a = h_prev Rᵀ gives dh_prev = da R)":
                   da @ params["R"].T},
        "B": {swapped: a * (ds.T @ x_t), no_P: (1 - a) * (ds_next.T @ x_t),
              "dsᵀ x_t without the factor (1 − α)": ds.T @ x_t},
        "s_prev": {swapped: (1 - a) * ds, no_P: a * ds_next, "ds without the factor α": ds,
                   "α ⊙ da P: the error carried in on s (ds_next) is missing": a * (da @ params["P"])},
        "x": {"da A: the path through the context is missing": da @ params["A"],
              swapped: da @ params["A"] + a * (ds @ params["B"]), no_P: da @ params["A"] + (1 - a) * (
                  ds_next @ params["B"])},
    }


@exercise("2.1", function="scrn_step_backward", title="backward of one SCRN step (slow context + fast hidden layer)",
          task="from cache = (x_t, h_prev, s, dphi_a, alpha) and dstate = (dh, ds_next), compute da = dh ⊙ dphi_a and "
               "ds = ds_next + da P, and return (dx_t, (dh_prev, ds_prev), {'A', 'B', 'P', 'R', 'b'})")
def check_scrn_step_backward(probe):
    rng = np.random.default_rng(2101)
    params = random_params(scrn.param_shapes(D, H), rng)
    x_t, h_prev = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H))
    s_prev = 0.8 * rng.standard_normal((B, H))
    dh, ds_next = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    # the full step: the form, then every gradient
    _, cache = scrn.step_forward(params, x_t, (h_prev, s_prev), alpha=ALPHA)
    unpack_step_backward(probe, probe.call(params, cache, (dh, ds_next)), 2, SCRN_FORM, record=False)
    probe.expect("return form", True, label="(dh_prev, ds_prev) is a tuple", group="return form", localise=False)
    cache, (dx, (dh_prev, ds_prev), dp), (dx_ref, (dh_prev_ref, ds_prev_ref), dp_ref) = \
        _scrn_run(probe, params, x_t, h_prev, s_prev, dh, ds_next)
    slips = _scrn_slips(params, cache, s_prev, dh, ds_next)
    for name in ("A", "P", "R", "b", "B"):
        probe.compare(name, dp.get(name), dp_ref[name], f"d{name}", SCRN_GROUP[name], SCRN_HINTS[name], slips[name])
    probe.compare("h_prev", dh_prev, dh_prev_ref, "dh_prev", "hidden layer", SCRN_HINTS["h_prev"], slips["h_prev"])
    probe.compare("s_prev", ds_prev, ds_prev_ref, "ds_prev", "context layer", SCRN_HINTS["s_prev"], slips["s_prev"])
    probe.compare("x", dx, dx_ref, "dx_t (both paths)", "input", SCRN_HINTS["x"], slips["x"])

    # zero everything but one term: dh = 0 leaves the context path alone ...
    zero = np.zeros_like(dh)
    group = "context path alone (dh = 0)"
    _, (dx0, (_, ds0), dp0), (dx0_ref, (_, ds0_ref), dp0_ref) = \
        _scrn_run(probe, params, x_t, h_prev, s_prev, zero, ds_next)
    probe.compare("B | dh=0", dp0.get("B"), dp0_ref["B"], "dB with dh = 0", group, SCRN_HINTS["B"],
                  {"α ds_nextᵀ x_t (α and 1 − α swapped)": ALPHA * (ds_next.T @ x_t)})
    probe.compare("s_prev | dh=0", ds0, ds0_ref, "ds_prev with dh = 0", group, SCRN_HINTS["s_prev"],
                  {"(1 − α) ds_next (α and 1 − α swapped)": (1 - ALPHA) * ds_next})
    probe.compare("x | dh=0", dx0, dx0_ref, "dx_t with dh = 0", group, SCRN_HINTS["x via s"])
    # ... ds_next = 0 leaves the error that reaches the context from h, through P ...
    group = "from h through P alone (ds_next = 0)"
    _, (dx1, (_, ds1), dp1), (dx1_ref, (_, ds1_ref), dp1_ref) = \
        _scrn_run(probe, params, x_t, h_prev, s_prev, dh, zero)
    probe.compare("B | ds_next=0", dp1.get("B"), dp1_ref["B"], "dB with ds_next = 0", group, SCRN_HINTS["B"])
    probe.compare("s_prev | ds_next=0", ds1, ds1_ref, "ds_prev with ds_next = 0", group, SCRN_HINTS["s_prev"])
    probe.compare("x | ds_next=0", dx1, dx1_ref, "dx_t with ds_next = 0", group, SCRN_HINTS["x"])
    # ... and B = 0 leaves the input's direct path through A
    no_B = {k: (np.zeros_like(v) if k == "B" else v) for k, v in params.items()}
    _, (dx2, _, _), (dx2_ref, _, _) = _scrn_run(probe, no_B, x_t, h_prev, s_prev, dh, ds_next)
    probe.compare("x via A", dx2, dx2_ref, "dx_t with B = 0", "input", SCRN_HINTS["x via A"])

    hidden = {"A", "P", "R", "b", "h_prev", "x via A"}
    through_ds_from_h = {"B", "s_prev", "x", "B | ds_next=0", "s_prev | ds_next=0", "x | ds_next=0"}
    carried = {"B", "s_prev", "x", "B | dh=0", "s_prev | dh=0", "x | dh=0"}
    probe.explain("da = dh ⊙ φ'(a), where φ'(a) is cache[3] (dphi_a): it feeds every hidden-layer gradient and, "
                  "through ds = ds_next + da P, the context's", hidden | through_ds_from_h)
    probe.explain("the context's error from the hidden layer: ds = ds_next + da P (P, not Pᵀ: a = s Pᵀ + …)",
                  through_ds_from_h)
    probe.explain("the context's error carried in from step t+1: ds = ds_next + da P, with ds_next = dstate[1]",
                  carried)
    probe.explain("the input's path through the context: dx_t = da A + (1 − α) ds B",
                  {"x", "x | dh=0", "x | ds_next=0"})
    probe.explain("the input's direct path: dx_t = da A + (1 − α) ds B", {"x", "x via A"})

    # the same step inside the library's BPTT, over a whole sequence, against finite differences
    rng = np.random.default_rng(2102)
    params = random_params(scrn.param_shapes(3, 4), rng)
    state0 = (0.5 * rng.standard_normal((2, 4)), 0.5 * rng.standard_normal((2, 4)))
    sequence_check(probe, scrn, params, rng.standard_normal((4, 2, 3)), state0,
                   {"alpha": ALPHA, "nonlinearity": "sigmoid"}, 2, SCRN_FORM)


# =========================================================================== 2.2
LEAKY_FORM = "(dx_t, (dh_prev,), {'W_ih': dW_ih, 'W_hh': dW_hh, 'b': db, 'rho': dρ})"
LEAKY_HINTS = {
    "W_ih": "dW_ih = daᵀ x_t with da = dh ⊙ φ'(a) / τ",
    "W_hh": "dW_hh = daᵀ h_prev with da = dh ⊙ φ'(a) / τ",
    "b": "db = Σ over the batch of da, with da = dh ⊙ φ'(a) / τ",
    "x": "dx_t = da W_ih",
    "h_prev": "dh_prev = dh ⊙ (1 − 1/τ) + da W_hh",
    "h_prev leak": "the leak term of dh_prev: dh ⊙ (1 − 1/τ) (h = (1 − 1/τ) h_prev + …)",
    "h_prev recurrent": "the recurrent term of dh_prev: da W_hh",
    "tau": "dτ = −Σ over the batch of dh ⊙ (φ(a) − h_prev) / τ²",
    "rho": "dρ = dτ ⊙ dτ/dρ, with dτ/dρ = sigmoid(ρ) for τ = 1 + softplus(ρ)",
}


def _leaky_cache(params, x_t, h_prev, tau_param, nonlinearity="tanh"):
    _, cache = leaky.step_forward(params, x_t, (h_prev,), nonlinearity=nonlinearity, tau_param=tau_param)
    return cache


def _leaky_call(probe, params, cache, dh):
    return unpack_step_backward(probe, probe.call(params, cache, (dh,)), 1, LEAKY_FORM, record=False)


@exercise("2.2", function="leaky_step_backward", title="backward of one leaky-unit step, time constants included",
          task="from cache = (x_t, h_prev, f, dphi_a, tau, dtau_dparam, tau_param) and dstate = (dh,), with "
               "h = (1 − 1/τ) h_prev + f / τ and f = φ(a): return (dx_t, (dh_prev,), {'W_ih', 'W_hh', 'b', 'rho'}) "
               "('tau' instead of 'rho' when tau_param == 'direct')")
def check_leaky_step_backward(probe):
    rng = np.random.default_rng(2201)
    params = random_params(leaky.param_shapes(D, H), rng)
    params["rho"] = rng.uniform(-1.5, 1.5, H)                   # τ from 1.2 to 2.7, sigmoid(ρ) far from 1
    x_t, h_prev, dh = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H)), rng.standard_normal((B, H))
    cache = _leaky_cache(params, x_t, h_prev, "softplus")
    unpack_step_backward(probe, probe.call(params, cache, (dh,)), 1, LEAKY_FORM)
    dx, (dh_prev,), dp = _leaky_call(probe, params, cache, dh)
    dx_ref, (dh_prev_ref,), dp_ref = leaky.step_backward(params, cache, (dh,))

    # the usual slips, from the same inputs
    _, _, f, dphi, tau, dtau_drho, _ = cache
    da = dh * dphi / tau
    kappa_only = dh / tau                                       # φ' missing
    dphi_only = dh * dphi                                       # 1/τ missing
    no_phi = "the value with da = dh / τ: the factor φ'(a) (cache[3], dphi_a) is missing"
    no_kappa = "the value with da = dh ⊙ φ'(a): the factor 1/τ (the new input's share) is missing"
    dkappa = (dh * (f - h_prev)).sum(0)
    dtau = -dkappa / tau ** 2
    tau_slips = {
        "−Σ dh ⊙ φ(a) / τ²: the leak's own dependence on τ is missing (h = (1 − 1/τ) h_prev + φ(a) / τ "
        "depends on τ through both terms)": -(dh * f).sum(0) / tau ** 2,
        "dκ = Σ dh ⊙ (φ(a) − h_prev): the chain factor dκ/dτ = −1/τ² of κ = 1/τ is missing": dkappa,
        "−Σ dh ⊙ (φ(a) − h_prev) / τ: the derivative of 1/τ is −1/τ², not −1/τ": -dkappa / tau,
    }
    rho_slips = {
        "dτ: the softplus chain factor dτ/dρ = sigmoid(ρ) is missing": dtau,
        "dτ ⊙ softplus(ρ): the chain factor is the derivative of softplus, sigmoid(ρ)": dtau * (tau - 1),
        "dτ ⊙ τ: the chain factor is dτ/dρ = sigmoid(ρ)": dtau * tau,
        "dτ ⊙ sigmoid(ρ)(1 − sigmoid(ρ)): that is the derivative of sigmoid, not of softplus":
            dtau * dtau_drho * (1 - dtau_drho),
    }
    rho_slips.update({f"dρ from a wrong dτ: {k}": v * dtau_drho for k, v in tau_slips.items()})
    group = "weights and bias (through da)"
    for name, x_in in (("W_ih", x_t), ("W_hh", h_prev)):
        probe.compare(name, dp.get(name), dp_ref[name], f"d{name}", group, LEAKY_HINTS[name],
                      {no_phi: kappa_only.T @ x_in, no_kappa: dphi_only.T @ x_in})
    probe.compare("b", dp.get("b"), dp_ref["b"], "db", group, LEAKY_HINTS["b"],
                  {no_phi: kappa_only.sum(0), no_kappa: dphi_only.sum(0)})
    probe.compare("x", dx, dx_ref, "dx_t", "input and state", LEAKY_HINTS["x"],
                  {no_phi: kappa_only @ params["W_ih"], no_kappa: dphi_only @ params["W_ih"]})
    probe.compare("h_prev", dh_prev, dh_prev_ref, "dh_prev (both terms)", "input and state", LEAKY_HINTS["h_prev"],
                  {"da W_hh alone: the leak term dh ⊙ (1 − 1/τ) is missing": da @ params["W_hh"],
                   "dh ⊙ (1/τ) + da W_hh: the leak keeps (1 − 1/τ) of h_prev, not 1/τ": dh / tau + da @ params["W_hh"],
                   "dh + da W_hh: the leak factor (1 − 1/τ) is missing": dh + da @ params["W_hh"],
                   no_phi: dh * (1 - 1 / tau) + kappa_only @ params["W_hh"],
                   no_kappa: dh * (1 - 1 / tau) + dphi_only @ params["W_hh"]})
    probe.compare("rho", dp.get("rho"), dp_ref["rho"], "dρ", "time constant", LEAKY_HINTS["rho"], rho_slips)

    # zero everything but one term: W_hh = 0 with the same cache leaves the leak term of dh_prev alone
    no_W_hh = {k: (np.zeros_like(v) if k == "W_hh" else v) for k, v in params.items()}
    _, (dh_leak,), _ = _leaky_call(probe, no_W_hh, cache, dh)
    _, (dh_leak_ref,), _ = leaky.step_backward(no_W_hh, cache, (dh,))
    probe.compare("h_prev leak", dh_leak, dh_leak_ref, "dh_prev with W_hh = 0 (the leak term)", "leak and recurrence",
                  LEAKY_HINTS["h_prev leak"],
                  {"dh ⊙ (1/τ): the leak keeps (1 − 1/τ) of h_prev": dh / tau, "dh: the factor (1 − 1/τ) is missing": dh})
    if dh_prev is not None and dh_leak is not None and np.shape(dh_prev) == np.shape(dh_leak):
        rec = np.asarray(dh_prev, np.float64) - np.asarray(dh_leak, np.float64)
    else:
        rec = None
    probe.compare("h_prev recurrent", rec, dh_prev_ref - dh_leak_ref,
                  "dh_prev minus its leak term (the recurrent term)", "leak and recurrence", LEAKY_HINTS["h_prev recurrent"],
                  {no_phi: kappa_only @ params["W_hh"], no_kappa: dphi_only @ params["W_hh"],
                   "da W_hhᵀ: W_hh is transposed (a = h_prev W_hhᵀ gives da W_hh)": da @ params["W_hh"].T})

    # ... and τ trained directly (dτ/dτ = 1) gives dτ without the softplus chain factor
    p_direct = {k: v for k, v in params.items() if k != "rho"}
    p_direct["tau"] = tau.copy()
    cache_d = _leaky_cache(p_direct, x_t, h_prev, "direct")
    _, _, dp_d = _leaky_call(probe, p_direct, cache_d, dh)
    _, _, dp_d_ref = leaky.step_backward(p_direct, cache_d, (dh,))
    probe.compare("tau", dp_d.get("tau"), dp_d_ref["tau"], "dτ (tau_param='direct', no chain factor)",
                  "time constant", LEAKY_HINTS["tau"], tau_slips)

    through_da = {"W_ih", "W_hh", "b", "x", "h_prev", "h_prev recurrent"}
    probe.explain("da = dh ⊙ φ'(a) / τ: the error reaches a through the new input's share 1/τ and through φ'(a) "
                  "(cache[3], dphi_a)", through_da)
    probe.explain("the leak term of dh_prev: dh ⊙ (1 − 1/τ)", {"h_prev", "h_prev leak"})
    probe.explain("dτ = −Σ over the batch of dh ⊙ (φ(a) − h_prev) / τ² (τ sits in both the leak 1 − 1/τ and the "
                  "input share 1/τ)", {"tau", "rho"})

    # the step inside the library's BPTT, over a whole sequence, against finite differences
    rng = np.random.default_rng(2202)
    params = random_params(leaky.param_shapes(3, 4), rng)
    sequence_check(probe, leaky, params, rng.standard_normal((4, 2, 3)), (0.5 * rng.standard_normal((2, 4)),),
                   {"nonlinearity": "tanh", "tau_param": "softplus"}, 1, LEAKY_FORM)


# =========================================================================== 2.3
RTRL_SHAPES = "{'W_ih': (B, H, H, D), 'W_hh': (B, H, H, H), 'b': (B, H, H), 'rho': (B, H, H)}"


def _unpack_rtrl(answer):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not isinstance(answer[1], dict):
        raise BadAnswer(f"return (h, M): the new state (B, H) and a dict of influence matrices {RTRL_SHAPES}; "
                        f"your function returned {type(answer).__name__}"
                        + (f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else ""))
    return answer


def _rtrl_reference(params, x_t, h_prev, M_prev, nonlinearity):
    (h,), J_state, _, J_params = leaky.step_jacobians(params, x_t, (h_prev,), nonlinearity)
    carried = {k: np.einsum("bij,bj...->bi...", J_state, M_prev[k]) for k in M_prev}
    return h, J_params, carried


def _diff(M1, M0, k):
    if M1.get(k) is None or M0.get(k) is None or np.shape(M1[k]) != np.shape(M0[k]):
        return None
    return np.asarray(M1[k], np.float64) - np.asarray(M0[k], np.float64)


@exercise("2.3", function="leaky_rtrl_step", title="the RTRL influence update of the leaky unit",
          task="return (h, M) with M[k] = J M_prev[k] + ∂h/∂θ_k, where J = diag(1 − 1/τ) + diag(φ'(a)/τ) W_hh and "
               "the immediate terms are (φ'(a)/τ) ∂a/∂θ for W_ih, W_hh, b and δ_ik (h_prev − φ(a))/τ² sigmoid(ρ) "
               "for rho")
def check_leaky_rtrl_step(probe):
    rng = np.random.default_rng(2301)
    shapes = leaky.param_shapes(D, H)
    params = random_params(shapes, rng)
    params["rho"] = rng.uniform(-1.5, 1.5, H)
    x_t, h_prev = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H))
    M_prev = {k: 0.5 * rng.standard_normal((B, H) + s) for k, s in shapes.items()}
    M_zero = {k: np.zeros_like(v) for k, v in M_prev.items()}
    nl = "tanh"
    eye = np.eye(H)
    h_ref, immediate, carried = _rtrl_reference(params, x_t, h_prev, M_prev, nl)
    h0, M0 = _unpack_rtrl(probe.call(params, x_t, h_prev, M_zero, nonlinearity=nl))
    _, M1 = _unpack_rtrl(probe.call(params, x_t, h_prev, M_prev, nonlinearity=nl))
    tau, dtau_drho = leaky.time_constants(params)
    a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
    f = np.tanh(a)
    g = (1 - f ** 2) / tau                                                   # ∂h/∂a, per unit

    probe.compare("h", h0, h_ref, "h", "state", "h = (1 − 1/τ) h_prev + φ(a) / τ",
                  {"φ(a): the leak is missing": f, "(1/τ) h_prev + (1 − 1/τ) φ(a): the two shares are swapped":
                   h_prev / tau + (1 - 1 / tau) * f})
    # "zero everything but one term": M_prev = 0 leaves the immediate term ...
    hints = {"W_ih": "∂h_i/∂W_ih[k, j] = δ_ik (φ'(a_i)/τ_i) x_t[j]",
             "W_hh": "∂h_i/∂W_hh[k, j] = δ_ik (φ'(a_i)/τ_i) h_prev[j]",
             "b": "∂h_i/∂b_k = δ_ik φ'(a_i)/τ_i",
             "rho": "∂h_i/∂ρ_k = δ_ik (h_prev_i − φ(a_i)) / τ_i² · sigmoid(ρ_i)"}
    da_dtheta = {"W_ih": eye[None, :, :, None] * x_t[:, None, None, :],
                 "W_hh": eye[None, :, :, None] * h_prev[:, None, None, :], "b": np.broadcast_to(eye, (B, H, H))}
    for k in ("W_ih", "W_hh", "b"):
        gb = g.reshape(g.shape + (1,) * (da_dtheta[k].ndim - 2))
        alts = {"∂a/∂θ without the factor φ'(a)/τ": da_dtheta[k],
                "φ'(a) ∂a/∂θ: the factor 1/τ is missing": gb * tau.reshape((1, H) + (1,) * (gb.ndim - 2)) * da_dtheta[k],
                "(1/τ) ∂a/∂θ: the factor φ'(a) is missing": (1 / tau).reshape((1, H) + (1,) * (gb.ndim - 2))
                * da_dtheta[k]}
        probe.compare(f"{k} immediate", M0.get(k), immediate[k], f"M[{k}] immediate term (M_prev = 0)",
                      "immediate term", hints[k], alts)
    dtau_diag = (h_prev - f) / tau ** 2
    probe.compare("rho immediate", M0.get("rho"), immediate["rho"], "M[rho] immediate term (M_prev = 0)",
                  "immediate term", hints["rho"],
                  {"the value without the chain factor sigmoid(ρ) (that is ∂h/∂τ)": dtau_diag[:, :, None] * eye,
                   "the value with softplus(ρ) instead of its derivative sigmoid(ρ)":
                   (dtau_diag * (tau - 1))[:, :, None] * eye,
                   "a full (B, H, H) block: ρ_k acts on unit k only, so the immediate term is diagonal":
                   np.broadcast_to(dtau_diag * dtau_drho, (B, H))[:, :, None] * np.ones(H)})
    # ... the difference of two calls is the carried term J M_prev; W_hh = 0 keeps only its leak diagonal
    no_W_hh = {k: (np.zeros_like(v) if k == "W_hh" else v) for k, v in params.items()}
    _, Mn0 = _unpack_rtrl(probe.call(no_W_hh, x_t, h_prev, M_zero, nonlinearity=nl))
    _, Mn1 = _unpack_rtrl(probe.call(no_W_hh, x_t, h_prev, M_prev, nonlinearity=nl))
    leak = (1 - 1 / tau)
    for k in shapes:
        lb = leak.reshape((1, H) + (1,) * (M_prev[k].ndim - 2))
        got_leak = _diff(Mn1, Mn0, k)
        probe.compare(f"{k} carried leak", got_leak, lb * M_prev[k], f"M[{k}] carried term with W_hh = 0",
                      "carried: leak diagonal", "the leak part of J is diag(1 − 1/τ): carried = (1 − 1/τ) ⊙ M_prev",
                      {"M_prev itself: the factor (1 − 1/τ) is missing": M_prev[k],
                       "(1/τ) ⊙ M_prev: the leak keeps (1 − 1/τ)": (1 - lb) * M_prev[k]})
        got_full = _diff(M1, M0, k)
        got_rec = None if got_full is None or got_leak is None else got_full - got_leak
        gb = g.reshape(g.shape + (1,) * (M_prev[k].ndim - 2))
        W_M = np.einsum("ij,bj...->bi...", params["W_hh"], M_prev[k])
        probe.compare(f"{k} carried recurrent", got_rec, carried[k] - lb * M_prev[k],
                      f"M[{k}] carried term minus its leak part", "carried: through W_hh",
                      "the recurrent part of J M_prev: (φ'(a)/τ) ⊙ (W_hh M_prev)",
                      {"W_hh M_prev without the factor φ'(a)/τ": W_M,
                       "φ'(a) ⊙ (W_hh M_prev): the factor 1/τ is missing":
                       (gb * tau.reshape((1, H) + (1,) * (gb.ndim - 2))) * W_M,
                       "(1/τ) ⊙ (W_hh M_prev): the factor φ'(a) is missing":
                       (1 / tau).reshape((1, H) + (1,) * (gb.ndim - 2)) * W_M,
                       "(φ'(a)/τ) ⊙ (W_hhᵀ M_prev): W_hh is transposed":
                       gb * np.einsum("ji,bj...->bi...", params["W_hh"], M_prev[k])})
    imm_g = {"W_ih immediate", "W_hh immediate", "b immediate"}
    rec = {f"{k} carried recurrent" for k in shapes}
    probe.explain("g = φ'(a)/τ, the factor by which a moves h (tanh: φ'(a) = 1 − φ(a)²; leaky ReLU: 1 or 0.01)",
                  imm_g | rec)
    probe.explain("the leak diagonal of J: diag(1 − 1/τ)", {f"{k} carried leak" for k in shapes})
    probe.explain("J = diag(1 − 1/τ) + diag(φ'(a)/τ) W_hh, applied to M_prev on the unit axis",
                  {f"{k} carried {part}" for k in shapes for part in ("leak", "recurrent")})

    # the whole sequence: accumulate dL/dθ += dy_t · M_t with the student's step; compare with BPTT
    rng = np.random.default_rng(2302)
    T, b_, d_, h_ = 4, 2, 3, 3
    params = random_params(leaky.param_shapes(d_, h_), rng)
    x, h0 = rng.standard_normal((T, b_, d_)), 0.5 * rng.standard_normal((b_, h_))
    dy = rng.standard_normal((T, b_, h_))
    _, _, cache = bptt.forward(leaky, params, x, (h0,), nonlinearity="leaky_relu")
    want = bptt.backward(leaky, params, cache, dy)
    M = {k: np.zeros((b_, h_) + v.shape) for k, v in params.items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    h = h0
    for t in range(T):
        h, M = _unpack_rtrl(probe.call(params, x[t], h, M, nonlinearity="leaky_relu"))
        for k in grads:
            if M.get(k) is not None and np.shape(M[k]) == (b_, h_) + params[k].shape:
                grads[k] += np.einsum("bi,bi...->...", dy[t], M[k])
    for k, got in grads.items():
        probe.compare(f"sequence {k}", got, want[k], f"dL/d{k}", "whole sequence vs BPTT (leaky ReLU)",
                      localise=False)

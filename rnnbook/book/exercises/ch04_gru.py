r"""Chapter 4 (GRU): the step backward in both placements of the reset gate, diagnosed gate by gate.

Besides comparing every gate's block of every parameter gradient with the
reference, the checker isolates each path into ``dx_t`` and ``dh_prev`` by zeroing
every block of ``W_ih`` (or ``W_hh``) but one and running the step again
("zero everything but one term"): with only ``W_hz`` left, ``dh_prev`` is the
direct term ``dh ⊙ z`` plus the path through the update gate, and nothing else.
"""
from __future__ import annotations

import numpy as np

from ...numpy_ref import gru
from ..grading import exercise
from .common import random_params, sequence_check, unpack_step_backward

B, D, H = 3, 4, 5
GATES = ("r", "z", "n")
GROUP = {"r": "reset gate r", "z": "update gate z", "n": "candidate n"}
STEP_FORM = "(dx_t, (dh_prev,), {'W_ih': ..., 'W_hh': ..., 'b_ih': ..., 'b_hh': ...})"


def _rows(g):
    i = GATES.index(g)
    return slice(i * H, (i + 1) * H)


def _keep_blocks(params, name, keep):
    """A copy of ``params`` whose ``name`` is zero outside the row blocks of the gates in ``keep``."""
    p = {k: v.copy() for k, v in params.items()}
    for g in GATES:
        if g not in keep:
            p[name][_rows(g)] = 0.0
    return p


def _run(probe, params, x_t, h_prev, dh, reset_after):
    _, cache = gru.step_forward(params, x_t, (h_prev,), reset_after=reset_after)
    ref = gru.step_backward(params, cache, (dh,))
    got = unpack_step_backward(probe, probe.call(params, cache, (dh,)), 1, STEP_FORM, record=False)
    return got, ref


def _hints(reset_after):
    h = {}
    for g in GATES:
        h[f"W_ih[{g}]"] = f"dW_i{g} = da_{g}ᵀ x_t"
        h[f"b_ih[{g}]"] = f"db_i{g} = Σ over the batch of da_{g}"
        h[f"x via {g}"] = f"dx_t = … + da_{g} W_i{g}"
    for g in "rz":
        h[f"W_hh[{g}]"] = f"dW_h{g} = da_{g}ᵀ h_prev"
        h[f"b_hh[{g}]"] = f"db_h{g} = Σ over the batch of da_{g}"
        h[f"h_prev via {g}"] = f"dh_prev = … + da_{g} W_h{g}"
    if reset_after:
        h["W_hh[n]"] = "dW_hn = dgh_nᵀ h_prev, with dgh_n = da_n ⊙ r"
        h["b_hh[n]"] = "db_hn = Σ over the batch of dgh_n, with dgh_n = da_n ⊙ r"
        h["h_prev via n"] = "dh_prev = … + dgh_n W_hn, with dgh_n = da_n ⊙ r"
    else:
        h["W_hh[n]"] = "dW_hn = da_nᵀ (r ⊙ h_prev)"
        h["b_hh[n]"] = "db_hn = Σ over the batch of da_n"
        h["h_prev via n"] = "dh_prev = … + (da_n W_hn) ⊙ r"
    h["h_prev direct"] = "dh_prev = dh ⊙ z + … (h = (1 − z) ⊙ n + z ⊙ h_prev)"
    return h


def _explanations(probe, reset_after):
    def gate(g):
        return {f"{p}[{g}]" for p in ("W_ih", "W_hh", "b_ih", "b_hh")} | {f"x via {g}", f"h_prev via {g}"}
    R, Z, N = gate("r"), gate("z"), gate("n")
    probe.explain("the update gate's local gradient: dz = dh ⊙ (h_prev − n) and da_z = dz ⊙ z ⊙ (1 − z)", Z)
    probe.explain("the candidate's local gradient: dn = dh ⊙ (1 − z) and da_n = dn ⊙ (1 − n²) "
                  "(an error there reaches the reset gate too, through dr)", N | R)
    probe.explain("the direct term of dh_prev: dh ⊙ z (h = (1 − z) ⊙ n + z ⊙ h_prev)",
                  {"h_prev direct", "h_prev via r", "h_prev via z", "h_prev via n"})
    probe.explain("dx_t = [da_r | da_z | da_n] W_ih (the product, or a transposed W_ih)", {f"x via {g}" for g in GATES})
    if reset_after:
        probe.explain("the reset gate's local gradient: dr = da_n ⊙ gh_n (gh_n = h_prev W_hnᵀ + b_hn) "
                      "and da_r = dr ⊙ r ⊙ (1 − r)", R)
        probe.explain("dgh_n = da_n ⊙ r, the gradient of the hidden part of the candidate",
                      {"W_hh[n]", "b_hh[n]", "h_prev via n"})
    else:
        probe.explain("the reset gate's local gradient: dr = d(r ⊙ h_prev) ⊙ h_prev and da_r = dr ⊙ r ⊙ (1 − r)", R)
        probe.explain("d(r ⊙ h_prev) = da_n W_hn, which feeds both dr and dh_prev", R | {"h_prev via n"})
        probe.explain("the r ⊙ in the n-path of dh_prev: dh_prev = … + d(r ⊙ h_prev) ⊙ r",
                      {"h_prev via n", "h_prev via r"})


def check_gru_step_backward(probe, reset_after: bool):
    rng = np.random.default_rng(401 if reset_after else 402)
    params = random_params(gru.param_shapes(D, H), rng)
    x_t, h_prev, dh = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H)), rng.standard_normal((B, H))
    hints = _hints(reset_after)

    # the full step: the form, then every gate's block of every parameter gradient
    _, cache = gru.step_forward(params, x_t, (h_prev,), reset_after=reset_after)
    unpack_step_backward(probe, probe.call(params, cache, (dh,)), 1, STEP_FORM)
    (dx, (dh_prev,), dp), (dx_ref, (dh_prev_ref,), dp_ref) = _run(probe, params, x_t, h_prev, dh, reset_after)
    for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
        got = dp.get(name)
        if got is None or np.shape(got) != dp_ref[name].shape:      # one finding for the whole array
            probe.compare(name, got, dp_ref[name], f"d{name}", "shapes", localise=False)
            continue
        got = np.asarray(got, np.float64)
        for g in GATES:
            rows = _rows(g)
            label = (f"d{name} rows {rows.start}..{rows.stop - 1}" if name.startswith("W")
                     else f"d{name}[{rows.start}:{rows.stop}]")
            probe.compare(f"{name}[{g}]", got[rows], dp_ref[name][rows], label, GROUP[g], hints[f"{name}[{g}]"])
    probe.compare("x", dx, dx_ref, "dx_t (all paths)", "inputs and state", localise=False)
    probe.compare("h_prev", dh_prev, dh_prev_ref, "dh_prev (all paths)", "inputs and state", localise=False)

    # zero everything but one term: one block of W_ih alive isolates one path into dx_t ...
    for g in GATES:
        (dx_g, _, _), (dx_g_ref, _, _) = _run(probe, _keep_blocks(params, "W_ih", {g}), x_t, h_prev, dh, reset_after)
        probe.compare(f"x via {g}", dx_g, dx_g_ref, f"dx_t with only W_i{g} ≠ 0", GROUP[g], hints[f"x via {g}"])
    # ... W_hh = 0 leaves the direct term of dh_prev alone, one block of W_hh adds one path
    (_, (d0,), _), (_, (d0_ref,), _) = _run(probe, _keep_blocks(params, "W_hh", set()), x_t, h_prev, dh, reset_after)
    probe.compare("h_prev direct", d0, d0_ref, "dh_prev with W_hh = 0", "direct path", hints["h_prev direct"])
    for g in GATES:
        # before the product, r acts only through W_hn: keep that block alive to see the path through r
        keep = {g, "n"} if (g == "r" and not reset_after) else {g}
        only = " and ".join(f"W_h{k}" for k in sorted(keep, key=GATES.index))
        (_, (dg,), _), (_, (dg_ref,), _) = _run(probe, _keep_blocks(params, "W_hh", keep), x_t, h_prev, dh,
                                                reset_after)
        probe.compare(f"h_prev via {g}", dg, dg_ref, f"dh_prev with only {only} ≠ 0", GROUP[g],
                      hints[f"h_prev via {g}"])
    _explanations(probe, reset_after)

    # the step inside the library's BPTT, over a whole sequence, against finite differences
    rng = np.random.default_rng(403)
    params = random_params(gru.param_shapes(3, 4), rng)
    sequence_check(probe, gru, params, rng.standard_normal((4, 2, 3)), (0.5 * rng.standard_normal((2, 4)),),
                   {"reset_after": reset_after}, 1, STEP_FORM)


@exercise("4.1", function="gru_step_backward", title="backward of one GRU step, reset after the product (PyTorch)",
          task="from cache = (x_t, h_prev, r, z, n, gh_n, reset_after) and dstate = (dh,), return "
               "(dx_t, (dh_prev,), {'W_ih', 'W_hh', 'b_ih', 'b_hh'}) for n = tanh(gi_n + r ⊙ gh_n)")
def check_gru_after(probe):
    check_gru_step_backward(probe, reset_after=True)


@exercise("4.2", function="gru_step_backward_original", title="backward of one GRU step, reset before the product "
          "(Cho et al. 2014)",
          task="from cache = (x_t, h_prev, r, z, n, None, reset_after) and dstate = (dh,), return "
               "(dx_t, (dh_prev,), {'W_ih', 'W_hh', 'b_ih', 'b_hh'}) for n = tanh(gi_n + (r ⊙ h_prev) W_hnᵀ + b_hn)")
def check_gru_before(probe):
    check_gru_step_backward(probe, reset_after=False)

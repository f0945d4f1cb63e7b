r"""Chapter 1 (Elman RNN): the step backward, the RTRL influence update, clipping by global norm."""
from __future__ import annotations

import numpy as np

from ...clipping import clip_by_global_norm
from ...numpy_ref import bptt, rnn
from ..grading import BadAnswer, exercise
from .common import random_params, sequence_check, unpack_step_backward

B, D, H = 3, 4, 5            # D != H, so a transposed W_ih or dx shows up in the shapes
STEP_FORM = "(dx_t, (dh_prev,), {'W_ih': dW_ih, 'W_hh': dW_hh, 'b': db})"


# =========================================================================== 1.1
@exercise("1.1", function="rnn_step_backward", title="backward pass of one Elman step",
          task="from cache = (x_t, h_prev, dphi_a) and dstate = (dh,), compute da = dh * dphi_a and return "
               "(dx_t, (dh_prev,), {'W_ih': dW_ih, 'W_hh': dW_hh, 'b': db})")
def check_rnn_step_backward(probe):
    rng = np.random.default_rng(101)
    params = random_params(rnn.param_shapes(D, H), rng)
    x_t, h_prev, dh = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H)), rng.standard_normal((B, H))
    _, cache = rnn.step_forward(params, x_t, (h_prev,), nonlinearity="tanh")
    dx_ref, (dh_prev_ref,), dp_ref = rnn.step_backward(params, cache, (dh,))
    dx, (dh_prev,), dp = unpack_step_backward(probe, probe.call(params, cache, (dh,)), 1, STEP_FORM)

    # the answers a slip would give, to name the slip
    no_dphi = {"W_ih": dh.T @ x_t, "W_hh": dh.T @ h_prev, "b": dh.sum(0), "x": dh @ params["W_ih"],
               "h_prev": dh @ params["W_hh"]}
    slip = "the value with da = dh: the factor φ'(a) (cache[2], dphi_a) is missing"
    da = dh * cache[2]
    group = "parameters"
    probe.compare("W_ih", dp.get("W_ih"), dp_ref["W_ih"], "dW_ih", group, "dW_ih = daᵀ x_t",
                  {slip: no_dphi["W_ih"]})
    probe.compare("W_hh", dp.get("W_hh"), dp_ref["W_hh"], "dW_hh", group, "dW_hh = daᵀ h_prev",
                  {slip: no_dphi["W_hh"], "daᵀ h (the new state instead of h_prev)": da.T @ np.tanh(
                      x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"])})
    probe.compare("b", dp.get("b"), dp_ref["b"], "db", group, "db = Σ over the batch of da",
                  {slip: no_dphi["b"]})
    group = "inputs and state"
    probe.compare("x", dx, dx_ref, "dx_t", group, "dx_t = da W_ih", {slip: no_dphi["x"]})
    probe.compare("h_prev", dh_prev, dh_prev_ref, "dh_prev", group, "dh_prev = da W_hh",
                  {slip: no_dphi["h_prev"],
                   "da W_hhᵀ: W_hh is transposed (a = h_prev W_hhᵀ gives dh_prev = da W_hh)": da @ params["W_hh"].T})
    probe.explain("da = dh ⊙ φ'(a), where φ'(a) is cache[2] (dphi_a)", {"W_ih", "W_hh", "b", "x", "h_prev"})

    # the same step inside the library's BPTT, over a whole sequence, against finite differences
    rng = np.random.default_rng(102)
    params = random_params(rnn.param_shapes(3, 4), rng)
    sequence_check(probe, rnn, params, rng.standard_normal((4, 2, 3)), (0.5 * rng.standard_normal((2, 4)),),
                   {"nonlinearity": "tanh"}, 1, STEP_FORM)


# =========================================================================== 1.2
def _rtrl_reference(params, x_t, h_prev, M_prev, nonlinearity):
    """``h`` and the two parts of ``M_t = J_t M_{t-1} + ∂F/∂θ`` from the reference Jacobians."""
    (h,), J_state, _, J_params = rnn.step_jacobians(params, x_t, (h_prev,), nonlinearity)
    carried = {k: np.einsum("bij,bj...->bi...", J_state, M_prev[k]) for k in M_prev}
    return h, J_params, carried


def _unpack_rtrl(answer):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not isinstance(answer[1], dict):
        raise BadAnswer("return (h, M): the new state (B, H) and a dict of influence matrices "
                        "{'W_ih': (B, H, H, D), 'W_hh': (B, H, H, H), 'b': (B, H, H)}; your function returned "
                        f"{type(answer).__name__}" + (f" of length {len(answer)}" if isinstance(answer, (tuple, list))
                                                      else ""))
    return answer


@exercise("1.2", function="rnn_rtrl_step", title="the RTRL influence update of the Elman cell",
          task="return (h, M) with h = φ(a) and M[k] = D ⊙ (W_hh M_prev[k] + ∂a/∂θ_k) for k in W_ih, W_hh, b, "
               "where D = φ'(a) per unit; M[k] has shape (B, H) + shape of θ_k")
def check_rnn_rtrl_step(probe):
    rng = np.random.default_rng(201)
    params = random_params(rnn.param_shapes(D, H), rng)
    x_t, h_prev = rng.standard_normal((B, D)), 0.8 * rng.standard_normal((B, H))
    shapes = rnn.param_shapes(D, H)
    M_prev = {k: 0.5 * rng.standard_normal((B, H) + s) for k, s in shapes.items()}
    M_zero = {k: np.zeros_like(v) for k, v in M_prev.items()}
    every = set()
    for nl in ("tanh", "relu"):
        h_ref, immediate, carried = _rtrl_reference(params, x_t, h_prev, M_prev, nl)
        h0, M0 = _unpack_rtrl(probe.call(params, x_t, h_prev, M_zero, nonlinearity=nl))
        h1, M1 = _unpack_rtrl(probe.call(params, x_t, h_prev, M_prev, nonlinearity=nl))
        a = x_t @ params["W_ih"].T + h_prev @ params["W_hh"].T + params["b"]
        Dg = 1 - h_ref ** 2 if nl == "tanh" else (a > 0).astype(float)
        eye = np.eye(H)
        group = f"{nl} units"
        probe.compare(f"h ({nl})", h0, h_ref, "h", group, "h = φ(x_t W_ihᵀ + h_prev W_hhᵀ + b)")
        # "zero everything but one term": M_prev = 0 leaves the immediate term alone ...
        no_D = {"W_ih": eye[None, :, :, None] * x_t[:, None, None, :],
                "W_hh": eye[None, :, :, None] * h_prev[:, None, None, :], "b": np.broadcast_to(eye, (B, H, H))}
        hints = {"W_ih": "∂h_i/∂W_ih[k, j] = D_i δ_ik x_t[j]", "W_hh": "∂h_i/∂W_hh[k, j] = D_i δ_ik h_prev[j]",
                 "b": "∂h_i/∂b_k = D_i δ_ik"}
        for k in shapes:
            alts = {"∂a/∂θ without the factor D = φ'(a)": no_D[k]}
            if k == "W_hh":
                alts["D_i δ_ik h[j] with the new h instead of h_prev"] = \
                    Dg[:, :, None, None] * eye[None, :, :, None] * h_ref[:, None, None, :]
            probe.compare(f"{k} immediate ({nl})", None if M0.get(k) is None else M0[k], immediate[k],
                          f"M[{k}] immediate term (M_prev = 0)", group, hints[k], alts)
        # ... and the difference of two calls is the carried term, which is linear in M_prev
        for k in shapes:
            got = None if M1.get(k) is None or M0.get(k) is None else np.asarray(M1[k]) - np.asarray(M0[k])
            alts = {"W_hh M_prev without the factor D = φ'(a)":
                    np.einsum("ij,bj...->bi...", params["W_hh"], M_prev[k]),
                    "D ⊙ (W_hhᵀ M_prev): W_hh is transposed":
                    np.einsum("bi,ji,bj...->bi...", Dg, params["W_hh"], M_prev[k])}
            probe.compare(f"{k} carried ({nl})", got, carried[k], f"M[{k}] carried term", group,
                          "carried term = D ⊙ (W_hh M_prev) (per sample: Σ_j D_i W_hh[i, j] M_prev[j, …])", alts)
        terms = {f"{k} {part} ({nl})" for k in shapes for part in ("immediate", "carried")}
        every |= terms
        probe.explain(f"D = φ'(a) for {nl} units ({'1 − h²' if nl == 'tanh' else '1 where a > 0, else 0'})", terms)
    probe.explain("D = φ'(a) (tanh: 1 − h², relu: 1 where a > 0)", every)
    probe.explain("the carried term D ⊙ (W_hh M_prev)", {f"{k} carried ({nl})" for k in shapes
                                                          for nl in ("tanh", "relu")})

    # the whole sequence: accumulate dL/dθ += dy_t · M_t with the student's step; compare with BPTT
    rng = np.random.default_rng(202)
    T, b_, d_, h_ = 4, 2, 3, 3
    params = random_params(rnn.param_shapes(d_, h_), rng)
    x, h0 = rng.standard_normal((T, b_, d_)), 0.5 * rng.standard_normal((b_, h_))
    dy = rng.standard_normal((T, b_, h_))
    _, _, cache = bptt.forward(rnn, params, x, (h0,), nonlinearity="tanh")
    want = bptt.backward(rnn, params, cache, dy)
    M = {k: np.zeros((b_, h_) + v.shape) for k, v in params.items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    h = h0
    for t in range(T):
        h, M = _unpack_rtrl(probe.call(params, x[t], h, M, nonlinearity="tanh"))
        for k in grads:
            if M.get(k) is not None and np.shape(M[k]) == (b_, h_) + params[k].shape:
                grads[k] += np.einsum("bi,bi...->...", dy[t], M[k])
    for k in grads:
        probe.compare(f"sequence {k}", grads[k], want[k], f"dL/d{k}", "whole sequence vs BPTT",
                      localise=False)


# =========================================================================== 1.3
def _flat(d, keys):
    return np.concatenate([np.ravel(np.asarray(d[k], np.float64)) for k in keys])


def _unpack_clip(answer):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2 or not isinstance(answer[0], dict):
        raise BadAnswer("return (clipped, norm): a new dict of arrays and the global norm before clipping; "
                        f"your function returned {type(answer).__name__}")
    return answer


@exercise("1.3", function="clip_global_norm", title="gradient clipping by global norm",
          task="return (clipped, norm): norm = sqrt(Σ_k Σ g_k²) over every array of grads, and a new dict "
               "with every array scaled by min(1, max_norm / norm); leave grads itself unchanged")
def check_clip_global_norm(probe):
    rng = np.random.default_rng(301)
    grads = {"W_ih": rng.standard_normal((5, 4)), "W_hh": 2 * rng.standard_normal((5, 5)),
             "b": rng.standard_normal(5)}
    keys = list(grads)
    flat = _flat(grads, keys)
    norm = float(np.sqrt(np.sum(flat ** 2)))
    per_array = {k: float(np.linalg.norm(v)) for k, v in grads.items()}
    norm_alts = {"the sum of the per-array norms (the global norm is sqrt(Σ_k ‖g_k‖²))": sum(per_array.values()),
                 "the squared norm (the square root is missing)": norm ** 2,
                 "the largest per-array norm": max(per_array.values())}

    # above the threshold: every array scaled by the same factor c / ‖g‖ (the library's function is the oracle)
    c = 0.25 * norm
    ref_above, ref_norm = clip_by_global_norm(grads, c)
    kept = {k: v.copy() for k, v in grads.items()}
    clipped, got_norm = _unpack_clip(probe.call(kept, c, copy_args=False))
    probe.expect("keys", set(clipped) == set(grads), f"clipped has keys {sorted(clipped)}, expected {sorted(grads)}",
                 "the same keys as grads", "form", localise=False)
    probe.expect("inputs unchanged", all(np.array_equal(kept[k], grads[k]) for k in keys),
                 "grads was modified in place", "grads left unchanged", "form",
                 "build new arrays (g * scale); do not scale in place (g *= scale)")
    probe.compare("norm", got_norm, ref_norm, "norm returned", "global norm",
                  "‖g‖ = sqrt(Σ_k Σ g_k²) over every entry of every array", norm_alts)
    if set(clipped) == set(grads):
        per = {k: grads[k] * min(1.0, c / per_array[k]) for k in keys}
        probe.compare("above", _flat(clipped, keys), _flat(ref_above, keys), "clipped, when ‖g‖ > max_norm",
                      "clipping", "scale every array by max_norm / ‖g‖ (one factor for all: the direction is kept)",
                      {"each array clipped to max_norm by its own norm (the global norm takes all arrays together)":
                       _flat(per, keys),
                       "clipping entry by entry (that is clipping by value)": np.clip(flat, -c, c),
                       "g scaled by ‖g‖ / max_norm (the factor is upside down)": flat * (norm / c)})
        # below the threshold: nothing changes (min(1, ...))
        clipped_low, _ = _unpack_clip(probe.call(grads, 3 * norm))
        probe.compare("below", _flat(clipped_low, keys) if set(clipped_low) == set(grads) else None,
                      _flat(clip_by_global_norm(grads, 3 * norm)[0], keys),
                      "clipped, when ‖g‖ < max_norm (must be unchanged)", "clipping",
                      "the factor is min(1, max_norm / ‖g‖): small gradients are not scaled up",
                      {"g scaled up to the threshold (the min(1, …) is missing)": flat * (3.0)})
        # an all-zero gradient: nothing to scale, and no 0/0
        zeros = {k: np.zeros_like(v) for k, v in grads.items()}
        clipped_zero, norm_zero = _unpack_clip(probe.call(zeros, 1.0))
        probe.compare("zero", _flat(clipped_zero, keys) if set(clipped_zero) == set(grads) else None,
                      _flat(clip_by_global_norm(zeros, 1.0)[0], keys), "clipped, when every gradient is zero",
                      "clipping",
                      "when ‖g‖ = 0 there is nothing to scale: avoid 0 / 0")
        probe.compare("zero norm", norm_zero, 0.0, "norm of an all-zero gradient", "global norm", "‖0‖ = 0")
    probe.explain("the global norm ‖g‖ = sqrt(Σ_k Σ g_k²)", {"norm", "above"})


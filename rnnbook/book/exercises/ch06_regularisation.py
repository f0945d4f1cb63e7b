r"""Chapter 6 (regularisation and optimisation): variational dropout, DropConnect's weight gradient,
the cubic sparsity schedule, the magnitude mask and NT-ASGD's trigger.

The answers here are not unique arrays: a student may draw a dropout mask with
``rng.random`` or ``rng.binomial``, so the dropout checker does not compare with
one reference draw.  It reads the mask *out of the answer* instead (with ``x`` and
``dy`` free of zeros, ``m = y / x`` is the forward mask and ``dx / dy`` the backward
one) and checks the properties that define variational dropout one at a time:
tied over time, one mask per sequence, entries ``0`` or ``1/(1 − p)``, a drop rate
near ``p``, the same mask in the backward pass, drawn from the given generator.
The other checkers compare with the library (``rnnbook.regularize``) and list the
usual slips as alternatives, so that a wrong answer is named by its slip.
"""
from __future__ import annotations

import numpy as np

from ... import dispatch
from ...regularize import dropconnect, ntasgd, pruning
from ..grading import BadAnswer, StudentCrash, exercise


# =========================================================================== 6.1
def _unpack_pair(answer, what):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        got = f"a {type(answer).__name__}" + (f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else "")
        raise BadAnswer(f"return {what}; your function returned {got}")
    return answer


def _nonzero_values(m, tol=1e-9):
    """The distinct non-zero values of ``m`` (up to ``tol``), sorted."""
    v = np.sort(np.abs(m[np.abs(m) > tol]).ravel())
    if v.size == 0:
        return []
    out = [v[0]]
    for a in v[1:]:
        if a - out[-1] > tol * max(1.0, a):
            out.append(a)
    return out


@exercise("6.1", function="variational_dropout", title="variational (tied) dropout, forward and backward",
          task="draw ONE mask m of shape (1, B, D) from rng with entries ξ/(1 − p), ξ ~ Bernoulli(1 − p), and "
               "return (y, dx) = (x ⊙ m, dy ⊙ m), the same m at every time step")
def check_variational_dropout(probe):
    T, B, D, p = 6, 40, 50, 0.3
    rng = np.random.default_rng(601)
    x = rng.uniform(0.5, 1.5, (T, B, D)) * rng.choice([-1.0, 1.0], (T, B, D))     # no zeros: m = y / x
    dy = rng.uniform(0.5, 1.5, (T, B, D)) * rng.choice([-1.0, 1.0], (T, B, D))
    form = "(y, dx): y = x ⊙ m and dx = dy ⊙ m, both of the shape of x (T, B, D)"
    y, dx = _unpack_pair(probe.call(x, dy, p, np.random.default_rng(11)), form)
    y, dx = np.asarray(y, np.float64), np.asarray(dx, np.float64)
    for name, a in (("y", y), ("dx", dx)):
        if a.shape != x.shape:
            raise BadAnswer(f"{name} has shape {a.shape}, expected {x.shape} (the shape of x): the mask (1, B, D) "
                            f"broadcasts over the T steps")
    scale = 1.0 / (1.0 - p)
    m = y / x                                  # the mask the forward pass used, (T, B, D)
    mb = dx / dy                               # the mask the backward pass used
    m0 = m[0]                                  # step 0's mask, (B, D)

    g = "the mask"
    tied = bool(np.allclose(m, m0[None], rtol=1e-9, atol=1e-12))
    changed = int(np.sum(np.any(~np.isclose(m, m0[None], rtol=1e-9, atol=1e-12), axis=(1, 2))))
    probe.expect("tied", tied, f"mask resampled per step: it changes from step 0 at {changed} of the {T - 1} later "
                 "steps; that is standard (Zaremba) dropout. Draw one mask of shape (1, B, D) and let it broadcast "
                 "over the T steps", "the same mask at every time step", g,
                 "one mask per sequence, m of shape (1, B, D), shared by every step t")
    rows_equal = bool(np.allclose(m0, m0[:1], rtol=1e-9, atol=1e-12))
    probe.expect("per sequence", not rows_equal, "every sequence of the batch has the same mask: draw m of shape "
                 "(1, B, D), one row per sequence, not (1, 1, D)", "a different mask for each sequence", g,
                 "m has shape (1, B, D): sequence b gets its own row m[0, b]")
    cols_equal = bool(np.allclose(m0, m0[:, :1], rtol=1e-9, atol=1e-12))
    probe.expect("per unit", not cols_equal, "each sequence drops all of its units or none: draw one value per "
                 "unit, m of shape (1, B, D), not (1, B, 1)", "a different draw for each unit", g,
                 "m has shape (1, B, D): unit d of sequence b is one draw")

    g = "mask values"
    kept = _nonzero_values(m0)
    if len(kept) == 1 and abs(kept[0] - scale) <= 1e-9 * scale:
        ok, detail = True, ""
    elif len(kept) == 1 and abs(kept[0] - 1.0) <= 1e-9:
        ok, detail = False, (f"missing inverted scaling: the kept units are multiplied by 1, so E[y] = (1 − p) x; "
                             f"divide the kept entries by 1 − p (m = ξ / (1 − p) = {scale:.4g} for p = {p})")
    elif len(kept) == 1 and abs(kept[0] - (1 - p)) <= 1e-9:
        ok, detail = False, (f"the kept units are multiplied by 1 − p = {1 - p:.4g}; inverted dropout divides by it: "
                             f"m = ξ / (1 − p) = {scale:.4g}")
    elif not kept:
        ok, detail = False, "the mask is zero everywhere: every unit is dropped"
    else:
        shown = ", ".join(f"{v:.4g}" for v in kept[:4]) + (", …" if len(kept) > 4 else "")
        ok, detail = False, (f"the kept entries take {len(kept)} different values ({shown}); every kept entry of the "
                             f"mask is 1/(1 − p) = {scale:.4g}")
    probe.expect("scale", ok, detail, "kept entries are 1/(1 − p)", g,
                 "inverted dropout: m = ξ / (1 − p), so that E[m] = 1 and evaluation needs no rescaling")
    rate = float(np.mean(np.abs(m0) <= 1e-12))
    n = m0.size if not (rows_equal or cols_equal) else (m0.shape[1] if rows_equal else m0.shape[0])   # draws made
    sigma = np.sqrt(p * (1 - p) / n)
    if abs(rate - p) <= 5 * sigma:
        ok, detail = True, ""
    elif abs(rate - (1 - p)) <= 5 * sigma:
        ok, detail = False, (f"{rate:.1%} of the units are dropped, about 1 − p: p is the probability of DROPPING a "
                             f"unit, so keep it when the uniform draw is ≥ p (ξ ~ Bernoulli(1 − p))")
    else:
        ok, detail = False, f"{rate:.1%} of the units of the mask are dropped; expected about p = {p:.0%}"
    probe.expect("rate", ok, detail, f"about p = {p:.0%} of the units dropped", g,
                 "ξ ~ Bernoulli(1 − p): drop a unit with probability p")

    g = "backward"
    same = bool(np.allclose(mb, m, rtol=1e-9, atol=1e-12))
    if same:
        detail = ""
    elif np.allclose(mb, 1.0):
        detail = "mask not applied in backward: dx = dy, but y = x ⊙ m gives dx = dy ⊙ m (a dropped unit passes no gradient)"
    elif np.allclose(mb, (np.abs(m) > 1e-12).astype(float)):
        detail = "dx = dy ⊙ ξ: the backward mask lacks the factor 1/(1 − p) that the forward mask has"
    elif np.allclose(mb * (1 - p), m) or np.allclose(mb, m * m):
        detail = "the mask is applied twice in the backward pass (or scaled twice): dx = dy ⊙ m exactly once"
    else:
        detail = ("the backward pass uses a different mask from the forward pass (a second draw?): "
                  "keep the forward's m and reuse it, dx = dy ⊙ m")
    probe.expect("backward", same, detail, "dx = dy ⊙ m with the forward's mask", g,
                 "y = x ⊙ m with m held fixed, so dx = dy ⊙ m")

    g = "randomness"
    y_again, _ = _unpack_pair(probe.call(x, dy, p, np.random.default_rng(11)), form)
    probe.expect("seeded", np.array_equal(np.asarray(y_again, np.float64), y),
                 "two calls with generators seeded alike gave different masks: draw from the rng argument, not "
                 "from np.random's global state", "the same seed gives the same mask", g,
                 "draw with the generator you are given, e.g. rng.random((1, B, D))", localise=False)
    y_other, _ = _unpack_pair(probe.call(x, dy, p, np.random.default_rng(12)), form)
    probe.expect("fresh", not np.array_equal(np.asarray(y_other, np.float64), y),
                 "generators with different seeds gave the same mask: the mask must be drawn from rng, each call a "
                 "new draw", "another seed gives another mask", g,
                 "draw with the generator you are given, e.g. rng.random((1, B, D))", localise=False)
    y0, dx0 = _unpack_pair(probe.call(x, dy, 0.0, np.random.default_rng(13)), form)
    probe.expect("p = 0", np.allclose(np.asarray(y0, np.float64), x) and np.allclose(np.asarray(dx0, np.float64), dy),
                 "with p = 0 nothing may be dropped or scaled: y = x and dx = dy", "p = 0 is the identity", g,
                 "m = ξ / (1 − p) with ξ = 1 always when p = 0")
    probe.explain("the shape of the mask: one draw per sequence and unit, m of shape (1, B, D), broadcast over T",
                  {"tied", "per sequence", "per unit"})


# =========================================================================== 6.2
ARCHS = (("rnn", {}), ("lstm", {}))
DC_FORM = "(y, grads): the output (T, B, H) and rb.backward's dict (every parameter, 'x' and 'state0')"


def _dc_problem(arch, options, rng, T=4, B=2, D=3, H=4):
    shapes = {k: v.shape for k, v in dispatch.init_params(arch, D, H, seed=0, **options).items()}
    params = {k: 0.6 * rng.standard_normal(s) for k, s in shapes.items()}     # biases random too
    x = rng.standard_normal((T, B, D))
    dy = rng.standard_normal((T, B, H))
    return params, x, dy


def _dc_reference(arch, params, x, mask, dy, options):
    y, _, cache = dropconnect.forward(arch, params, x, None, {"W_hh": mask}, **options)
    return y, dropconnect.backward(arch, params, cache, dy)


def _plain(arch, params, x, dy, options):
    y, _, cache = dispatch.forward(arch, params, x, None, **options)
    return y, dispatch.backward(arch, params, cache, dy)


@exercise("6.2", function="dropconnect_forward_backward", title="DropConnect on W_hh: forward, and the weight gradient",
          task="run the cell with W̃_hh = mask ⊙ W_hh (rb.forward, then rb.backward with the same masked "
               "parameters) and return (y, grads) with grads['W_hh'] = mask ⊙ dW̃_hh")
def check_dropconnect(probe):
    rng = np.random.default_rng(621)
    p = 0.5
    terms_mask, terms_all, terms_bwd = set(), set(), set()
    for arch, options in ARCHS:
        params, x, dy = _dc_problem(arch, options, rng)
        xi = (rng.random(params["W_hh"].shape) >= p).astype(float)
        cases = {"random M": xi / (1 - p), "M = 1": np.ones_like(xi), "M = 0": np.zeros_like(xi)}
        for case, mask in cases.items():
            masked = {**params, "W_hh": mask * params["W_hh"]}
            want_y, want = _dc_reference(arch, params, x, mask, dy, options)
            answer = _unpack_pair(probe.call(arch, params, x, mask, dy, **options), DC_FORM)
            got_y, got = answer
            if not isinstance(got, dict):
                raise BadAnswer(f"return {DC_FORM}; the second entry is a {type(got).__name__}, not a dict")
            # the answers a slip gives, from the same inputs
            y_plain, g_plain = _plain(arch, params, x, dy, options)                # the mask never used
            _, g_tilde = _plain(arch, masked, x, dy, options)                       # dW̃ without the final M ⊙
            _, cache_m = dispatch.forward(arch, masked, x, None, **options)[1:]
            g_mixed = dispatch.backward(arch, params, cache_m, dy)                  # backward with unmasked W_hh
            group = f"{arch}, {case}"
            key = f"{arch} {case}"
            probe.compare(f"{key} y", got_y, want_y, "y", group, "y = cell(x; W_ih, W̃_hh = M ⊙ W_hh, b)",
                          {"the output of the cell with the unmasked W_hh (the mask is not used in the forward "
                           "pass)": y_plain})
            names = [k for k in params if k != "W_hh"] + ["W_hh", "x"]
            for name in names:
                want_g = want[name]
                alts = {}
                if case != "M = 1":
                    alts["the gradient of the cell with the unmasked W_hh (the mask is not used)"] = g_plain[name]
                    alts["the gradient with the masked cache but the UNmasked W_hh in rb.backward (the backward "
                         "must get the same masked parameters as the forward)"] = g_mixed[name]
                if name == "W_hh" and case != "M = 1":
                    alts["M ⊙ (the gradient with the masked cache but the UNmasked W_hh in rb.backward): the "
                         "backward must get the same masked parameters as the forward"] = mask * g_mixed["W_hh"]
                    alts.update({
                        "dW̃_hh, the gradient of the masked matrix without the final M ⊙ (a dropped weight would "
                        "still get a gradient)": g_tilde["W_hh"],
                        "ξ ⊙ dW̃_hh: the 0/1 pattern without the 1/(1 − p) scale of M": (mask != 0) * g_tilde["W_hh"],
                        "M ⊙ M ⊙ dW̃_hh: the mask is applied twice": mask * mask * g_tilde["W_hh"],
                        "M ⊙ (the unmasked cell's gradient): the forward and backward must run with W̃_hh = M ⊙ W_hh":
                            mask * g_plain["W_hh"]})
                hint = ("dW_hh = M ⊙ dW̃_hh (W̃_hh = M ⊙ W_hh entry by entry)" if name == "W_hh"
                        else f"d{name} passes through unchanged, computed with W̃_hh in the cell")
                probe.compare(f"{key} {name}", got.get(name), want_g, f"d{name}" if name != "x" else "dx", group,
                              hint, alts)
                if name == "W_hh" and case != "M = 1":
                    terms_mask.add(f"{key} W_hh")
                if case == "random M" or (case == "M = 0" and name != "W_hh"):   # with M = 0, M ⊙ anything is right
                    terms_all.add(f"{key} {name}")
                    terms_bwd.add(f"{key} {name}")
            if case != "M = 1":
                terms_all.add(f"{key} y")
            st = got.get("state0")
            want_s = want["state0"]
            st0 = None if not isinstance(st, (tuple, list)) or len(st) != len(want_s) else st[0]
            probe.compare(f"{key} state0", st0, want_s[0], "dstate0[0]", group,
                          "dstate0 passes through unchanged, computed with W̃_hh in the cell",
                          {} if case == "M = 1" else
                          {"the gradient of the cell with the unmasked W_hh (the mask is not used)": g_plain["state0"][0],
                           "the gradient with the masked cache but the UNmasked W_hh in rb.backward":
                               g_mixed["state0"][0]}, localise=False)
    probe.explain("the final step dW_hh = M ⊙ dW̃_hh: W̃_hh = M ⊙ W_hh entry by entry, so the chain rule "
                  "multiplies the masked matrix's gradient by M", terms_mask)
    probe.explain("the factor in dW_hh = M ⊙ dW̃_hh: the mask M itself, once, with its 1/(1 − p) on the kept "
                  "entries", {t for t in terms_mask if "random M" in t})
    probe.explain("the masked weights: run the cell forward AND backward with W̃_hh = M ⊙ W_hh "
                  "(masked = {**params, 'W_hh': mask * params['W_hh']})", terms_all)
    probe.explain("the parameters given to rb.backward: the same masked dict the forward pass used", terms_bwd)


# =========================================================================== 6.3
SCHEDULES = {"s_i = 0": dict(final_sparsity=0.9, begin_step=100, frequency=25, n_updates=12, initial_sparsity=0.0),
             "s_i = 0.3": dict(final_sparsity=0.8, begin_step=10, frequency=5, n_updates=4, initial_sparsity=0.3)}


def _schedule_alternatives(c):
    """What the usual slips give, as functions of t, for the schedule ``c``."""
    s_f, t0, dt, n, s_i = (c["final_sparsity"], c["begin_step"], c["frequency"], c["n_updates"],
                           c["initial_sparsity"])

    def ramp(t, power=3, span=n * dt, shift=0, si=s_i):
        return s_f + (si - s_f) * (1 - (t - t0 + shift) / span) ** power

    def clamped(fn, span=n * dt):
        return lambda t: si_hold(t) if t <= t0 else (s_f if t >= t0 + span else fn(t))

    def si_hold(t):
        return s_i

    return {
        "the linear ramp s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt)) (the exponent is 3)": clamped(lambda t: ramp(t, 1)),
        "a quadratic ramp (exponent 2; the exponent is 3)": clamped(lambda t: ramp(t, 2)),
        "s_i + (s_f − s_i)((t − t_0)/(nΔt))³: the cube on the wrong side, so it prunes slowly first and fast at the end":
            clamped(lambda t: s_i + (s_f - s_i) * ((t - t0) / (n * dt)) ** 3),
        "a ramp of length (n − 1)Δt (off by one update: the ramp is n·Δt long, from t_0 to t_0 + nΔt)":
            clamped(lambda t: ramp(t, span=(n - 1) * dt), (n - 1) * dt),
        "a ramp of length (n + 1)Δt (off by one update: the ramp is n·Δt long, from t_0 to t_0 + nΔt)":
            clamped(lambda t: ramp(t, span=(n + 1) * dt), (n + 1) * dt),
        "the ramp started one step late, (t − t_0 − 1) (at t = t_0 the schedule is already s_i and starts there)":
            clamped(lambda t: ramp(t, shift=-1)),
        "the ramp started one step early, (t − t_0 + 1) (at t = t_0 the value is s_i exactly)":
            clamped(lambda t: ramp(t, shift=1)),
        "the ramp with initial_sparsity ignored (s_i taken as 0)":
            lambda t: 0.0 if t <= t0 else (s_f if t >= t0 + n * dt else ramp(t, si=0.0)),
        "the formula applied outside [t_0, t_0 + nΔt] too (hold s_i before t_0 and s_f after the end)": ramp,
    }


@exercise("6.3", function="sparsity_schedule", title="the cubic sparsity schedule of gradual pruning",
          task="return s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³ for t_0 ≤ t ≤ t_0 + nΔt, s_i before t_0 "
               "and s_f after t_0 + nΔt (t_0 = begin_step, Δt = frequency, n = n_updates)")
def check_sparsity_schedule(probe):
    hints = {"before": "s_t = s_i for t < t_0 (no pruning yet)",
             "at t0": "at t = t_0 the ramp starts from s_i: (1 − 0)³ = 1",
             "ramp": "s_t = s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³ for t_0 < t < t_0 + nΔt",
             "end": "at t = t_0 + nΔt the target is s_f: (1 − 1)³ = 0",
             "after": "s_t = s_f for t > t_0 + nΔt (held, not extrapolated)"}
    for label, c in SCHEDULES.items():
        t0, dt, n = c["begin_step"], c["frequency"], c["n_updates"]
        end = t0 + n * dt
        steps = {"before": [0, t0 // 2, t0 - 1],
                 "at t0": [t0],
                 "ramp": sorted({t0 + 1, t0 + dt // 2, t0 + dt, t0 + 2 * dt + 1, (t0 + end) // 2,
                                 end - dt, end - 2, end - 1}),
                 "end": [end],
                 "after": [end + 1, end + dt, end + 10 * dt]}
        alts = _schedule_alternatives(c)
        for part, ts in steps.items():
            got = []
            for t in ts:
                v = probe.call(t, c["final_sparsity"], c["begin_step"], c["frequency"], c["n_updates"],
                               c["initial_sparsity"])
                try:
                    got.append(float(v))
                except (TypeError, ValueError):
                    raise BadAnswer(f"return the sparsity s_t as a number; for t = {t} your function returned "
                                    f"{type(v).__name__}") from None
            want = [pruning.cubic_sparsity(t, **c) for t in ts]
            alt_values = {k: [f(t) for t in ts] for k, f in alts.items()}
            where = {"before": "before t_0", "at t0": "at t_0", "ramp": "on the ramp", "end": "at t_0 + nΔt",
                     "after": "after t_0 + nΔt"}[part]
            probe.compare(f"{part} ({label})", np.array(got), np.array(want),
                          f"s_t {where} (t = {', '.join(str(t) for t in ts)})", f"schedule with {label}", hints[part],
                          alt_values)
    probe.explain("the ramp s_f + (s_i − s_f)(1 − (t − t_0)/(nΔt))³: its exponent, its direction and its "
                  "length nΔt", {f"ramp ({k})" for k in SCHEDULES})
    probe.explain("the role of initial_sparsity s_i: the schedule starts from s_i and holds it before t_0",
                  {"before (s_i = 0.3)", "at t0 (s_i = 0.3)", "ramp (s_i = 0.3)"})
    probe.explain("the ends of the ramp: hold s_i for t < t_0 and s_f for t > t_0 + nΔt",
                  {f"{part} ({k})" for k in SCHEDULES for part in ("before", "after")})


# =========================================================================== 6.4
def _by_rank(score, k, shape):
    """0 at the ``k`` smallest ``score`` (ties by position), 1 elsewhere."""
    mask = np.ones(score.size)
    mask[np.argsort(score.ravel(), kind="stable")[:k]] = 0
    return mask.reshape(shape)


@exercise("6.4", function="magnitude_prune_mask", title="the magnitude mask of gradual pruning",
          task="return a 0/1 array of W's shape, 0 at the k = round(sparsity · N) entries of smallest |W| "
               "(N = W.size) and 1 elsewhere; leave W unchanged")
def check_magnitude_mask(probe):
    rng = np.random.default_rng(641)
    W = rng.standard_normal((6, 5))                         # not square: a transposed mask shows in its shape
    big = np.argmax(np.abs(W))
    W.flat[big] = -abs(W.flat[big])                         # the largest magnitude is negative: by value ≠ by |W|
    W_pruned = rng.standard_normal((5, 8))
    W_pruned[rng.random(W_pruned.shape) < 0.4] = 0.0        # a matrix pruned before: its zeros must stay pruned
    cases = [("s = 0.59", W, 0.59), ("s = 0", W, 0.0), ("s = 0.96", W, 0.96),
             ("s = 0.7, already pruned", W_pruned, 0.7)]
    hint = "prune the k = round(s·N) entries of smallest magnitude |W|"
    for label, w, s in cases:
        N = w.size
        k = int(np.floor(s * N + 0.5))
        w_in = w.copy()
        got = probe.call(w_in, s, copy_args=False)
        probe.expect(f"W unchanged ({label})", np.array_equal(w_in, w), "W was modified: return a new mask and "
                     "leave W as it is", f"W left unchanged ({label})", "form", "build a new array (np.ones_like(W), then set "
                     "zeros)", localise=False)
        want = pruning.magnitude_mask(w, s)
        alts = {}
        if 0 < k < N:
            alts.update({
                "pruning by value, not magnitude: the mask of the k smallest values W (a large negative weight "
                "is a large weight: rank by |W|)": _by_rank(w, k, w.shape),
                "the inverted mask: it prunes the LARGEST |W| and keeps the smallest": 1 - want,
                "a mask that prunes the k LARGEST |W| (prune the smallest: argsort puts them first)":
                    _by_rank(-np.abs(w), k, w.shape),
                f"a mask with k = {int(s * N)} zeros (k = int(s·N) truncates; use k = round(s·N) = {k})"
                if int(s * N) != k else "": _by_rank(np.abs(w), int(s * N), w.shape),
                f"a mask with k + 1 = {k + 1} zeros (one too many: a ≤ where < belongs?)": _by_rank(np.abs(w), k + 1,
                                                                                                    w.shape),
                f"a mask with k − 1 = {k - 1} zeros (one too few: a < where ≤ belongs?)": _by_rank(np.abs(w), k - 1,
                                                                                                   w.shape)})
            alts.pop("", None)
        probe.compare(f"mask ({label})", got, want, f"mask for {label} (N = {N}, k = {k})", "mask", hint, alts)
    probe.explain("the ranking: sort by magnitude |W| and prune the k = round(s·N) smallest",
                  {f"mask ({label})" for label, _, s in cases if s > 0})
    probe.explain("the number of entries to prune: k = round(s·N), rounding s·N to the nearest integer "
                  "(np.floor(s * N + 0.5)); int() truncates",
                  {f"mask ({label})" for label, w, s in cases if int(s * w.size) != int(np.floor(s * w.size + 0.5))})


# =========================================================================== 6.5
def _rule(kind):
    """The trigger and its usual slips, as functions of (logs, v, n); an empty window never triggers."""
    def window(logs, n):
        t = len(logs)
        return {"right": logs[:t - n] if t > n else [], "all": logs, "last n": logs[t - n:] if n else [],
                "short": logs[:t - n - 1] if t > n + 1 else [], "long": logs[:t - n + 1] if t >= n else []}

    def f(logs, v, n):
        t = len(logs)
        if kind == "t >= n":
            w = logs[:t - n] if t >= n else []
            return bool(t >= n and w and v > min(w))
        if kind == ">=":
            w = window(logs, n)["right"]
            return bool(t > n and w and v >= min(w))
        w = window(logs, n)[kind]
        return bool(t > n and w and v > min(w))
    return f


TRIGGER_SLIPS = {
    "the monotone rule v > min(logs): the best value so far, the last n checks included (those n are exempt)": "all",
    "v > min of the LAST n checks; compare with the best value recorded before them, min(logs[:t − n])": "last n",
    "min over logs[:t − n − 1], one check too few (the window is logs[:t − n])": "short",
    "min over logs[:t − n + 1], which takes in one of the last n checks (the window is logs[:t − n])": "long",
}

# (logs, v, n): cases chosen so that each slip answers differently somewhere
EARLY = [([1.0], 9.0, 1), ([1.0, 2.0], 9.0, 2), ([1.0, 2.0, 3.0], 9.0, 3), ([5.0, 4.0, 3.0], 9.0, 5),
         ([1.0, 2.0, 3.0], 9.0, 2), ([1.0, 2.0], 9.0, 1)]
WINDOW = [([5.0, 4.0, 3.5, 2.0, 3.4], 3.3, 2),      # the best is among the last n: no trigger
          ([5.0, 4.0, 3.0, 3.5, 3.6], 3.2, 2),      # the best is the last check before the window's end
          ([5.0, 4.0, 3.0, 3.5, 3.2], 3.1, 2),      # test_trigger_on_a_scripted_curve, check 5
          ([5.0, 4.0, 3.0, 3.5, 3.2, 3.1], 3.05, 3),
          ([3.0, 2.0, 2.5], 2.4, 1),
          ([6.0, 5.0, 4.0, 3.0, 2.0, 1.0], 1.5, 1),  # still improving: no trigger
          ([2.0, 3.0, 1.0, 4.0], 2.5, 1),
          ([4.0, 1.0, 3.0, 3.0, 3.0], 2.0, 3),
          ([4.0, 3.0, 2.9, 1.0], 3.5, 2),
          ([4.0, 3.0, 2.9, 1.0], 2.95, 2)]
TIES = [([5.0, 4.0, 3.0, 3.5, 3.2], 3.0, 2), ([2.0, 1.0, 1.5], 2.0, 1)]
CURVE = [5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 3.05, 2.9]


@exercise("6.5", function="nt_asgd_trigger", title="the non-monotone trigger of NT-ASGD",
          task="with t = len(logs) earlier checks, return True exactly when t > n and value > min(logs[:t − n]), "
               "the best value recorded before the last n checks (n = nonmono); do not modify logs")
def check_nt_trigger(probe):
    right = _rule("right")

    def ask(logs, v, n):
        kept = list(logs)
        try:
            out = probe.call(kept, v, n, copy_args=False)
        except StudentCrash as crash:
            return None, crash.__cause__, kept
        try:
            return bool(out), None, kept
        except (TypeError, ValueError):
            raise BadAnswer(f"return True or False; for logs={logs}, value={v}, nonmono={n} your function "
                            f"returned {type(out).__name__}") from None

    changed = []
    for part, cases, hint in (
            ("early", EARLY, "no trigger while t ≤ n: the first n checks cannot be judged (t > n)"),
            ("window", WINDOW, "value > min(logs[:t − n]): worse than the best check before the last n"),
            ("ties", TIES, "strictly worse: value > min(…); equal to the old best is not a stall")):
        got, crash_note = [], ""
        for logs, v, n in cases:
            out, exc, kept = ask(logs, v, n)
            if kept != logs:
                changed.append((logs, kept))
            if exc is not None:
                got = None
                t = len(logs)
                crash_note = (f"raised {type(exc).__name__} ({exc}) for logs={logs}, value={v}, nonmono={n} "
                              f"(t = {t}): " + ("with t ≤ n there is no check before the last n, so test t > n "
                                                "first and take the min only when it holds (t > n and …)"
                                                if t <= n else f"here the window logs[:t − n] = {logs[:t - n]} "
                                                "is not empty; take the min over exactly that"))
                break
            got.append(float(out))
        want = np.array([float(right(*c)) for c in cases])
        label = {"early": "the first n checks (t ≤ n) and just after", "window": "the window of the old best",
                 "ties": "a value equal to the old best"}[part]
        alts = {text: np.array([float(_rule(kind)(*c)) for c in cases]) for text, kind in TRIGGER_SLIPS.items()}
        if part == "early":
            alts = {"a trigger that may fire at t = n (the condition is t > n)":
                    np.array([float(_rule("t >= n")(*c)) for c in cases])}
        if part == "ties":
            alts = {"v ≥ min(…): a value equal to the old best triggers (the condition is strict)":
                    np.array([float(_rule(">=")(*c)) for c in cases])}
        if got is None:
            probe.expect(part, False, crash_note, label, "the trigger", hint)
        else:
            probe.compare(part, np.array(got), want, label, "the trigger", hint,
                          {k: v for k, v in alts.items() if not np.array_equal(v, want)})
    probe.expect("logs unchanged", not changed, "logs was modified (the caller appends the value after the "
                 f"check): e.g. {changed[0][0]} became {changed[0][1]}" if changed else "", "logs left unchanged",
                 "form", "read logs, do not append to it", localise=False)

    # the first check that fires on a scripted curve, for n = 1, 2, 3
    firsts, want_firsts = [], []
    for n in (1, 2, 3):
        logs, first = [], -1
        for t, v in enumerate(CURVE):
            out, exc, _ = ask(list(logs), v, n)
            if exc is not None or out:
                first = t if exc is None else -2
                break
            logs.append(v)
        firsts.append(first)
        want_firsts.append(next(t for t in range(len(CURVE)) if ntasgd.nonmonotone_trigger(CURVE[:t], CURVE[t], n)))
    probe.compare("curve", np.array(firsts, float), np.array(want_firsts, float),
                  f"first check that fires on {CURVE} for n = 1, 2, 3", "a scripted validation curve",
                  localise=False)

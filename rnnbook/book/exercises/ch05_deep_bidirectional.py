r"""Chapter 5 (deep, bidirectional, dense; BiLSTM-CRF): the backward pass of a bidirectional layer (5.1),
the CRF forward algorithm (5.2) and Viterbi decoding (5.3).

The two CRF checkers isolate each kind of score by "zeroing everything but one term":
with the transitions, start and end scores all zero, ``log Z`` is a sum of per-position
log-sum-exps of the emissions; switching on only the start scores ``π`` (or only the end
scores ``ω``, or only the transitions ``A``) adds exactly one term, so a wrong answer
on that problem alone names it.  Known slips (``π`` and ``ω`` swapped, ``A`` transposed,
``max`` in place of log-sum-exp and the reverse, padding read as steps) are computed
from the same inputs by a variant of the reference, so that the report can say
"equals the value with the transitions transposed".

The bidirectional checker splits the path into ``dx`` by zeroing one half of ``dy``.
"""
from __future__ import annotations

import numpy as np

from ... import crf, dispatch, gradcheck
from ...layers import bidirectional
from ..grading import BadAnswer, exercise

T, B, K = 6, 4, 4
LENGTHS = np.array([6, 3, 1, 5])            # a full sequence, two padded ones and a single word


def _logsumexp(a, axis):
    m = a.max(axis=axis, keepdims=True)
    return (np.log(np.exp(a - m).sum(axis=axis, keepdims=True)) + m).squeeze(axis)


def _variant(params, E, mask, reduce=None, transpose=False, swap=False, start=True, end=True,
             padding="carry", decode=False):
    """The forward algorithm (or Viterbi, with ``decode``) with one known slip switched on.

    ``reduce``: ``"logsumexp"`` (the forward algorithm's) or ``"max"`` (Viterbi's, the default with
    ``decode``); ``padding``: ``"carry"`` (right), ``"ignore"`` (every sequence runs to T) or
    ``"zero"`` (padded steps taken with zero emissions).  Returns ``log Z``, or ``(tags, score)``.
    """
    A = params["transitions"].T if transpose else params["transitions"]
    pi, omega = params["start"], params["end"]
    if swap:
        pi, omega = omega, pi
    pi = pi if start else 0 * pi
    omega = omega if end else 0 * omega
    reduce = reduce or ("max" if decode else "logsumexp")
    red = _logsumexp if reduce == "logsumexp" else (lambda a, axis: a.max(axis=axis))
    real = mask.astype(bool) if padding == "carry" else np.ones(mask.shape, bool)
    Ez = E * mask[:, :, None] if padding == "zero" else E
    Tn, Bn, Kn = E.shape
    alpha = pi + Ez[0]
    back = np.zeros((Tn, Bn, Kn), np.int64)
    for t in range(1, Tn):
        cand = alpha[:, :, None] + A                               # (B, K_prev, K)
        back[t] = np.where(real[t][:, None], cand.argmax(axis=1), np.arange(Kn))
        alpha = np.where(real[t][:, None], red(cand, axis=1) + Ez[t], alpha)
    final = alpha + omega
    if not decode:
        return red(final, axis=1)
    tags = np.empty((Tn, Bn), np.int64)
    tags[-1] = final.argmax(axis=1)
    for t in range(Tn - 1, 0, -1):
        tags[t - 1] = back[t, np.arange(Bn), tags[t]]
    return np.where(mask.astype(bool), tags, -1), red(final, axis=1)


def _problem(rng, scale=1.5):
    params = {"transitions": scale * rng.standard_normal((K, K)), "start": 2 * scale * rng.standard_normal(K),
              "end": 2 * scale * rng.standard_normal(K)}
    E = scale * rng.standard_normal((T, B, K))
    return params, E


def _only(params, keep):
    """A copy of ``params`` with every score but those in ``keep`` set to zero."""
    return {k: (v.copy() if k in keep else np.zeros_like(v)) for k, v in params.items()}


def _isolation_problems(params, E):
    """(term, label, params) for the problems that switch on one kind of score at a time."""
    return [("E only", "emissions only (A = π = ω = 0)", _only(params, ())),
            ("start", "emissions and start scores π (A = ω = 0)", _only(params, ("start",))),
            ("end", "emissions and end scores ω (A = π = 0)", _only(params, ("end",))),
            ("transitions", "emissions and transitions A (π = ω = 0)", _only(params, ("transitions",))),
            ("all", "every score, no padding", params)]


SLIPS_Z = {
    "the value with max in place of logsumexp (that is the best path's score: Viterbi)": dict(reduce="max"),
    "the value with π and ω swapped (π belongs to the first position, ω after the last)": dict(swap=True),
    "the value without the start scores π": dict(start=False),
    "the value without the end scores ω": dict(end=False),
    "the value with the transitions transposed (A[i, j] scores i → j: sum over the row index i)":
        dict(transpose=True),
    "the value with the mask ignored (every sequence run to T)": dict(padding="ignore"),
    "the value with padding read as steps with zero emissions (carry log α over instead)": dict(padding="zero"),
}


def _as_vector(answer, what):
    try:
        return np.asarray(answer, np.float64)
    except (TypeError, ValueError):
        raise BadAnswer(f"return {what}; your function returned {type(answer).__name__}") from None


# =========================================================================== 5.1
CELL, D_BI, H_BI, T_BI, B_BI = "lstm", 2, 3, 4, 2


def _bi_problem(seed):
    rng = np.random.default_rng(seed)
    params = {k: 0.6 * rng.standard_normal(v.shape)
              for k, v in bidirectional.init_params(D_BI, H_BI, backend="numpy", cell=CELL).items()}
    x = rng.standard_normal((T_BI, B_BI, D_BI))
    dy = rng.standard_normal((T_BI, B_BI, 2 * H_BI))
    return params, x, dy


def _bi_reference(params, cache, dy, reverse_dy=True, reverse_dx=True, swap=False):
    """The backward of the bidirectional layer, with a known slip switched on."""
    H = cache["H"]
    halves = (dy[:, :, H:], dy[:, :, :H]) if swap else (dy[:, :, :H], dy[:, :, H:])
    p_f = {k[4:]: v for k, v in params.items() if k.startswith("fwd.")}
    p_b = {k[4:]: v for k, v in params.items() if k.startswith("bwd.")}
    g_f = dispatch.backward(CELL, p_f, cache["fwd"], np.ascontiguousarray(halves[0]))
    d_b = halves[1][::-1] if reverse_dy else halves[1]
    g_b = dispatch.backward(CELL, p_b, cache["bwd"], np.ascontiguousarray(d_b))
    out = {**{f"fwd.{k}": g_f[k] for k in p_f}, **{f"bwd.{k}": g_b[k] for k in p_b}}
    out["x"] = g_f["x"] + (g_b["x"][::-1] if reverse_dx else g_b["x"])
    return out


SLIPS_BI = {
    "the gradient with the backward half of dy not reversed in time": dict(reverse_dy=False),
    "the gradient with the backward cell's dx not reversed in time": dict(reverse_dx=False),
    "the gradient with the halves of dy swapped (the first H columns belong to the forward cell)": dict(swap=True),
}


def _unpack_grads(answer, keys):
    if not isinstance(answer, dict):
        raise BadAnswer(f"return a dict of gradients {sorted(keys)}; your function returned {type(answer).__name__}")
    return answer


@exercise("5.1", function="bidirectional_backward", title="the backward pass of a bidirectional layer",
          task="split dy into its forward and backward halves, reverse the backward half in time, run each "
               "cell's rb.backward, and return {'fwd.<name>', 'bwd.<name>', 'x'} with the backward cell's "
               "input gradient reversed before it is added")
def check_bidirectional_backward(probe):
    params, x, dy = _bi_problem(503)
    y, _, cache = dispatch.forward("bidirectional", params, x, cell=CELL)
    keys = list(params) + ["x"]
    H = H_BI
    got = _unpack_grads(probe.call(params, cache, dy), keys)
    want = _bi_reference(params, cache, dy)
    alts = {name: _bi_reference(params, cache, dy, **kw) for name, kw in SLIPS_BI.items()}
    for k in params:
        direction = "forward cell" if k.startswith("fwd.") else "backward cell"
        hint = ("the forward cell's backward with dy[:, :, :H]" if direction == "forward cell" else
                "the backward cell's backward with dy[::-1, :, H:] (its step t produced ←y_{T-1-t})")
        probe.compare(k, got.get(k), want[k], f"d{k}", direction, hint, {n: a[k] for n, a in alts.items()})
    probe.compare("x", got.get("x"), want["x"], "dx (both paths)", "input", "dx = dx_fwd + reverse(dx_bwd)",
                  {n: a["x"] for n, a in alts.items()}, localise=False)

    # zero everything but one path into dx: only the forward half of dy, then only the backward half
    for term, keep, label, hint in (
            ("x via fwd", slice(0, H), "dx with the backward half of dy = 0", "dx = dx of the forward cell"),
            ("x via bwd", slice(H, 2 * H), "dx with the forward half of dy = 0",
             "dx = reverse(dx of the backward cell): its step t read x_{T-1-t}")):
        dy_one = np.zeros_like(dy)
        dy_one[:, :, keep] = dy[:, :, keep]
        got_one = _unpack_grads(probe.call(params, cache, dy_one), keys)
        want_one = _bi_reference(params, cache, dy_one)
        probe.compare(term, got_one.get("x"), want_one["x"], label, "input", hint,
                      {n: _bi_reference(params, cache, dy_one, **kw)["x"] for n, kw in SLIPS_BI.items()})

    bwd = {k for k in params if k.startswith("bwd.")}
    fwd = {k for k in params if k.startswith("fwd.")}
    probe.explain("the backward half of dy: reverse it in time before the backward cell's backward "
                  "(←y_t came out of the backward cell at its step T-1-t)", bwd | {"x via bwd"})
    probe.explain("the backward cell's input gradient: reverse it in time before adding it "
                  "(the backward cell read x reversed)", {"x via bwd"})
    probe.explain("the split of dy: columns 0..H-1 belong to the forward cell, H..2H-1 to the backward cell",
                  fwd | bwd | {"x via fwd", "x via bwd"})

    # the whole layer against finite differences
    def f(inp):
        p = {k: inp[k] for k in params}
        return dispatch.forward("bidirectional", p, inp["x_in"], cell=CELL)[0]

    def grad_fn(inp, upstream):
        p = {k: inp[k] for k in params}
        _, _, c = dispatch.forward("bidirectional", p, inp["x_in"], cell=CELL)
        g = _unpack_grads(probe.call(p, c, upstream), keys)
        out = {k: g.get(k) for k in params}
        out["x_in"] = g.get("x")
        return out

    try:
        report = gradcheck.check_function(f, {**params, "x_in": x}, grad_fn, seed=7)
    except (ValueError, KeyError, TypeError) as exc:
        probe.expect("fd", False, f"could not be run ({exc}); fix the shapes first", "finite differences",
                     "whole layer vs finite differences", localise=False)
        return
    for e in report.entries:
        probe.expect(f"fd {e.name}", e.max_error < 1e-6,
                     f"finite differences disagree (rel err {e.max_error:.2g})", e.name.replace("x_in", "x"),
                     "whole layer vs finite differences", localise=False)


# =========================================================================== 5.2
@exercise("5.2", function="crf_log_partition", title="the CRF forward algorithm in log space (log Z with a mask)",
          task="return log Z (B,): log α_0 = π + E_0, log α_t[j] = logsumexp_i(log α_{t-1}[i] + A[i, j]) + E[t, j] "
               "on real steps (carry log α over on padding), log Z = logsumexp_j(log α_{T-1}[j] + ω[j])")
def check_crf_log_partition(probe):
    rng = np.random.default_rng(501)
    params, E = _problem(rng)
    full = np.ones((T, B))
    padded = (np.arange(T)[:, None] < LENGTHS[None, :]).astype(np.float64)
    group_iso = "one kind of score at a time"

    def run(p, e, m):
        return _as_vector(probe.call(p, e, m), "log Z, an array of shape (B,)")

    hints = {"E only": "log α_t[j] = logsumexp_i(log α_{t-1}[i]) + E[t, j]: with A = π = ω = 0, log Z = Σ_t logsumexp_k E[t, k]",
             "start": "log α_0[j] = π[j] + E[0, j] (π enters once, at the first position)",
             "end": "log Z = logsumexp_j(log α_{L-1}[j] + ω[j]) (ω enters once, after the last word)",
             "transitions": "log α_t[j] = logsumexp_i(log α_{t-1}[i] + A[i, j]) + E[t, j] (A[i, j]: tag i, then tag j)",
             "all": "the whole recursion"}
    for term, label, p in _isolation_problems(params, E):
        want = crf.log_partition(p, E, full)
        alts = {name: _variant(p, E, full, **kw) for name, kw in SLIPS_Z.items()}
        probe.compare(term, run(p, E, full), want, f"log Z, {label}", group_iso, hints[term], alts)

    # counting paths: every score zero, so log Z = L log K (a sum over K^L paths of exp(0))
    zero = _only(params, ())
    probe.compare("counting", run(zero, np.zeros_like(E), padded), LENGTHS * np.log(K),
                  "log Z with every score 0 (= L·log K, the log of the number of paths)", "sum, not max",
                  "log Z is a log-sum-exp over all K^L paths; max would give 0 here",
                  {"0 everywhere: max in place of logsumexp (that is the best path's score: Viterbi)":
                   np.zeros(B), "T·log K for every sequence: the mask is ignored": np.full(B, T * np.log(K))})

    # padding: each sequence ends at its own last word
    want = crf.log_partition(params, E, padded)
    alts = {name: _variant(params, E, padded, **kw) for name, kw in SLIPS_Z.items()}
    probe.compare("padded", run(params, E, padded), want, f"log Z of a padded batch, lengths {LENGTHS.tolist()}",
                  "padding", "on a padded step carry log α over unchanged (log α_t = log α_{t-1}), so that ω is "
                  "added after each sequence's own last word", alts)

    # large scores: adding c to every emission adds c·T to log Z, whatever else is right or wrong,
    # unless exp overflows (exp(1000) = inf in float64)
    c = 1000.0
    shifted = run(params, E + c, full) - run(params, E, full)
    probe.compare("large", shifted, np.full(B, c * T),
                  f"log Z(E + {c:g}) − log Z(E) (= {c:g}·T; exp({c:g}) overflows float64)", "overflow",
                  "logsumexp(a) = m + log Σ exp(a − m) with m = max(a): shift by the maximum before exp")

    probe.explain("the reduction: log Z sums over paths, so log α takes a logsumexp over the previous tag "
                  "(max is Viterbi's reduction)",
                  {"E only", "start", "end", "transitions", "all", "counting", "padded"})
    probe.explain("the start scores: log α_0 = π + E_0 (π is added once, at the first position)",
                  {"start", "all", "padded"})
    probe.explain("the end scores: log Z = logsumexp_j(log α_{L-1}[j] + ω[j]) (ω is added once, after the last word)",
                  {"end", "all", "padded"})
    probe.explain("where π and ω go: π with the first position's emissions, ω after the last position",
                  {"start", "end", "all", "padded"})
    probe.explain("the orientation of the transitions: A[i, j] scores tag i followed by tag j, so "
                  "log α_t[j] = logsumexp_i(log α_{t-1}[i] + A[i, j]) reduces over the first index of A "
                  "(log α_{t-1}[:, :, None] + A, then axis 1)",
                  {"transitions", "all", "padded"})
    probe.explain("the mask: on a padded step (mask[t] = 0) carry log α over unchanged, and do not count "
                  "the padded steps", {"padded", "counting"})


# =========================================================================== 5.3
def _unpack_viterbi(answer):
    if not isinstance(answer, (tuple, list)) or len(answer) != 2:
        raise BadAnswer("return (tags, best_score): tags (T, B) integers with -1 on padding and the best "
                        f"scores (B,); your function returned {type(answer).__name__}"
                        + (f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else ""))
    tags, score = answer
    try:
        tags, score = np.asarray(tags), np.asarray(score, np.float64)
    except (TypeError, ValueError):
        raise BadAnswer("tags and best_score must be arrays") from None
    if tags.shape != (T, B):
        raise BadAnswer(f"tags must have shape (T, B) = {(T, B)}, got {tags.shape}")
    return tags, score


SLIPS_V = {
    "the decoding with the transitions transposed (backpointers taken over the wrong index of A)":
        dict(transpose=True),
    "the decoding without the end scores ω": dict(end=False),
    "the decoding without the start scores π": dict(start=False),
    "the decoding with π and ω swapped": dict(swap=True),
    "the decoding with the mask ignored (every sequence decoded to T)": dict(padding="ignore"),
}


@exercise("5.3", function="crf_viterbi", title="Viterbi decoding of a CRF (backpointers, end scores, padding)",
          task="return (tags (T, B) int with -1 on padding, best_score (B,)): δ_0 = π + E_0, "
               "δ_t[j] = max_i(δ_{t-1}[i] + A[i, j]) + E[t, j] with backpointer argmax_i on real steps, "
               "then the best final tag of δ + ω and the pointers followed back")
def check_crf_viterbi(probe):
    rng = np.random.default_rng(502)
    params, E = _problem(rng)
    full = np.ones((T, B))
    padded = (np.arange(T)[:, None] < LENGTHS[None, :]).astype(np.float64)

    def run(p, e, m):
        return _unpack_viterbi(probe.call(p, e, m))

    hints = {"E only": "with A = π = ω = 0 the best path takes the best tag at every position",
             "start": "δ_0 = π + E_0",
             "end": "the last tag is argmax_j(δ_{L-1}[j] + ω[j]), and the best score includes ω",
             "transitions": "δ_t[j] = max_i(δ_{t-1}[i] + A[i, j]) + E[t, j], backpointer[t, j] = argmax_i(…)",
             "all": "the whole recursion and the back-tracking"}
    for term, label, p in _isolation_problems(params, E):
        tags_ref, score_ref = crf.viterbi(p, E, full)
        variants = {name: _variant(p, E, full, decode=True, **kw) for name, kw in SLIPS_V.items()}
        tags, score = run(p, E, full)
        group = label
        probe.compare(f"{term} score", score, score_ref, "best score", group, hints[term],
                      {**{n: v[1] for n, v in variants.items()},
                       "log Z (logsumexp in place of max: that is the forward algorithm)": crf.log_partition(p, E, full)})
        probe.compare(f"{term} tags", tags, tags_ref, "tags", group, hints[term], {n: v[0] for n, v in variants.items()})

    # the returned path must score what is returned as its score: a check of the back-tracking alone
    tags, score = run(params, E, padded)
    tags_ref, score_ref = crf.viterbi(params, E, padded)
    variants = {name: _variant(params, E, padded, decode=True, **kw) for name, kw in SLIPS_V.items()}
    real = padded.astype(bool)
    probe.compare("padded score", score, score_ref, f"best score of a padded batch, lengths {LENGTHS.tolist()}",
                  "padding", "on a padded step carry δ over unchanged; the last tag is chosen at each sequence's own "
                  "last word", {n: v[1] for n, v in variants.items()})
    probe.compare("padded tags", np.where(real, tags, -1), tags_ref, "tags on the real positions", "padding",
                  "on a padded step carry δ over unchanged; the last tag is chosen at each sequence's own last word",
                  {n: v[0] for n, v in variants.items()})
    probe.expect("padding -1", bool(np.all(tags[~real] == -1)), f"tags on padding are {np.unique(tags[~real])}, "
                 "expected -1 everywhere", "tags on padding are -1", "padding", "np.where(mask, tags, -1)")
    ok_tags = np.all((tags[real] >= 0) & (tags[real] < K)) and np.issubdtype(tags.dtype, np.integer)
    if ok_tags:
        own = crf.sequence_score(params, E, np.where(real, tags, 0).astype(np.int64), padded)
        probe.compare("consistent", own, score, "score s(y) of the tags you return", "back-tracking",
                      "the returned path must score the returned best score: follow the pointers back, "
                      "tags[t-1] = backpointer[t, tags[t]]", localise=False)
    else:
        probe.expect("consistent", False, "tags must be integers in [0, K) on the real positions",
                     "score s(y) of the tags you return", "back-tracking", "tags are integer tag indices",
                     localise=False)

    score_terms = {f"{t} score" for t in ("E only", "start", "end", "transitions", "all")} | {"padded score"}
    tag_terms = {f"{t} tags" for t in ("E only", "start", "end", "transitions", "all")} | {"padded tags"}
    probe.explain("the back-tracking: start from the best final tag and follow tags[t-1] = backpointer[t, tags[t]] "
                  "(the backpointer stored at step t points to step t-1)",
                  tag_terms - {"E only tags"})
    probe.explain("the back-tracking: start from the best final tag and follow tags[t-1] = backpointer[t, tags[t]] "
                  "(the backpointer stored at step t points to step t-1)", tag_terms)
    probe.explain("the reduction: Viterbi takes max over the previous tag (logsumexp is the forward algorithm)",
                  score_terms)
    probe.explain("the orientation of the backpointers: δ_t[j] = max_i(δ_{t-1}[i] + A[i, j]), the argmax over "
                  "the first index of A (δ_{t-1}[:, :, None] + A, then axis 1)",
                  {"transitions score", "transitions tags", "all score", "all tags", "padded score", "padded tags"})
    probe.explain("the end scores: choose the last tag by argmax_j(δ_{L-1}[j] + ω[j]) and include ω in the score",
                  {"end score", "end tags", "all score", "all tags", "padded score", "padded tags"})
    probe.explain("the end scores: choose the last tag by argmax_j(δ_{L-1}[j] + ω[j]) and include ω in the score",
                  {"end score", "end tags", "all score", "padded score"})
    probe.explain("the start scores: δ_0 = π + E_0", {"start score", "start tags", "all score", "all tags",
                                                       "padded score", "padded tags"})
    probe.explain("the start scores: δ_0 = π + E_0", {"start score", "start tags", "all score", "padded score"})
    probe.explain("the mask: on a padded step keep δ (and point each tag to itself), so that each sequence's last "
                  "tag is chosen at its own last word", {"padded score", "padded tags"})
    probe.explain("the backpointers on padded steps: point each tag to itself (backpointer[t, j] = j where "
                  "mask[t] = 0), so that the back-tracking passes through the padding to each sequence's own "
                  "last tag", {"padded tags"})

r"""Chapter 3 (LSTM): the step backward (default form), the peephole terms, the coupled gate (CIFG).

Every checker compares each gate's block of every parameter gradient with the
reference (``rnnbook.numpy_ref.lstm.step_backward``) and then "zeroes everything
but one term" to isolate paths:

* one block of ``W_ih`` (or ``W_hh``) alive isolates the path through one gate into
  ``dx_t`` (or ``dh_prev``);
* ``dh = 0`` leaves the cell's carried error alone (the carousel ``dc_prev = dc_next ⊙ f``),
  ``dc_next = 0`` the path that enters the cell from ``h_t``;
* for the peepholes, one of ``p_i, p_f, p_o`` alive (the other two zero) isolates
  that peephole's terms, and all three zero leaves the default form.

Which checked terms an error in one intermediate quantity spoils is not written
out by hand: the checker *measures* it, by running an instrumented copy of the
reference with that one quantity perturbed (``_reference(..., spoil=name)``) through
the same checks.  The cause whose spoiled terms equal the student's wrong terms
is the one the report names.
"""
from __future__ import annotations

import zlib

import numpy as np

from ...numpy_ref import lstm
from ..grading import _close, exercise
from .common import random_params, sequence_check, unpack_step_backward

B, D, H = 3, 4, 5            # D != H, so a transposed W_ih or dx shows up in the shapes
GATES = ("i", "f", "g", "o")
GROUP = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o"}
PEEP_GROUP = {"i": "input peephole p_i", "f": "forget peephole p_f", "o": "output peephole p_o"}


def _rows(g):
    k = GATES.index(g)
    return slice(k * H, (k + 1) * H)


def _step_form(peepholes):
    extra = ", 'p_i': ..., 'p_f': ..., 'p_o': ..." if peepholes else ""
    return f"(dx_t, (dh_prev, dc_prev), {{'W_ih': ..., 'W_hh': ..., 'b': ...{extra}}})"


# --------------------------------------------------------------------------- the instrumented reference
#: what each quantity is, in the words of the report: "check <text>"
CAUSES = {
    "dz_o": "the output gate's local gradient: do = dh ⊙ tanh(c_t) and dz_o = do ⊙ o ⊙ (1 − o)",
    "dc_h": "the path from h_t into the cell: dc = … + dh ⊙ o ⊙ (1 − tanh²(c_t))",
    "dc_next": "the error carried along the cell from step t+1: dc = dc_next + … (dc_next is dstate[1])",
    "dc": "dc = dc_next + dh ⊙ o ⊙ (1 − tanh²(c_t)), the total error at c_t",
    "dz_i": "the input gate's local gradient: di = dc ⊙ g and dz_i = di ⊙ i ⊙ (1 − i)",
    "dz_f": "the forget gate's local gradient: df = dc ⊙ c_prev and dz_f = df ⊙ f ⊙ (1 − f)",
    "dz_g": "the candidate's local gradient: dg = dc ⊙ i and dz_g = dg ⊙ (1 − g²)",
    "carousel": "dc_prev = dc ⊙ f, the constant error carousel",
    "dx": "dx_t = dz W_ih with dz = [dz_i | dz_f | dz_g | dz_o] (the product, or a transposed W_ih)",
    "dh_prev": "dh_prev = dz W_hh with dz = [dz_i | dz_f | dz_g | dz_o] (the product, or a transposed W_hh)",
    "W_ih": "dW_ih = dzᵀ x_t, with dz stacked in the gate order i, f, g, o",
    "W_hh": "dW_hh = dzᵀ h_prev, with dz stacked in the gate order i, f, g, o",
    "b": "db = Σ over the batch of dz",
    # peepholes
    "peep_o": "the output peephole's term in dc: dc = … + dz_o ⊙ p_o (z_o = … + p_o ⊙ c_t, so c_t feeds o)",
    "peep_i": "the input peephole's term in dc_prev: dc_prev = dc ⊙ f + dz_i ⊙ p_i + …",
    "peep_f": "the forget peephole's term in dc_prev: dc_prev = dc ⊙ f + … + dz_f ⊙ p_f",
    "p_i": "dp_i = Σ over the batch of dz_i ⊙ c_prev",
    "p_f": "dp_f = Σ over the batch of dz_f ⊙ c_prev",
    "p_o": "dp_o = Σ over the batch of dz_o ⊙ c_t (the new cell: the output gate looks at c_t)",
    # coupled input and forget gate
    "coupling": "the coupling term: f = 1 − i, so the forget gate's error reaches the input gate as di = … − df",
    "dz_f_coupled": "dz_f = 0: with f = 1 − i the forget gate has no pre-activation of its own, so its rows of "
                    "W_ih, W_hh and b get a zero gradient (its error goes to the input gate instead)",
    "dz_i_coupled": "the input gate's local gradient: di = dc ⊙ g − df with df = dc ⊙ c_prev, "
                    "and dz_i = di ⊙ i ⊙ (1 − i)",
}

MUST_BE_ZERO = {"dz_f_coupled"}


def _reference(params, cache, dstate, spoil=None):
    """``lstm.step_backward`` for the default, peephole and coupled forms, written out with every
    intermediate named, so that one of them (``spoil``) can be perturbed on purpose."""
    x_t, h_prev, c_prev, _, i, f, g, o, c, tc, opts = cache
    peep, coupled = opts["peepholes"], opts["coupled"]
    rng = np.random.default_rng(zlib.crc32((spoil or "").encode()))

    def q(name, v):
        if name != spoil:
            return v
        v = np.asarray(v, np.float64)
        if name in MUST_BE_ZERO:                                 # any value where there should be none
            return v + 0.3 * rng.standard_normal(v.shape)
        return v * (1.3 + 0.4 * rng.random(v.shape))             # a wrong factor, entry by entry

    dh, dc_next = dstate
    dz_o = q("dz_o", dh * tc * o * (1 - o))
    dc = q("dc", q("dc_next", dc_next) + q("dc_h", dh * o * (1 - tc * tc)))
    if peep:
        dc = dc + q("peep_o", dz_o * params["p_o"])
    df = dc * c_prev
    di = dc * g
    if coupled:
        di = di - q("coupling", df)
        dz_i = q("dz_i_coupled", di * i * (1 - i))
        dz_f = q("dz_f_coupled", np.zeros_like(df))
    else:
        dz_i = q("dz_i", di * i * (1 - i))
        dz_f = q("dz_f", df * f * (1 - f))
    dz_g = q("dz_g", dc * i * (1 - g * g))
    dc_prev = q("carousel", dc * f)
    dparams = {}
    if peep:
        dc_prev = dc_prev + q("peep_i", dz_i * params["p_i"]) + q("peep_f", dz_f * params["p_f"])
        dparams.update(p_i=q("p_i", (dz_i * c_prev).sum(0)), p_f=q("p_f", (dz_f * c_prev).sum(0)),
                       p_o=q("p_o", (dz_o * c).sum(0)))
    dz = np.concatenate([dz_i, dz_f, dz_g, dz_o], axis=1)
    dparams.update(W_ih=q("W_ih", dz.T @ x_t), W_hh=q("W_hh", dz.T @ h_prev), b=q("b", dz.sum(0)))
    return q("dx", dz @ params["W_ih"]), (q("dh_prev", dz @ params["W_hh"]), dc_prev), dparams


def _causes(options):
    names = ["dz_o", "dc_h", "dc_next", "dc", "dz_g", "carousel", "dx", "dh_prev", "W_ih", "W_hh", "b"]
    if options.get("coupled"):
        names += ["dz_i_coupled", "coupling", "dz_f_coupled"]
    else:
        names += ["dz_i", "dz_f"]
    if options.get("peepholes"):
        names += ["peep_o", "peep_i", "peep_f", "p_i", "p_f", "p_o"]
    return names


# --------------------------------------------------------------------------- the problem and its runs
class _Problem:
    """One random step and the runs that isolate its paths; ``measure(fn)`` gives every checked array."""

    def __init__(self, seed, options):
        rng = np.random.default_rng(seed)
        self.options = {**{k: v[0] for k, v in lstm.OPTIONS.items()}, **options}
        self.params = random_params(lstm.param_shapes(D, H, **options), rng)
        self.x_t = rng.standard_normal((B, D))
        self.h_prev = 0.8 * rng.standard_normal((B, H))
        self.c_prev = rng.standard_normal((B, H))
        self.dh, self.dc = rng.standard_normal((B, H)), rng.standard_normal((B, H))
        self.peep = bool(options.get("peepholes"))

    def cache(self, params):
        _, cache = lstm.step_forward(params, self.x_t, (self.h_prev, self.c_prev), **self.options)
        return cache

    def keep(self, name, gates):
        """A copy of the parameters whose ``name`` is zero outside the row blocks of ``gates``."""
        p = {k: v.copy() for k, v in self.params.items()}
        for g in GATES:
            if g not in gates:
                p[name][_rows(g)] = 0.0
        return p

    def only_peephole(self, keep):
        p = {k: v.copy() for k, v in self.params.items()}
        for s in "ifo":
            if s not in keep:
                p[f"p_{s}"] = np.zeros(H)
        return p

    def runs(self):
        """``(key, params, dstate)`` for the full step and every isolating run."""
        out = [("full", self.params, (self.dh, self.dc))]
        out += [(f"W_ih {g}", self.keep("W_ih", {g}), (self.dh, self.dc)) for g in GATES]
        out += [(f"W_hh {g}", self.keep("W_hh", {g}), (self.dh, self.dc)) for g in GATES]
        out += [("dh = 0", self.params, (np.zeros_like(self.dh), self.dc)),
                ("dc_next = 0", self.params, (self.dh, np.zeros_like(self.dc)))]
        if self.peep:
            out += [("p = 0", self.only_peephole(""), (self.dh, self.dc))]
            out += [(f"only p_{s}", self.only_peephole(s), (self.dh, self.dc)) for s in "ifo"]
        return out

    def measure(self, fn, unpack):
        """Every checked array of ``fn``'s answers, by term (``None`` where the answer lacks it)."""
        terms = {}
        for key, params, dstate in self.runs():
            dx, (dh_prev, dc_prev), dp = unpack(fn(params, self.cache(params), dstate))

            def grad(name, rows=None):
                a = dp.get(name)
                if a is None:
                    return None
                a = np.asarray(a, np.float64)
                if rows is None:
                    return a
                return a[rows] if a.shape == self.params[name].shape else a

            if key == "full":
                for name in ("W_ih", "W_hh", "b"):
                    for g in GATES:
                        terms[f"{name}[{g}]"] = grad(name, _rows(g))
                    terms[name] = grad(name)
                terms.update(x=dx, h_prev=dh_prev, c_prev=dc_prev)
                if self.peep:
                    terms.update({f"p_{s}": grad(f"p_{s}") for s in "ifo"})
            elif key.startswith("W_ih "):
                terms[f"x via {key[-1]}"] = dx
            elif key.startswith("W_hh "):
                terms[f"h_prev via {key[-1]}"] = dh_prev
            elif key == "dh = 0":
                terms["c_prev carousel"] = dc_prev
            elif key == "dc_next = 0":
                terms["c_prev via h"] = dc_prev
            else:                                                   # the peephole runs
                s = "none" if key == "p = 0" else key[-1]
                terms[f"{s}: c_prev"] = dc_prev
                terms[f"{s}: rest"] = _flat(dx, dh_prev, *(grad(n) for n in ("W_ih", "W_hh", "b")))
                if s != "none":
                    terms[f"{s}: p_{s}"] = grad(f"p_{s}")
        return terms


def _flat(*arrays):
    if any(a is None for a in arrays):
        return None
    try:
        return np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays])
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- labels, hints and known slips
def _describe(options):
    """``term -> (label, group, hint)`` for every localised term."""
    coupled, peep = options.get("coupled"), options.get("peepholes")
    d = {}
    for g in GATES:
        rows = _rows(g)
        note = " (must be zero: f = 1 − i has no pre-activation of its own)" if coupled and g == "f" else ""
        d[f"W_ih[{g}]"] = (f"dW_ih rows {rows.start}..{rows.stop - 1}", GROUP[g], f"dW_i{g} = dz_{g}ᵀ x_t{note}")
        d[f"W_hh[{g}]"] = (f"dW_hh rows {rows.start}..{rows.stop - 1}", GROUP[g],
                           f"dW_h{g} = dz_{g}ᵀ h_prev{note}")
        d[f"b[{g}]"] = (f"db[{rows.start}:{rows.stop}]", GROUP[g], f"db_{g} = Σ over the batch of dz_{g}{note}")
        d[f"x via {g}"] = (f"dx_t with only W_i{g} ≠ 0", GROUP[g], f"dx_t = … + dz_{g} W_i{g}")
        d[f"h_prev via {g}"] = (f"dh_prev with only W_h{g} ≠ 0", GROUP[g], f"dh_prev = … + dz_{g} W_h{g}")
    carousel = "dc_prev = dc ⊙ f" + (" + dz_i ⊙ p_i + dz_f ⊙ p_f" if peep else "")
    d["c_prev carousel"] = ("dc_prev with dh = 0 (the carried error alone)", "cell state c",
                            f"{carousel}, with dc = dc_next + …")
    d["c_prev via h"] = ("dc_prev with dc_next = 0 (the error from h_t alone)", "cell state c",
                         f"{carousel}, with dc = … + dh ⊙ o ⊙ (1 − tanh²(c_t))")
    if peep:
        where = {"i": "dz_i ⊙ c_prev", "f": "dz_f ⊙ c_prev", "o": "dz_o ⊙ c_t"}
        for s in "ifo":
            d[f"p_{s}"] = (f"dp_{s}", PEEP_GROUP[s], f"dp_{s} = Σ over the batch of {where[s]}")
            d[f"{s}: c_prev"] = (f"dc_prev with only p_{s} ≠ 0", PEEP_GROUP[s],
                                 {"i": "dc_prev = dc ⊙ f + dz_i ⊙ p_i (z_i = … + p_i ⊙ c_prev)",
                                  "f": "dc_prev = dc ⊙ f + dz_f ⊙ p_f (z_f = … + p_f ⊙ c_prev)",
                                  "o": "dc = … + dz_o ⊙ p_o (z_o = … + p_o ⊙ c_t), before dc_prev = dc ⊙ f"}[s])
            d[f"{s}: rest"] = (f"dx_t, dh_prev, dW_ih, dW_hh, db with only p_{s} ≠ 0", PEEP_GROUP[s],
                               "with only p_o ≠ 0 every gate's error changes, through dc = … + dz_o ⊙ p_o"
                               if s == "o" else f"p_{s} changes only dc_prev and dp_{s}: the rest is as with p = 0")
            d[f"{s}: p_{s}"] = (f"dp_{s} with only p_{s} ≠ 0", PEEP_GROUP[s], f"dp_{s} = Σ over the batch of {where[s]}")
        d["none: c_prev"] = ("dc_prev with p_i = p_f = p_o = 0", "no peepholes (the form of Exercise 3.1)",
                             "dc_prev = dc ⊙ f with dc = dc_next + dh ⊙ o ⊙ (1 − tanh²(c_t))")
        d["none: rest"] = ("dx_t, dh_prev, dW_ih, dW_hh, db with p = 0", "no peepholes (the form of Exercise 3.1)",
                           "with every peephole zero the step is the default LSTM's (Exercise 3.1)")
    return d


def _slips(prob, cache):
    """Known wrong formulas for each gate's dz, computed from the same inputs: ``gate -> {label: dz}``."""
    x_t, h_prev, c_prev, _, i, f, g, o, c, tc, opts = cache
    dh, dc_next = prob.dh, prob.dc
    dz_o = dh * tc * o * (1 - o)
    dc = dc_next + dh * o * (1 - tc * tc)
    if opts["peepholes"]:
        dc = dc + dz_o * prob.params["p_o"]
    df = dc * c_prev
    s = {
        "o": {"the value with do = dh ⊙ c_t (the tanh of h = o ⊙ tanh(c_t) is missing)": dh * c * o * (1 - o),
              "the value without the factor o ⊙ (1 − o) (σ' of the output gate)": dh * tc},
        "g": {"the value with σ' = g ⊙ (1 − g) instead of tanh' = 1 − g² for the candidate": dc * i * g * (1 - g),
              "the value without the factor 1 − g² (tanh' of the candidate)": dc * i},
        "i": {"the value without the factor i ⊙ (1 − i) (σ' of the input gate)": (dc * g - (df if opts["coupled"]
                                                                                           else 0))},
        "f": {} if opts["coupled"] else {
            "the value with df = dc ⊙ c_t (the new cell instead of c_prev)": dc * c * f * (1 - f),
            "the value without the factor f ⊙ (1 − f) (σ' of the forget gate)": df},
    }
    no_h = dc_next + (dz_o * prob.params["p_o"] if opts["peepholes"] else 0)       # dc without the h-path
    s["i"]["the value with dc = dc_next (the path from h_t into the cell is missing)"] = \
        (no_h * g - (no_h * c_prev if opts["coupled"] else 0)) * i * (1 - i)
    if not opts["coupled"]:
        s["f"]["the value with dc = dc_next (the path from h_t into the cell is missing)"] = \
            no_h * c_prev * f * (1 - f)
    else:
        s["i"]["the value without the coupling term (di = dc ⊙ g; f = 1 − i needs di = dc ⊙ g − df)"] = \
            dc * g * i * (1 - i)
        s["i"]["the value with di = dc ⊙ g + df (the coupling term has the wrong sign)"] = (dc * g + df) * i * (1 - i)
    return s


# --------------------------------------------------------------------------- the checker
def _check(probe, options, seed):
    prob = _Problem(seed, options)
    form = _step_form(prob.peep)
    full_cache = prob.cache(prob.params)
    unpack_step_backward(probe, probe.call(prob.params, full_cache, (prob.dh, prob.dc)), 2, form, record=False)

    def unpack(answer):
        return unpack_step_backward(probe, answer, 2, form, record=False)

    got = prob.measure(lambda *a: probe.call(*a), unpack)
    want = prob.measure(lstm.step_backward, unpack)
    mine = prob.measure(_reference, unpack)
    for term, w in want.items():                 # the instrumented copy must be the reference itself
        if not _close(mine[term], w, 1e-10):
            raise RuntimeError(f"chapter 3 checker: the instrumented reference disagrees with lstm.step_backward "
                               f"on {term}")

    # alternatives: the other gates' blocks (gate order) and known slips of each gate's dz
    slips = _slips(prob, full_cache)
    x_t, h_prev = prob.x_t, prob.h_prev
    described = _describe(options)
    for name in ("W_ih", "W_hh", "b"):
        whole = got[name]
        if whole is None or np.shape(whole) != want[name].shape:      # one finding for the whole array
            probe.compare(name, whole, want[name], f"d{name}", "shapes", localise=False)
            continue
        for g in GATES:
            term = f"{name}[{g}]"
            alts = {f"the block of the {GROUP[o]} (the gate order is i, f, g, o)": want[f"{name}[{o}]"]
                    for o in GATES if o != g and np.any(want[f"{name}[{o}]"])}
            for label, dz_alt in slips[g].items():
                alts[label] = {"W_ih": dz_alt.T @ x_t, "W_hh": dz_alt.T @ h_prev, "b": dz_alt.sum(0)}[name]
            label, group, hint = described[term]
            probe.compare(term, got[term], want[term], label, group, hint, alts)
    for term in ("x", "h_prev", "c_prev"):
        probe.compare(term, got[term], want[term], {"x": "dx_t", "h_prev": "dh_prev", "c_prev": "dc_prev"}[term]
                      + " (all paths)", "inputs and state", localise=False)
    for term, (label, group, hint) in described.items():
        if term in want and "[" not in term:
            alts = _p_o_slips(prob, term) if term in ("p_o", "o: p_o") else {}
            probe.compare(term, got[term], want[term], label, group, hint, alts)

    # which terms an error in each quantity spoils, measured on the instrumented reference
    localised = {f.term for f in probe.findings if f.localise}
    for cause in _causes(options):
        spoiled = prob.measure(lambda p, c, s: _reference(p, c, s, spoil=cause), unpack)
        terms = {t for t in localised if t in want and not _close(spoiled[t], want[t], 1e-9)}
        if terms:
            probe.explain(CAUSES[cause], terms)

    # the step inside the library's BPTT, over a whole sequence, against finite differences
    rng = np.random.default_rng(seed + 50)
    params = random_params(lstm.param_shapes(3, 4, **options), rng)
    sequence_check(probe, lstm, params, rng.standard_normal((4, 2, 3)),
                   (0.5 * rng.standard_normal((2, 4)), rng.standard_normal((2, 4))), options, 2, form)


def _p_o_slips(prob, term):
    """dp_o computed with the old cell instead of the new one."""
    params = prob.params if term == "p_o" else prob.only_peephole("o")
    cache = prob.cache(params)
    x_t, h_prev, c_prev, _, i, f, g, o, c, tc, _ = cache
    dz_o = prob.dh * tc * o * (1 - o)
    return {"Σ dz_o ⊙ c_prev (the old cell; z_o = … + p_o ⊙ c_t uses the new one)": (dz_o * c_prev).sum(0)}


# --------------------------------------------------------------------------- the exercises
@exercise("3.1", function="lstm_step_backward", title="backward of one LSTM step (PyTorch form, no peepholes)",
          task="from cache = (x_t, h_prev, c_prev, _, i, f, g, o, c, tanh_c, _) and dstate = (dh, dc), return "
               "(dx_t, (dh_prev, dc_prev), {'W_ih', 'W_hh', 'b'}) with dz stacked in the gate order i, f, g, o")
def check_lstm_step_backward(probe):
    _check(probe, {}, 301)


@exercise("3.2", function="lstm_step_backward_peephole", title="backward of one LSTM step with peepholes",
          task="as Exercise 3.1 for z_i += p_i ⊙ c_prev, z_f += p_f ⊙ c_prev, z_o += p_o ⊙ c_t: add dz_o ⊙ p_o "
               "to dc, dz_i ⊙ p_i + dz_f ⊙ p_f to dc_prev, and return dp_i, dp_f, dp_o as well")
def check_lstm_step_backward_peephole(probe):
    _check(probe, {"peepholes": True}, 302)


@exercise("3.3", function="lstm_step_backward_cifg", title="backward of one LSTM step with coupled input and "
          "forget gates (CIFG, no peepholes)",
          task="as Exercise 3.1 for f = 1 − i: the forget gate's error df = dc ⊙ c_prev goes to the input gate "
               "(di = dc ⊙ g − df) and the forget gate's rows of W_ih, W_hh, b get a zero gradient")
def check_lstm_step_backward_cifg(probe):
    _check(probe, {"coupled": True}, 303)

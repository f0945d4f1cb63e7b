"""Helpers shared by the checkers: random problems, answers of a cell step, whole-sequence checks."""
from __future__ import annotations

import types

import numpy as np

from ... import gradcheck
from ...numpy_ref import bptt
from ..grading import BadAnswer, Probe


def random_params(shapes: dict, rng, scale: float = 0.6) -> dict:
    """Every entry random, biases included: a zero bias can hide a gate mix-up."""
    return {k: scale * rng.standard_normal(s) for k, s in shapes.items()}


def unpack_step_backward(probe: Probe, answer, n_state: int, what: str, record: bool = True):
    """Check the form ``(dx_t, (dstate…), dparams)`` of a step backward's answer; return its parts.

    A single state gradient returned bare instead of as a 1-tuple is accepted but
    recorded as a wrong "return form" (the BPTT driver needs the tuple).
    """
    form = f"return {what}"
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        got = f"a {type(answer).__name__}" + (f" of length {len(answer)}" if isinstance(answer, (tuple, list)) else "")
        raise BadAnswer(f"{form}; your function returned {got}")
    dx, dstate, dparams = answer
    bare = hasattr(dstate, "shape") and n_state == 1
    if bare:
        dstate = (dstate,)
    if record:
        probe.expect("return form", not bare, "the state gradient must be a tuple (dh_prev,), as the state is (h,)",
                     label="(dh_prev,) is a tuple", group="return form", localise=False)
    if not isinstance(dstate, (tuple, list)) or len(dstate) != n_state:
        raise BadAnswer(f"{form}; the second entry must be a tuple of {n_state} array(s), got {type(dstate).__name__}")
    if not isinstance(dparams, dict):
        raise BadAnswer(f"{form}; the third entry must be a dict of parameter gradients, "
                        f"got {type(dparams).__name__}")
    return dx, tuple(dstate), dparams


def proxy_cell(module, step_backward):
    """The reference cell ``module`` with its ``step_backward`` replaced (for the library's BPTT driver)."""
    names = ("NAME", "OPTIONS", "STATE_NAMES", "param_shapes", "hidden_size", "step_forward")
    return types.SimpleNamespace(**{n: getattr(module, n) for n in names}, step_backward=step_backward)


def sequence_check(probe: Probe, module, params: dict, x, state0: tuple, options: dict, n_state: int,
                   what: str, group: str = "whole sequence vs finite differences", tol: float = 1e-6):
    """Unroll the student's step backward with the library's BPTT over ``x`` and check every
    gradient against centred finite differences (``rnnbook.gradcheck``).  Not used to localise."""
    def student_step(p, cache, dstate):
        dx, ds, dp = unpack_step_backward(probe, probe.call(p, cache, dstate), n_state, what, record=False)
        return dx, ds, {k: np.asarray(dp.get(k), np.float64) for k in p}

    cell = proxy_cell(module, student_step)
    inputs = {**{f"d{k}": v for k, v in params.items()}, "dx": x,
              **{f"dstate0[{i}]": s for i, s in enumerate(state0)}}

    def split(inp):
        p = {k[1:]: v for k, v in inp.items() if not (k == "dx" or k.startswith("dstate0"))}
        return p, inp["dx"], tuple(inp[f"dstate0[{i}]"] for i in range(len(state0)))

    def f(inp):
        p, xx, s0 = split(inp)
        y, state, _ = bptt.forward(module, p, xx, s0, **options)
        return (y,) + tuple(state)

    def grad_fn(inp, upstream):
        p, xx, s0 = split(inp)
        _, _, cache = bptt.forward(module, p, xx, s0, **options)
        g = bptt.backward(cell, p, cache, upstream[0], tuple(upstream[1:]))
        out = {f"d{k}": g[k] for k in p}
        out["dx"] = g["x"]
        out.update({f"dstate0[{i}]": s for i, s in enumerate(g["state0"])})
        return out

    try:
        report = gradcheck.check_function(f, inputs, grad_fn, seed=7)
    except (ValueError, KeyError, TypeError) as exc:     # shapes the driver cannot add up
        probe.expect("sequence", False, f"could not be run ({exc}); fix the step's shapes first",
                     label="BPTT over a sequence", group=group, localise=False)
        return
    for e in report.entries:
        probe.expect(f"sequence {e.name}", e.max_error < tol,
                     f"finite differences disagree (rel err {e.max_error:.2g}; worst at {list(e.index)}: "
                     f"yours {e.analytic:.6g}, numerical {e.numeric:.6g})",
                     label=e.name, group=group, localise=False)

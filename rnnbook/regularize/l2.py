r"""An explicit L2 penalty, and how it differs from (decoupled) weight decay.

The penalty on the parameters in ``names``, with coefficient ``λ``::

    R(θ) = (λ/2) Σ_{W ∈ names} ‖W‖²_F          ∂R/∂W = λ W

is added to the loss, so its gradient joins the data gradient *before* the
optimiser sees it.  ``rnnbook.optim``'s ``weight_decay`` instead shrinks the
parameters directly, ``θ <- θ - η λ θ``, next to the update.  For plain SGD the
two are the same step::

    penalty:  θ <- θ - η (g + λθ)          decay:  θ <- (θ - ηλθ) - η g

With momentum the penalty's ``λθ`` also enters the velocity; with Adam it is
divided by ``sqrt(v̂)`` like every other gradient, so weights with large
gradients are barely decayed -- the reason Loshchilov & Hutter's AdamW
decouples the decay.  Default ``names``: every weight matrix (``ndim >= 2``), not
the biases, which regularising does little for.
"""
from __future__ import annotations

import numbers

from ..arrays import array_module


def default_names(params: dict) -> list:
    """The weight matrices: every parameter with at least two dimensions."""
    return [k for k, v in params.items() if getattr(v, "ndim", 0) >= 2]


def l2_penalty(params: dict, coeff: float, names=None):
    """``(R, dR)``: the penalty ``(λ/2) Σ ‖W‖²`` and a gradient dict (zeros for the other parameters)."""
    if isinstance(coeff, bool) or not isinstance(coeff, numbers.Real) or not coeff >= 0:
        raise ValueError(f"coeff (λ) must be a non-negative real number, got {coeff!r}")
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    names = default_names(params) if names is None else list(names)
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"L2 names {missing} are not parameters; present: {sorted(params)}")
    value = 0.5 * coeff * sum(float((params[k] * params[k]).sum()) for k in names)
    grads = {k: (coeff * v if k in names else array_module(v).zeros_like(v)) for k, v in params.items()}
    return value, grads


def add_grads(grads: dict, extra: dict) -> dict:
    """``grads + extra`` entry by entry (``extra`` may cover a subset of the names)."""
    unknown = [k for k in extra if k not in grads]
    if unknown:
        raise ValueError(f"extra gradients for {unknown}, which are not in grads")
    return {k: (g + extra[k] if k in extra else g) for k, g in grads.items()}

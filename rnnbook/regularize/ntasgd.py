r"""NT-ASGD: SGD that switches to averaging its iterates when validation stalls.

Averaged SGD (Polyak & Juditsky 1992) runs plain SGD with a constant step

    θ_{k+1} = θ_k - η g_k

and, from some step ``K`` on, reports the mean of the iterates instead of the
last one::

    θ̄ = 1/(k - K + 1) · Σ_{i=K}^{k} θ_i

The mean smooths away the noise of a constant-step SGD that is bouncing around
a minimum.  The question is when to start.  Merity, Keskar & Socher 2017
(*Regularizing and Optimizing LSTM Language Models*, Algorithm 1) make the
start *non-monotonically triggered*: every ``L`` steps the validation metric
``v`` is computed and appended to ``logs``; averaging starts at the first check
``t`` (counting checks from 0) with

    t > n   and   v > min_{l ∈ {0, …, t-n-1}} logs[l]

i.e. when ``v`` is worse than the best value recorded *before* the last ``n``
checks.  The last ``n`` checks are allowed to wander (the "non-monotone
interval" ``n``, 5 in the paper); averaging starts only once the metric has
failed to beat the old best for more than ``n`` checks in a row.  After the
trigger no more checks are needed, and the model is evaluated with ``θ̄``.

Indexing used here: ``K`` is the step count at the trigger, and ``θ_K`` the
parameters the triggering check validated; the average holds ``θ_K`` and the
parameters after every later step.  It is kept as a running mean,

    θ̄ <- θ̄ + (θ - θ̄) / m          (m = number of iterates averaged so far)

so no iterate is stored.
"""
from __future__ import annotations

import math
import numbers

from ..optim import SGD


def nonmonotone_trigger(logs, value: float, nonmono: int) -> bool:
    """The NT-ASGD condition for a new check: ``t > n and value > min(logs[:t-n])``, ``t = len(logs)``.

    ``logs`` holds the earlier checks' values (not ``value`` itself).
    """
    t = len(logs)
    return t > nonmono and value > min(logs[:t - nonmono])


class NTASGD(SGD):
    """Non-monotonically triggered averaged SGD.

    ``NTASGD(lr, nonmono=5, weight_decay=0.0)``: constant-step SGD (no momentum, as
    in the paper).  Call :meth:`check` with each validation value (every ``L``
    steps, ``L`` of your choosing); from the check that triggers on, every
    :meth:`step` also updates the running mean of the iterates, and
    :meth:`averaged_params` returns it for evaluation.

        opt = NTASGD(lr=1.0, nonmono=5)
        for k in range(steps):
            opt.step(params, grads)
            if k % L == 0:
                opt.check(validation_loss(opt.averaged_params(params)), params)
    """

    def __init__(self, lr: float = 1.0, nonmono: int = 5, weight_decay: float = 0.0):
        super().__init__(lr=lr, momentum=0.0, weight_decay=weight_decay)
        if isinstance(nonmono, bool) or not isinstance(nonmono, numbers.Integral) or nonmono < 1:
            raise ValueError(f"nonmono (the non-monotone interval n) must be a positive integer, "
                             f"got {nonmono!r}")
        self.nonmono = int(nonmono)
        self.logs: list = []              # every validation value passed to check(), in order
        self.steps = 0                    # optimiser steps taken
        self.trigger_step = None          # K: the step count when averaging started
        self.trigger_check = None         # index of the check that triggered
        self.num_averaged = 0             # m: iterates in the running mean
        self._mean: dict | None = None

    @property
    def averaging(self) -> bool:
        return self._mean is not None

    def step(self, params: dict, grads: dict) -> None:
        super().step(params, grads)                     # θ_{k+1} = θ_k - η g_k
        self.steps += 1
        if self.averaging:
            self._accumulate(params)

    def _accumulate(self, params):
        self.num_averaged += 1
        m = self.num_averaged
        for k, v in params.items():
            self._mean[k] += (v - self._mean[k]) / m    # θ̄ <- θ̄ + (θ - θ̄)/m

    def check(self, value: float, params: dict) -> bool:
        """Record a validation value; start averaging (at ``params``) if it triggers.

        Returns ``True`` exactly at the check that triggers.  Checks after the
        trigger are recorded in ``logs`` and change nothing.
        """
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ValueError(f"the validation value must be a finite real number, got {value!r}")
        value = float(value)
        fire = not self.averaging and nonmonotone_trigger(self.logs, value, self.nonmono)
        self.logs.append(value)
        if fire:
            self.trigger_step = self.steps
            self.trigger_check = len(self.logs) - 1
            self._mean = {k: v.copy() for k, v in params.items()}    # θ̄ = θ_K
            self.num_averaged = 1
        return fire

    def averaged_params(self, params: dict) -> dict:
        """The parameters to evaluate: the running mean once averaging has started,
        otherwise (copies of) ``params`` themselves."""
        source = self._mean if self.averaging else params
        return {k: v.copy() for k, v in source.items()}

"""The training loop: gradient, clipping, optimiser step, progress bar, loss history."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from tqdm.auto import tqdm

from .clipping import clip_by_global_norm, clip_by_value, global_norm


@dataclass
class History:
    """What happened during training, one entry per step."""
    loss: list = field(default_factory=list)
    grad_norm: list = field(default_factory=list)
    seconds: float = 0.0

    def smoothed(self, beta: float = 0.95) -> list:
        """Exponential moving average of the loss (bias-corrected), as the progress bar shows."""
        out, avg = [], 0.0
        for i, v in enumerate(self.loss, 1):
            avg = beta * avg + (1 - beta) * v
            out.append(avg / (1 - beta ** i))
        return out


def train(step_fn: Callable, params: dict, optimizer, steps: int, clip_norm: float | None = None,
          clip_value: float | None = None, progress: bool = True, desc: str = "training",
          callback: Callable | None = None, callback_every: int = 100) -> History:
    """Run ``steps`` optimisation steps.

    ``step_fn(params, step) -> (loss, grads)`` computes the loss and gradients of one
    batch.  Gradients are clipped (by global norm, then by value, if asked), the
    optimiser updates ``params`` in place, and ``callback(step, params, history)``
    runs every ``callback_every`` steps (print samples from it with ``tqdm.write``).
    Stops with an error if the loss becomes NaN or infinite.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    history = History()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for step in bar:
        loss, grads = step_fn(params, step)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {step}; lower the learning rate or clip")
        if clip_norm is not None:
            grads, norm = clip_by_global_norm(grads, clip_norm)
        else:
            norm = global_norm(grads)
        if clip_value is not None:
            grads = clip_by_value(grads, clip_value)
        optimizer.step(params, grads)
        history.loss.append(float(loss))
        history.grad_norm.append(norm)
        if progress and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f"{history.smoothed()[-1]:.3f}")
        if callback is not None and ((step + 1) % callback_every == 0 or step == steps - 1):
            callback(step, params, history)
    history.seconds = time.perf_counter() - start
    return history

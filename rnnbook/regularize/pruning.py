r"""Gradual magnitude pruning (Zhu & Gupta 2017, *To prune, or not to prune*).

Each pruned matrix ``W`` carries a binary mask ``P`` of its shape; the network
uses ``P ⊙ W``.  During training the target sparsity (the fraction of zeros)
rises from ``s_i`` to ``s_f`` over ``n`` pruning steps, one every ``Δt``
training steps starting at step ``t_0``, along the cubic schedule

    s_t = s_f + (s_i - s_f) (1 - (t - t_0)/(n Δt))³        t ∈ {t_0, t_0 + Δt, …, t_0 + n Δt}

which prunes fast while there are many redundant weights and slowly as the
target nears.  At each pruning step, in every selected matrix separately, the
``k = round(s_t · N)`` entries of smallest magnitude ``|W|`` get ``P = 0`` (ties
are broken by position, so exactly ``k`` are pruned and the achieved sparsity is
``k / N``, the target to within half an entry).  Between pruning steps the mask
is held; before ``t_0`` there is none.  Pruned weights are kept at zero: their
gradients are masked before every optimiser step (``dW <- P ⊙ dW``) and
``W <- P ⊙ W`` is applied after it (momentum or Adam state could otherwise move
them).  A pruned weight is zero, so it is also the smallest at the next pruning
step: the pruned set only grows.

Which matrices: by default every weight matrix (``ndim >= 2``: embedding, input
and recurrent weights, read-out), not the biases; ``names`` picks others.

Equal memory.  The paper compares a *large-sparse* model with a *small-dense* one
holding the same number of non-zero parameters (the index overhead of a sparse
format is ignored here, as in the paper's headline comparison).
:func:`sequence_model_param_count` counts the parameters of a
``SequenceModel`` as a function of its hidden size ``H``; for one LSTM layer
with vocabulary ``V`` and embedding width ``E``

    N(H) = V E  +  4H (E + H) + 4H  +  V H + V

and :func:`equal_memory_hidden_size` finds the largest ``H`` with
``N(H) <= nnz``.  :func:`small_dense_hidden_size` does both for a pruned model.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..arrays import array_module, to_numpy


# ----------------------------------------------------------------------------- schedule
def _check_schedule(final_sparsity, begin_step, frequency, n_updates, initial_sparsity):
    for name, s in (("final_sparsity", final_sparsity), ("initial_sparsity", initial_sparsity)):
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0.0 <= s < 1.0:
            raise ValueError(f"{name} must be a real number in [0, 1), got {s!r}")
    if not initial_sparsity <= final_sparsity:
        raise ValueError(f"initial_sparsity ({initial_sparsity}) must not exceed final_sparsity "
                         f"({final_sparsity})")
    for name, v, low in (("begin_step", begin_step, 0), ("frequency", frequency, 1), ("n_updates", n_updates, 1)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def cubic_sparsity(step, final_sparsity, begin_step=0, frequency=100, n_updates=10, initial_sparsity=0.0):
    """The schedule ``s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(nΔt))³``, held at ``s_i`` before
    ``t_0`` and at ``s_f`` after ``t_0 + nΔt``."""
    _check_schedule(final_sparsity, begin_step, frequency, n_updates, initial_sparsity)
    span = n_updates * frequency                                        # n Δt
    if step <= begin_step:
        return float(initial_sparsity)
    if step >= begin_step + span:
        return float(final_sparsity)
    frac = (step - begin_step) / span                                   # (t - t_0)/(nΔt)
    return final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - frac) ** 3


# ----------------------------------------------------------------------------- masks
def magnitude_mask(W, sparsity: float):
    """A 0/1 mask of ``W``'s shape that zeroes the ``round(sparsity · N)`` smallest ``|W|``."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be a real number in [0, 1], got {sparsity!r}")
    w = to_numpy(W)
    k = int(math.floor(sparsity * w.size + 0.5))                        # round half up
    mask = np.ones(w.size, dtype=w.dtype)
    order = np.argsort(np.abs(w).ravel(), kind="stable")                # smallest first, ties by position
    mask[order[:k]] = 0
    mask = mask.reshape(w.shape)
    return mask if isinstance(W, np.ndarray) else array_module(W).asarray(mask)


def count_nonzero(params: dict, names=None) -> int:
    """Non-zero entries over ``names`` (default: every parameter, biases included)."""
    names = list(params) if names is None else names
    return int(sum(int(np.count_nonzero(to_numpy(params[k]))) for k in names))


def sparsity_report(params: dict, names) -> dict:
    """``{name: fraction of zeros}`` for each of ``names``, and ``"total"`` over all of them."""
    out, zeros, size = {}, 0, 0
    for k in names:
        w = to_numpy(params[k])
        z = int(w.size - np.count_nonzero(w))
        out[k] = z / w.size
        zeros, size = zeros + z, size + w.size
    out["total"] = zeros / size if size else 0.0
    return out


class GradualPruner:
    """Masks, schedule and bookkeeping of gradual magnitude pruning.

    ``GradualPruner(final_sparsity, begin_step=0, frequency=100, n_updates=10,
    initial_sparsity=0.0, names=None)``; ``names`` is a list of parameter names, a
    predicate ``f(name, array) -> bool``, or ``None`` for every weight matrix.

    Per training step ``t`` (0, 1, 2, …)::

        grads = pruner.mask_grads(grads)      # dW <- P ⊙ dW
        optimizer.step(params, grads)
        pruner.update(params, t)              # new masks at pruning steps, then W <- P ⊙ W

    :class:`PrunedOptimizer` wraps an optimiser to do exactly that.
    """

    def __init__(self, final_sparsity, begin_step=0, frequency=100, n_updates=10, initial_sparsity=0.0,
                 names=None):
        _check_schedule(final_sparsity, begin_step, frequency, n_updates, initial_sparsity)
        if not (names is None or callable(names) or isinstance(names, (list, tuple))):
            raise TypeError(f"names must be None, a list of parameter names or a predicate, "
                            f"got {type(names).__name__}")
        self.final_sparsity = float(final_sparsity)
        self.initial_sparsity = float(initial_sparsity)
        self.begin_step, self.frequency, self.n_updates = int(begin_step), int(frequency), int(n_updates)
        self.names = names
        self.masks: dict = {}
        self.history: list = []           # (step, target sparsity) at each pruning step

    @property
    def end_step(self) -> int:
        """``t_0 + n Δt``: the last pruning step (the sparsity reaches ``s_f`` there)."""
        return self.begin_step + self.n_updates * self.frequency

    def sparsity_at(self, step) -> float:
        """The target ``s_t`` of the cubic schedule."""
        return cubic_sparsity(step, self.final_sparsity, self.begin_step, self.frequency, self.n_updates,
                              self.initial_sparsity)

    def is_pruning_step(self, step) -> bool:
        return self.begin_step <= step <= self.end_step and (step - self.begin_step) % self.frequency == 0

    def selected(self, params: dict) -> list:
        """The names of the matrices this pruner acts on."""
        if self.names is None:
            return [k for k, v in params.items() if getattr(v, "ndim", 0) >= 2]
        if callable(self.names):
            return [k for k, v in params.items() if self.names(k, v)]
        missing = [k for k in self.names if k not in params]
        if missing:
            raise ValueError(f"pruning names {missing} are not parameters; present: {sorted(params)}")
        return list(self.names)

    def prune(self, params: dict, sparsity: float) -> None:
        """New masks at ``sparsity`` from the current magnitudes, applied to ``params`` in place."""
        for k in self.selected(params):
            self.masks[k] = magnitude_mask(params[k], sparsity)
        self.apply(params)

    def apply(self, params: dict) -> None:
        """``W <- P ⊙ W`` in place for every masked matrix."""
        for k, m in self.masks.items():
            params[k] *= m

    def mask_grads(self, grads: dict) -> dict:
        """``dW <- P ⊙ dW``: a new dict (other entries are the same arrays)."""
        return {k: (g * self.masks[k] if k in self.masks else g) for k, g in grads.items()}

    def update(self, params: dict, step: int):
        """After optimiser step ``step``: re-prune if it is a pruning step, then apply the masks.

        Returns the target sparsity when it pruned, else ``None``.
        """
        target = None
        if self.is_pruning_step(step):
            target = self.sparsity_at(step)
            self.prune(params, target)
            self.history.append((int(step), target))
        else:
            self.apply(params)
        return target

    def report(self, params: dict) -> dict:
        """Achieved sparsity per selected matrix, and ``"total"`` over them."""
        return sparsity_report(params, self.selected(params))


class PrunedOptimizer:
    """Wrap an optimiser so that pruned weights get no update and stay zero.

    ``step(params, grads)``: mask the gradients, take the inner step, then
    ``pruner.update(params, t)`` with ``t`` the number of steps taken before this one.
    """

    def __init__(self, optimizer, pruner: GradualPruner, start_step: int = 0):
        if not hasattr(optimizer, "step"):
            raise TypeError(f"optimizer must have a step(params, grads) method, got {type(optimizer).__name__}")
        self.optimizer, self.pruner, self.t = optimizer, pruner, int(start_step)

    def step(self, params: dict, grads: dict) -> None:
        self.optimizer.step(params, self.pruner.mask_grads(grads))
        self.pruner.update(params, self.t)
        self.t += 1


# ----------------------------------------------------------------------------- equal memory
def sequence_model_param_count(cell: str, hidden_size: int, vocab_size: int, embed_dim=None, num_layers: int = 1,
                               output_size=None, **cell_options) -> int:
    """Number of parameters of ``SequenceModel(cell, hidden_size, vocab_size=…, embed_dim=…, num_layers=…)``.

    Counted from the reference cells' ``param_shapes`` (no arrays are made), so it is
    cheap for any size.  ``embed_dim=None`` means ``hidden_size``, as in ``SequenceModel``.
    """
    from ..numpy_ref import CELLS
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r} for counting; known cells: {sorted(CELLS)}")
    for name, v in (("hidden_size", hidden_size), ("vocab_size", vocab_size), ("num_layers", num_layers)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    E = hidden_size if embed_dim is None else embed_dim
    V_out = vocab_size if output_size is None else output_size
    shapes = CELLS[cell].param_shapes
    n = vocab_size * E                                                     # embedding (V, E)
    for l in range(num_layers):
        D = E if l == 0 else hidden_size
        n += sum(math.prod(s) for s in shapes(D, hidden_size, **cell_options).values())
    n += V_out * hidden_size + V_out                                       # read-out W (V, H), b (V,)
    return int(n)


def equal_memory_hidden_size(nonzeros: int, count_fn, max_hidden: int = 1 << 20) -> int:
    """The largest ``H`` with ``count_fn(H) <= nonzeros`` (``count_fn`` must increase with ``H``)."""
    if isinstance(nonzeros, bool) or not isinstance(nonzeros, numbers.Integral) or nonzeros < 1:
        raise ValueError(f"nonzeros must be a positive integer, got {nonzeros!r}")
    if count_fn(1) > nonzeros:
        raise ValueError(f"even hidden size 1 needs {count_fn(1)} parameters, more than {nonzeros}")
    lo, hi = 1, 2
    while count_fn(hi) <= nonzeros:                                        # bracket: N(lo) <= nnz < N(hi)
        lo, hi = hi, 2 * hi
        if hi > max_hidden:
            raise ValueError(f"no hidden size up to {max_hidden} reaches {nonzeros} parameters")
    while hi - lo > 1:                                                     # bisect
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count_fn(mid) <= nonzeros else (lo, mid)
    return lo


def small_dense_hidden_size(model, params: dict, scale_embedding: bool = False) -> int:
    """Hidden size of the dense ``model``-like network with as many parameters as ``params`` has non-zeros.

    ``model`` is a token ``SequenceModel`` (or anything with its ``cell``,
    ``vocab_size``, ``embed_dim``, ``num_layers``, ``output_size`` and
    ``core_options``).  The embedding width stays at the model's unless
    ``scale_embedding`` (then it equals the hidden size, as when ``embed_dim=None``).
    """
    if not getattr(model, "vocab_size", None):
        raise ValueError("small_dense_hidden_size needs a token model (vocab_size)")
    options = {k: v for k, v in getattr(model, "core_options", {}).items()
               if k not in ("cell", "residual", "bidirectional")}
    if model.core_options.get("bidirectional") or model.core_options.get("residual"):
        raise ValueError("counting supports plain (unidirectional, non-residual) stacks only")
    embed = None if scale_embedding else model.embed_dim

    def count(H):
        return sequence_model_param_count(model.cell, H, model.vocab_size, embed, model.num_layers,
                                          model.output_size, **options)

    return equal_memory_hidden_size(count_nonzero(params), count)

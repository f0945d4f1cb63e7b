r"""DropConnect on the recurrent weights: the weight-dropped RNN of AWD-LSTM.

Merity, Keskar & Socher 2017 (*Regularizing and Optimizing LSTM Language Models*)
regularise the recurrent connection not by dropping activations ``h_{t-1}`` but
by dropping *weights*: once per forward pass (per batch) they draw a mask ``M``
of the shape of ``W_hh`` and run the unchanged cell with

    W̃_hh = M ⊙ W_hh,      M_ij = ξ_ij / (1 - p),   ξ_ij ~ Bernoulli(1 - p)      (4H, H) for an LSTM

The same ``W̃_hh`` serves every time step and every sequence of the batch, so
the recurrence is regularised consistently over time (a dropped connection
``j -> i`` stays dropped for the whole batch), and the cell itself -- on any
backend, however fused its kernel -- never needs to know: it simply receives a
masked copy of its parameters through ``rnnbook.dispatch``.  As in AWD-LSTM's
implementation the mask is inverted (scaled by ``1/(1-p)``) and evaluation uses
``W_hh`` unmasked.

Gradient.  The loss depends on ``W_hh`` only through ``W̃_hh``, entry by entry::

    ∂L/∂W_hh[i, j] = Σ_kl ∂L/∂W̃_hh[k, l] · ∂W̃_hh[k, l]/∂W_hh[i, j]
                   = Σ_kl ∂L/∂W̃_hh[k, l] · M_kl δ_ik δ_jl
                   = M_ij · ∂L/∂W̃_hh[i, j]

so ``dW_hh = M ⊙ dW̃_hh``: run the cell's ordinary backward with the masked
parameters and multiply the masked gradients by the mask.  A dropped weight gets
no gradient in that batch.  Gradients for every other parameter, for ``x`` and
for ``state0`` pass through unchanged.

Which matrices: by default every parameter whose name (after the last ``.``) is
``W_hh`` -- the cell's own, or ``layer0.W_hh``, ``layer1.W_hh`` … of a
``stacked`` core, or ``fwd.W_hh``/``bwd.W_hh`` of a bidirectional one.

Relation to variational dropout of the hidden state (Gal & Ghahramani 2016):
zeroing *column* ``j`` of ``W_hh`` for a whole batch is dropping unit ``j`` of
``h_{t-1}`` from every gate's recurrent input with one tied mask shared by the
batch; DropConnect drops single connections instead, and needs no change to the cell.
"""
from __future__ import annotations

import numpy as np

from .. import dispatch
from ..arrays import array_module
from .dropout import check_probability, sample_mask


def default_names(params: dict) -> list:
    """Every parameter named ``W_hh`` or ``<prefix>.W_hh``."""
    return [k for k in params if k.rsplit(".", 1)[-1] == "W_hh"]


def _check_names(params, names):
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    names = default_names(params) if names is None else list(names)
    missing = [k for k in names if k not in params]
    if missing:
        raise ValueError(f"DropConnect names {missing} are not parameters; present: {sorted(params)}")
    if not names:
        raise ValueError(f"no parameter to mask: none is named W_hh in {sorted(params)}; pass names=[…]")
    return names


def sample_masks(params: dict, p: float, rng: np.random.Generator, names=None) -> dict:
    """One inverted-dropout mask per masked matrix, of that matrix's shape, dtype and array type."""
    p = check_probability(p)
    return {k: sample_mask(params[k].shape, p, rng, "standard", params[k].dtype, array_module(params[k]))
            for k in _check_names(params, names)}


def apply_masks(params: dict, masks: dict) -> dict:
    """A new parameter dict with ``W̃ = M ⊙ W`` for every masked name (the others are the same arrays)."""
    for k, m in masks.items():
        if k not in params:
            raise ValueError(f"mask for {k!r}, which is not a parameter; present: {sorted(params)}")
        if tuple(m.shape) != tuple(params[k].shape):
            raise ValueError(f"mask for {k!r} has shape {tuple(m.shape)}, the parameter has "
                             f"{tuple(params[k].shape)}")
    return {k: (v * masks[k] if k in masks else v) for k, v in params.items()}


def masked_grads(grads: dict, masks: dict) -> dict:
    """``dW = M ⊙ dW̃`` for every masked name; other entries unchanged."""
    return {k: (g * masks[k] if k in masks else g) for k, g in grads.items()}


def forward(architecture: str, params: dict, x, state0=None, masks=None, backend=None, **options):
    """Run ``architecture`` through dispatch with the masked parameters ``M ⊙ W``.

    ``masks=None`` (or ``{}``) runs the plain cell.  Returns ``(y, state, cache)``;
    ``cache`` keeps the masks and the masked parameters for :func:`backward`.
    """
    masks = {} if masks is None else masks
    masked = apply_masks(params, masks)
    y, state, inner = dispatch.forward(architecture, masked, x, state0, backend=backend, **options)
    return y, state, {"inner": inner, "masks": masks, "masked_params": masked, "architecture": architecture}


def backward(architecture: str, params: dict, cache: dict, dy, dstate=None, window=None) -> dict:
    """Gradients w.r.t. the *unmasked* parameters (plus ``"x"`` and ``"state0"``)."""
    if not isinstance(cache, dict) or "masked_params" not in cache:
        raise TypeError("cache must be the third value returned by dropconnect.forward")
    if cache["architecture"] != architecture:
        raise ValueError(f"cache was made by {cache['architecture']!r}, not {architecture!r}")
    g = dispatch.backward(architecture, cache["masked_params"], cache["inner"], dy, dstate, window=window)
    return masked_grads(g, cache["masks"])


class DropConnect:
    """A seeded source of DropConnect masks with a train/eval switch.

    ``DropConnect(p, names=None, seed=0)``; ``names=None`` masks every ``W_hh``.

        wd = DropConnect(0.5, seed=0)
        y, state, cache = wd.forward("lstm", params, x)     # one new mask per call
        grads = wd.backward("lstm", params, cache, dy)      # dW_hh = M ⊙ dW̃_hh
    """

    def __init__(self, p: float, names=None, seed: int = 0):
        self.p = check_probability(p)
        self.names = None if names is None else list(names)
        self.rng = np.random.default_rng(seed)
        self.training = True

    def train(self) -> "DropConnect":
        self.training = True
        return self

    def eval(self) -> "DropConnect":
        self.training = False
        return self

    def masks(self, params: dict) -> dict:
        """Fresh masks for ``params`` (``{}`` in evaluation mode or with ``p = 0``)."""
        if not (self.training and self.p > 0):
            _check_names(params, self.names)
            return {}
        return sample_masks(params, self.p, self.rng, self.names)

    def forward(self, architecture, params, x, state0=None, backend=None, **options):
        return forward(architecture, params, x, state0, self.masks(params), backend=backend, **options)

    @staticmethod
    def backward(architecture, params, cache, dy, dstate=None, window=None):
        return backward(architecture, params, cache, dy, dstate, window)

    def __repr__(self) -> str:
        return f"DropConnect(p={self.p}, names={self.names or 'every W_hh'}, " \
               f"{'train' if self.training else 'eval'})"

r"""Dropout for recurrent networks: where the mask goes and how long it lives.

Inverted dropout with drop probability ``p`` multiplies an activation by a mask
whose entries are independent draws

    m = ξ / (1 - p),      ξ ~ Bernoulli(1 - p)          so m ∈ {0, 1/(1-p)}

and ``E[m] = 1``: the layer's output keeps its expectation, and evaluation uses
the activations as they are (no mask, no rescaling).  Forward and backward::

    y  = x ⊙ m                                           (the mask broadcasts)
    dx = dy ⊙ m                                          # y = x ⊙ m, m held fixed

The three kinds differ only in the *shape* of the mask, i.e. in which entries
share one draw.  For a time-major sequence ``x (T, B, D)``:

``"standard"`` (Zaremba, Sutskever & Vinyals 2014, *Recurrent Neural Network
Regularization*): a fresh mask for every entry, so a new mask at every time
step, ``m (T, B, D)``.  Zaremba et al. put it on the *non-recurrent*
connections only -- between the embedding and the first layer, between stacked
layers, and before the read-out -- and leave ``h_{t-1} -> h_t`` untouched, so
that the memory is not corrupted ``T`` times over::

    x^(0)_t = E[i_t] ⊙ m^in_t,    x^(l)_t = h^(l-1)_t ⊙ m^(l)_t,    o_t = (h^(L-1)_t ⊙ m^out_t) W^T + b

``"variational"`` (tied, "locked" mask; Gal & Ghahramani 2016, the locked
dropout of AWD-LSTM): one mask per sequence, the same at every time step,
``m (1, B, D)`` broadcast over ``T``.  Unit ``d`` of sequence ``b`` is either on
for the whole sequence or off for the whole sequence, which is what a Bayesian
reading of dropout (one sampled network per sequence) asks for.

``"embedding"`` (Gal & Ghahramani; AWD-LSTM): drop whole *word types*, i.e. rows
of the embedding matrix ``E (V, D)``, with a mask ``m (V, 1)``::

    Ẽ = m ⊙ E,    x_t = Ẽ[i_t]               dE = m ⊙ dẼ

so every occurrence of a dropped token in the batch reads a zero vector.

The module has two layers: pure functions (``mask_shape``, ``sample_mask``,
``forward``, ``backward``) that take the mask as an argument -- what the
gradient checks use, with the mask held fixed -- and :class:`Dropout`, a seeded
source of masks with a ``train()``/``eval()`` switch.
"""
from __future__ import annotations

import numbers

import numpy as np

from ..arrays import array_module
from ..checks import check_float_array

KINDS = ("standard", "variational", "embedding")


def check_probability(p, name: str = "p") -> float:
    """A drop probability must be a real number in ``[0, 1)`` (``p = 1`` would divide by zero)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{name} must be a real number in [0, 1), got {type(p).__name__} {p!r}")
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"{name} must lie in [0, 1) (the probability of dropping a unit), got {p!r}")
    return float(p)


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def mask_shape(kind: str, shape: tuple) -> tuple:
    """The shape of the mask for an array of ``shape``; singleton axes share one draw.

    ``standard``: ``shape`` itself.  ``variational``: ``(1,) + shape[1:]`` (one mask per
    sequence, shared along the time axis 0).  ``embedding``: ``(V, 1, …)`` (one draw per row).
    """
    _check_kind(kind)
    shape = tuple(int(s) for s in shape)
    if kind == "variational" and len(shape) < 2:
        raise ValueError(f"variational dropout needs a time-major array (T, B, …) with at least 2 "
                         f"dimensions, got shape {shape}")
    if kind == "embedding" and len(shape) != 2:
        raise ValueError(f"embedding dropout acts on an embedding matrix (V, D), got shape {shape}")
    if kind == "standard":
        return shape
    if kind == "variational":
        return (1,) + shape[1:]
    return (shape[0], 1)


def sample_mask(shape: tuple, p: float, rng: np.random.Generator, kind: str = "standard",
                dtype=np.float64, xp=np):
    """Draw an inverted-dropout mask for an array of ``shape``: entries ``ξ/(1-p)``, ``ξ ~ Bernoulli(1-p)``.

    The draw is made with the NumPy generator ``rng`` (so a seed fixes it on every
    backend) and handed to the array module ``xp`` (``numpy`` or ``cupy``).
    """
    p = check_probability(p)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), "
                        f"got {type(rng).__name__}")
    keep = rng.random(mask_shape(kind, shape)) >= p                  # ξ = 1 with probability 1 - p
    m = keep.astype(dtype) / np.asarray(1.0 - p, dtype)              # m = ξ / (1 - p)
    return m if xp is np else xp.asarray(m)


def _check_mask(x, mask):
    if mask is None:
        return
    check_float_array(mask, "mask", dtype=x.dtype)
    if mask.ndim != x.ndim or any(m not in (1, s) for m, s in zip(mask.shape, x.shape)):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x of shape "
                         f"{tuple(x.shape)} axis by axis (use sample_mask with x.shape)")


def forward(x, mask):
    """``y = x ⊙ m``.  ``mask=None`` (evaluation, or ``p = 0``) is the identity.

    Returns ``(y, cache)`` with ``cache`` the mask itself.
    """
    check_float_array(x, "x")
    _check_mask(x, mask)
    return (x if mask is None else x * mask), mask


def backward(cache, dy):
    """``dx = dy ⊙ m`` (``cache`` is the mask from ``forward``; ``None`` passes ``dy`` through)."""
    mask = cache
    return dy if mask is None else dy * mask


class Dropout:
    """A seeded source of dropout masks with a train/eval switch.

    ``Dropout(p, kind="standard" | "variational" | "embedding", seed=0)``.  In
    training mode every call to :meth:`forward` draws a new mask (a new batch, a new
    mask); in evaluation mode, or with ``p = 0``, it draws nothing and is the identity.

        drop = Dropout(0.3, "variational", seed=0)
        y, cache = drop.forward(x)          # x (T, B, D); cache is the mask (1, B, D)
        dx = drop.backward(cache, dy)
        drop.eval(); y, _ = drop.forward(x) # y is x
    """

    def __init__(self, p: float, kind: str = "standard", seed: int = 0):
        self.p = check_probability(p)
        _check_kind(kind)
        self.kind = kind
        self.rng = np.random.default_rng(seed)
        self.training = True

    def train(self) -> "Dropout":
        self.training = True
        return self

    def eval(self) -> "Dropout":
        self.training = False
        return self

    @property
    def active(self) -> bool:
        return self.training and self.p > 0

    def sample(self, shape, dtype=np.float64, xp=np):
        """A fresh mask for an array of ``shape`` (``None`` when not active)."""
        if not self.active:
            return None
        return sample_mask(shape, self.p, self.rng, self.kind, dtype, xp)

    def mask(self, x):
        """A fresh mask for ``x`` (``None`` when not active)."""
        check_float_array(x, "x")
        return self.sample(x.shape, x.dtype, array_module(x))

    def forward(self, x):
        return forward(x, self.mask(x))

    @staticmethod
    def backward(cache, dy):
        return backward(cache, dy)

    def __repr__(self) -> str:
        return f"Dropout(p={self.p}, kind={self.kind!r}, {'train' if self.training else 'eval'})"

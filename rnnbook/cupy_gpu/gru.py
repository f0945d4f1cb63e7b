r"""GRU (both placements of the reset gate) on the GPU: the same functions as ``rnnbook.numpy_ref.gru``, on CuPy arrays.

Equations (see numpy_ref.gru for the derivation of the backward pass)::

    r, z = s(gi_{r,z} + gh_{r,z})      h_t = (1 - z) n + z h_{t-1}
    n = tanh(gi_n + r (W_hn h + b_hn))       reset_after=True  (PyTorch, cuDNN)
    n = tanh(gi_n + (r h) W_hn^T + b_hn)     reset_after=False (Cho et al. 2014)

The spec -- NAME, OPTIONS, STATE_NAMES, parameter shapes -- is numpy_ref's;
this module adds the backend options

* ``impl="alternating"`` (default; per step a cuBLAS GEMM and one pointwise
  kernel, kernels/alternating.cu) or ``impl="persistent"`` (one launch for the
  whole sequence, W_hh on chip, kernels/persistent.cu);
* ``heads=k``: block-diagonal W_hh with k heads (see engine.py);
* ``tuning={...}``: override the persistent kernels' launch plan
  (units_per_block, batch_tile, chunk, threads).

Arrays are CuPy arrays (float32 or float64); the gradients are those of
``sum(dy * y) + sum(dstate * state)``.  ``backward(..., window=k)`` is BPTT(k)
(on the alternating step kernels, whichever impl ran the forward pass).
"""
import numpy as np

from ..numpy_ref import gru as _spec
from . import engine, gpu

NAME = _spec.NAME
OPTIONS = _spec.OPTIONS
STATE_NAMES = _spec.STATE_NAMES
param_shapes = _spec.param_shapes
hidden_size = _spec.hidden_size


def init_params(input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """numpy_ref's initialisation (same seed, same numbers), as CuPy arrays."""
    return engine.init_params(gpu.launcher().xp, _spec, input_size, hidden_size, seed=seed, dtype=dtype,
                              **options)


def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), state, cache)``."""
    return engine.forward(gpu.launcher(), _spec, params, x, state0, options)


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): gradients for every parameter, "x" and "state0"."""
    return engine.backward(gpu.launcher(), _spec, params, cache, dy, dstate, window)

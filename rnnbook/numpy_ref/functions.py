"""Pointwise nonlinearities and their derivatives, written as the cells use them.

The derivatives are expressed through the *outputs* where that is cheaper
(``sigmoid'(z) = s (1 - s)``, ``tanh'(z) = 1 - t**2``), which is how every
backward pass in ``numpy_ref`` uses them.
"""
import numpy as np


def sigmoid(z):
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|``."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def dsigmoid_from_output(s):
    """``sigmoid'(z)`` given ``s = sigmoid(z)``."""
    return s * (1 - s)


def dtanh_from_output(t):
    """``tanh'(z)`` given ``t = tanh(z)``."""
    return 1 - t * t


def relu(z):
    return np.maximum(z, 0)


def drelu_from_output(r):
    """``relu'(z)`` given ``r = relu(z)`` (taken as 0 at ``z = 0``)."""
    return (r > 0).astype(r.dtype)

r"""Gradient clipping, the standard cure for exploding gradients.

By global norm (Pascanu et al. 2013): with ``‖g‖ = sqrt(Σ_k ‖g_k‖²)`` over every array,

    g_k <- g_k · min(1, c / ‖g‖)

which keeps the update's direction.  By value: ``g_k <- clip(g_k, -c, c)``
entry by entry, which does not.
"""
import math

from .arrays import array_module


def global_norm(grads: dict) -> float:
    """``sqrt(Σ_k ‖g_k‖²)`` over every array of ``grads``."""
    return math.sqrt(sum(float((g * g).sum()) for g in grads.values()))


def clip_by_global_norm(grads: dict, max_norm: float):
    """Scale every gradient by ``min(1, max_norm / ‖g‖)``.  Returns ``(clipped, norm_before)``."""
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm!r}")
    norm = global_norm(grads)
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: g * scale for k, g in grads.items()}, norm


def clip_by_value(grads: dict, limit: float):
    """Clip every entry to ``[-limit, limit]``."""
    if not limit > 0:
        raise ValueError(f"limit must be positive, got {limit!r}")
    return {k: array_module(g).clip(g, -limit, limit) for k, g in grads.items()}

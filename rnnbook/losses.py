r"""Losses with their gradients, over every position of a sequence.

Softmax cross-entropy (logits ``z (…, V)``, integer targets ``k (…)``, ``N`` positions)::

    p = softmax(z) = exp(z - max z) / Σ exp(z - max z)
    L = -(1/N) Σ_n log p_n[k_n]
    dL/dz_n = (p_n - onehot(k_n)) / N

Mean squared error (prediction ``ŷ``, target ``y``, ``N`` entries)::

    L = (1/N) Σ (ŷ - y)²          dL/dŷ = 2 (ŷ - y) / N

An optional ``mask`` (same shape as the targets, 0/1) restricts the mean to the
positions that count (e.g. the answer part of the copy task).
"""
from .arrays import array_module
from .checks import check_float_array


def _mask_weights(mask, shape, xp, dtype):
    if mask is None:
        n = 1
        for s in shape:
            n *= s
        return None, n
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    w = mask.astype(dtype)
    n = float(w.sum())
    if n == 0:
        raise ValueError("mask selects no position")
    return w, n


def softmax(z, axis=-1):
    xp = array_module(z)
    e = xp.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    xp = array_module(z)
    s = z - z.max(axis=axis, keepdims=True)
    return s - xp.log(xp.exp(s).sum(axis=axis, keepdims=True))


def softmax_cross_entropy(logits, targets, mask=None):
    """Mean cross-entropy of ``logits (…, V)`` against integer ``targets (…)``.

    Returns ``(loss, dlogits)`` with ``dlogits`` of the shape of ``logits``.
    """
    check_float_array(logits, "logits")
    if not hasattr(targets, "dtype") or targets.dtype.kind not in "iu":
        raise TypeError(f"targets must be an integer array, got {getattr(targets, 'dtype', type(targets).__name__)}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])} (logits without the "
                         f"class axis), got {tuple(targets.shape)}")
    V = logits.shape[-1]
    if targets.size and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise ValueError(f"targets must lie in [0, {V}), got [{int(targets.min())}, {int(targets.max())}]")
    xp = array_module(logits)
    w, n = _mask_weights(mask, targets.shape, xp, logits.dtype)
    logp = log_softmax(logits).reshape(-1, V)                  # (N, V)
    rows, k = xp.arange(logp.shape[0]), targets.reshape(-1)
    picked = logp[rows, k].reshape(targets.shape)               # log p[k]
    loss = -(picked if w is None else picked * w).sum() / n
    dlogits = xp.exp(logp)                                      # p
    dlogits[rows, k] -= 1                                       # p - onehot(k)
    dlogits = dlogits.reshape(logits.shape) / n
    if w is not None:
        dlogits *= w[..., None]
    return float(loss), dlogits


def mse(pred, target, mask=None):
    """Mean squared error.  Returns ``(loss, dpred)``."""
    check_float_array(pred, "pred")
    check_float_array(target, "target", dtype=pred.dtype)
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    xp = array_module(pred)
    w, n = _mask_weights(mask, pred.shape, xp, pred.dtype)
    diff = pred - target if w is None else (pred - target) * w
    return float((diff * diff).sum() / n), 2 * diff / n

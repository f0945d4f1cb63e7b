r"""Synthetic memory tasks, generated from a seed.

**Copy** (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).  Symbols are ids
``1 … n_symbols``; ``0`` is blank and ``n_symbols + 1`` the "recall now" marker::

    input : s_1 … s_L   0 … 0 (delay)   marker   0 … 0 (L-1)      length T = 2L + delay
    target: 0 … 0 (L + delay)                    s_1 … s_L

The answer positions are the last ``L``; a model that cannot remember scores
``log(n_symbols)`` there.

**Adding** (Hochreiter & Schmidhuber 1997).  Two input channels per step: a value
``u_t ~ U(0, 1)`` and a marker that is 1 at exactly two steps, one in each half.
The target is the sum of the two marked values; predicting 1 always gives MSE ≈ 0.167.
"""
import numpy as np


def copy_task(batch_size: int, length: int = 10, delay: int = 10, n_symbols: int = 8, seed: int = 0):
    """Returns ``(inputs (T, B) ints, targets (T, B) ints, mask (T, B) float)``; ``mask`` marks the answer."""
    for n, v in (("batch_size", batch_size), ("length", length), ("n_symbols", n_symbols)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{n} must be a positive integer, got {v!r}")
    if not isinstance(delay, (int, np.integer)) or delay < 0:
        raise ValueError(f"delay must be a non-negative integer, got {delay!r}")
    rng = np.random.default_rng(seed)
    T = 2 * length + delay
    symbols = rng.integers(1, n_symbols + 1, size=(length, batch_size))
    inputs = np.zeros((T, batch_size), np.int64)
    targets = np.zeros((T, batch_size), np.int64)
    inputs[:length] = symbols
    inputs[length + delay] = n_symbols + 1
    targets[length + delay:] = symbols
    mask = np.zeros((T, batch_size))
    mask[length + delay:] = 1.0
    return inputs, targets, mask


def adding_task(batch_size: int, T: int = 50, seed: int = 0, dtype=np.float64):
    """Returns ``(x (T, B, 2), y (B,))``: values and markers, and the sum of the marked values."""
    if not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"T must be an integer >= 2, got {T!r}")
    rng = np.random.default_rng(seed)
    x = np.zeros((T, batch_size, 2), dtype)
    x[:, :, 0] = rng.uniform(0, 1, (T, batch_size))
    first = rng.integers(0, T // 2, batch_size)
    second = rng.integers(T // 2, T, batch_size)
    cols = np.arange(batch_size)
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = x[first, cols, 0] + x[second, cols, 0]
    return x, y.astype(dtype)


def one_hot(ids, n: int, dtype=np.float64):
    """``ids (…)`` -> ``(…, n)`` one-hot vectors."""
    ids = np.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"ids must be integers, got {ids.dtype}")
    return np.eye(n, dtype=dtype)[ids]

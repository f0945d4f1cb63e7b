r"""Linear read-out applied at every time step.

    y_t = h_t W^T + b          h: (T, B, H) -> y: (T, B, V),  W (V, H),  b (V,)

Backward::

    dW = Σ_{t,b} dy_tb^T h_tb      db = Σ_{t,b} dy_tb      dh = dy W
"""
from ..checks import check_float_array


def init_params(input_size, output_size, seed=0, dtype=None, xp=None):
    """``U(-1/√H, 1/√H)`` for ``W`` and ``b`` (PyTorch's ``nn.Linear``)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    k = 1.0 / np.sqrt(input_size)
    dtype = np.float64 if dtype is None else dtype
    p = {"W": rng.uniform(-k, k, (output_size, input_size)).astype(dtype),
         "b": rng.uniform(-k, k, (output_size,)).astype(dtype)}
    return p if xp is None else {k: xp.asarray(v) for k, v in p.items()}


def forward(params, h):
    """``h (…, H)`` -> ``(y (…, V), cache)``."""
    W, b = params["W"], params["b"]
    check_float_array(h, "h", dtype=W.dtype)
    if h.shape[-1] != W.shape[1]:
        raise ValueError(f"h has {h.shape[-1]} features but the read-out W has shape {tuple(W.shape)}")
    return h @ W.T + b, h


def backward(params, cache, dy):
    """Returns ``{"W": dW, "b": db, "h": dh}``."""
    h = cache
    V, H = params["W"].shape
    dy2, h2 = dy.reshape(-1, V), h.reshape(-1, H)
    return {"W": dy2.T @ h2,                 # y = h W^T + b
            "b": dy2.sum(axis=0),
            "h": dy @ params["W"]}

r"""Embedding: integer tokens -> vectors.

    x_tb = E[i_tb]            i: (T, B) ints -> x: (T, B, D),  E (V, D)

Backward: each row of ``E`` collects the gradients of the positions that used it,
``dE[v] = Σ_{t,b: i_tb = v} dx_tb`` (a scatter-add; repeated tokens add up).
"""
import numpy as np

from ..arrays import array_module


def init_params(num_embeddings, dim, seed=0, dtype=None, xp=None):
    """``N(0, 1)`` entries, as PyTorch's ``nn.Embedding``."""
    rng = np.random.default_rng(seed)
    E = rng.standard_normal((num_embeddings, dim)).astype(np.float64 if dtype is None else dtype)
    return {"E": E if xp is None else xp.asarray(E)}


def check_tokens(tokens, V, name="tokens"):
    if not hasattr(tokens, "dtype") or tokens.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got "
                        f"{getattr(tokens, 'dtype', type(tokens).__name__)}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= V):
        raise ValueError(f"{name} must lie in [0, {V}), got values in "
                         f"[{int(tokens.min())}, {int(tokens.max())}]")


def forward(params, tokens):
    """``tokens (…)`` ints -> ``(x (…, D), cache)``."""
    E = params["E"]
    check_tokens(tokens, E.shape[0])
    return E[tokens], tokens


def backward(params, cache, dx):
    tokens = cache
    xp = array_module(dx)
    dE = xp.zeros_like(params["E"])
    xp.add.at(dE, tokens.reshape(-1), dx.reshape(-1, dE.shape[1]))   # x = E[i]: scatter-add
    return {"E": dE}

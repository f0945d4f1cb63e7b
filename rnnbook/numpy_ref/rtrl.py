"""Exact real-time recurrent learning (RTRL) for any cell, forward in time.

RTRL carries the *influence matrix* ``M_t = ∂s_t/∂θ`` forward alongside the state.
Differentiating ``s_t = F(s_{t-1}, x_t; θ)`` gives the recursion

    M_t = J_t M_{t-1} + ∂F/∂θ|_t,      J_t = ∂F/∂s_{t-1}   (S × S per sample),
    M_{-1} = 0,

and the gradient accumulates online as the errors arrive:

    dL/dθ += e_t^T M_t,    e_t = ∂L/∂s_t|immediate = [dy_t on h, 0 elsewhere] (+ dstate at t = T-1).

The same recursion gives the gradients that the BPTT contract also returns:
the initial state is one more leaf (``∂s_t/∂s_{-1} = J_t … J_0``), and every input
``x_τ`` is a leaf whose influence starts at ``τ`` (``∂s_τ/∂x_τ = ∂F/∂x_τ``) and is then
pushed forward by the same ``J_t``.

Cost: with ``S`` state entries and ``P`` parameters the update costs O(B·S²·P)
per step -- O(H⁴) for a dense recurrent cell, against O(H²) for BPTT.  That is the
price of needing no backward pass; it is why exact RTRL is for small cells (and
for element-wise recurrences, where ``J_t`` is diagonal).

A cell provides ``step_jacobians(params, x_t, state, **options)`` returning
``(next_state, J_state (B, S, S), J_x (B, S, D), J_params {name: (B, S, *shape)})``
with the state flattened as ``s = concat(state)``.
"""
import numpy as np

from ..checks import check_backward_call, check_forward_call, state_names


def rtrl(cell, params, x, dy, state0=None, dstate=None, **options):
    """Same dict as ``bptt.backward``: every parameter, ``"x"`` and ``"state0"``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(cell, params, x, state0, options)
    names = state_names(cell, opts)
    n = len(names)
    dstate = check_backward_call(cell, (T, B, H), dtype, dy, dstate, names)
    S = n * H
    state = state0 if state0 is not None else tuple(np.zeros((B, H), dtype) for _ in range(n))

    M = {k: np.zeros((B, S) + v.shape, dtype) for k, v in params.items()}   # ∂s_t/∂θ
    M_s0 = np.broadcast_to(np.eye(S, dtype=dtype), (B, S, S)).copy()         # ∂s_t/∂s_{-1}
    M_x = np.zeros((T, B, S, D), dtype)                                      # ∂s_t/∂x_τ, τ <= t
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    g_s0 = np.zeros((B, S), dtype)
    g_x = np.zeros((T, B, D), dtype)

    for t in range(T):
        state, J_s, J_x, J_p = cell.step_jacobians(params, x[t], state, **opts)
        # M_t = J_t M_{t-1} + ∂F/∂θ|_t   (per sample b)
        for k in M:
            M[k] = np.einsum("bij,bj...->bi...", J_s, M[k]) + J_p[k]
        M_s0 = J_s @ M_s0
        M_x[:t] = np.einsum("bij,tbjd->tbid", J_s, M_x[:t])
        M_x[t] = J_x
        # e_t: the error that arrives at s_t right now
        e = np.zeros((B, S), dtype)
        e[:, :H] = dy[t]
        if t == T - 1 and dstate is not None:
            e += np.concatenate(dstate, axis=1)
        for k in grads:
            grads[k] += np.einsum("bi,bi...->...", e, M[k])
        g_s0 += np.einsum("bi,bij->bj", e, M_s0)
        g_x[: t + 1] += np.einsum("bi,tbid->tbd", e, M_x[: t + 1])

    grads["x"] = g_x
    grads["state0"] = tuple(g_s0[:, i * H:(i + 1) * H] for i in range(n))
    return grads


# ----------------------------------------------------------------- helpers for step_jacobians
def diag_blocks(*diagonals):
    """Stack per-gate diagonals into one Jacobian ``∂u/∂z`` of shape ``(B, H, G·H)``.

    For a state entry ``u_k`` that depends on gate pre-activations only through
    the same unit ``k`` (``u_k = f(z_{0,k}, …, z_{G-1,k})``), ``∂u_k/∂z_{g,j} = δ_kj D_g[k]``.
    """
    B, H = diagonals[0].shape
    eye = np.eye(H, dtype=diagonals[0].dtype)
    return np.concatenate([d[:, :, None] * eye for d in diagonals], axis=2)


def outer(ds_dz, inp):
    """``∂s/∂W`` for ``z = inp W^T + …``: ``(B, S, M) x (B, K) -> (B, S, M, K)``."""
    return ds_dz[:, :, :, None] * inp[:, None, None, :]

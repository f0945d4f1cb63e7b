r"""SCRN on the Numba backend: ``numpy_ref.scrn`` with the time loop compiled and fused.

Same equations and names as ``numpy_ref.scrn`` (batch of ``N`` rows; ``σ`` is the
sigmoid, or ``tanh`` with ``nonlinearity="tanh"``)::

    s_t = (1 - α) x_t B^T + α s_{t-1}                  (N, H)   slow context
    a_t = x_t A^T + b  +  s_t P^T  +  h_{t-1} R^T      (N, H)
    h_t = σ(a_t)

The context does not depend on ``h``, so only ``h_{t-1} R^T`` is sequential work.
The forward pass is four phases, one of them a compiled loop with one product per step::

    1. G = X [A; B]^T + [b | 0]          one GEMM               G (T, N, 2H) = [G_A | G_B]
    2. s_t = (1-α) G_B[t] + α s_{t-1}    compiled, elementwise  ss (T+1, N, H), ss[0] = s_0
    3. G_A += S P^T                      one GEMM over all steps (S = ss[1:])
    4. a_t = G_A[t] + h_{t-1} R^T ; h_t = σ(a_t)      compiled loop, hs (T+1, N, H), hs[0] = h_0

Backward.  ``numpy_ref.scrn.step_backward`` carries two errors, ``dh`` and ``ds``::

    da       = dh_t ⊙ σ'(a_t)                   # h = σ(a);  σ' read off h: h(1-h), or 1-h²
    dh_{t-1} = da R                             # a = … + h_prev R^T        (compiled loop)
    ds       = ds_t + da P                      # s_t feeds a_t (through P) and s_{t+1}
    ds_{t-1} = α ds                             # s = … + α s_prev

``da`` never depends on ``ds``, and ``ds`` is linear in the ``da``'s.  Unrolled along
one backward chain that starts at step ``s`` with error ``ds_inj`` on ``s_s``::

    ds (at s_t) = e_t P + α^{s-t} ds_inj,       e_t = da_t + α e_{t+1},  e_{s+1} = 0

so the compiled loop carries only ``dh`` (one product with ``R`` per step) and the
elementwise running sum ``e``; the product with ``P`` is one GEMM after the loop,
on ``E = Σ_chains e`` (every chain adds its ``e_t`` into ``E[t]``; full BPTT is one
chain, BPTT(k) one per injection step, see ``bptt``).  Only the chain that starts at
``T-1`` injects the final-state error ``dstate_s``.  Then, with ``dS[t]`` the total
error arriving at ``s_t``::

    dS     = E P + [α^{T-1-t} dstate_s for the steps the last chain reaches]
    dA_    = Σ_t da_t^T x_t     dP = Σ_t da_t^T s_t     dR = Σ_t da_t^T h_{t-1}     db = Σ da
    dB     = (1-α) Σ_t dS_t^T x_t                        # s = (1-α) x B^T + …
    dx_t   = da_t A + (1-α) dS_t B                       # a = x A^T + …,  s = (1-α) x B^T + …
    ds_{-1} = α dS_0                                     # s_0 = … + α s_{-1}  (every chain that
                                                         #  reaches step 0 ends there)
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call
from ..numpy_ref import scrn as _spec
from . import bptt
from .functions import KERNEL_OPTIONS, dsigmoid_from_output, dtanh_from_output, sigmoid, tanh
from .gemm import matmul_rows, operand
from .units import add, copy, fill

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params


# ------------------------------------------------------------------------------------ compiled
@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _context_rows(G, ss, alpha, one_minus_alpha, r0, r1, use_blas):
    """``s_t = (1-α) G_B[t] + α s_{t-1}`` for rows ``r0 .. r1-1``; ``G_B`` = columns ``H..2H`` of ``G``."""
    H = ss.shape[2]
    for t in range(G.shape[0]):
        for r in range(r0, r1):
            g, s_prev, s = G[t, r], ss[t, r], ss[t + 1, r]
            for j in range(H):
                s[j] = one_minus_alpha * g[H + j] + alpha * s_prev[j]   # s = (1-α) x B^T + α s_prev


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward(a, h, use_tanh):
    """``h = σ(a)`` for one batch row (``a`` may be longer than ``h``: its first ``H`` entries)."""
    for j in range(h.shape[0]):
        h[j] = tanh(a[j]) if use_tanh else sigmoid(a[j])


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_rows(G, RT, hs, use_tanh, r0, r1, use_blas):
    """The recurrence for rows ``r0 .. r1-1``; ``G[t, :, :H]`` holds ``x A^T + b + s_t P^T``."""
    for t in range(G.shape[0]):
        matmul_rows(hs[t], RT, G[t], r0, r1, use_blas)          # a_t = … + h_{t-1} R^T (first H columns)
        for r in range(r0, r1):
            _cell_forward(G[t, r], hs[t + 1, r], use_tanh)       # h_t = σ(a_t)


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward(h, dh, da, e, alpha, use_tanh):
    """One row: ``da = dh ⊙ σ'(a)`` (``σ'`` through ``h``), and the context's running sum ``e = da + α e``."""
    for j in range(h.shape[0]):
        da[j] = dh[j] * (dtanh_from_output(h[j]) if use_tanh else dsigmoid_from_output(h[j]))   # h = σ(a)
        e[j] = da[j] + alpha * e[j]                 # ds = ds_next + da P,  ds_prev = α ds  (P applied later)


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_rows(hs, R, dy, dstate_h, alpha, use_tanh, chains, inject_all, dA, E, da, e, dh, dh0,
                   r0, r1, use_blas):
    """Backward chains for rows ``r0 .. r1-1`` (``chains`` as in ``lstm._backward_tile``).

    Adds every chain's ``da_t`` into ``dA[t]`` and its running sum ``e_t`` into ``E[t]``;
    a chain that ends at step 0 adds its ``dh`` into ``dh0``.
    """
    T = dy.shape[0]
    for n in range(chains.shape[0]):
        s, lo = chains[n, 0], chains[n, 1]
        for r in range(r0, r1):
            if s == T - 1:
                copy(dh[r], dstate_h[r])
            else:
                fill(dh[r], 0)
            fill(e[r], 0)
        for t in range(s, lo - 1, -1):
            for r in range(r0, r1):
                if inject_all or t == s:
                    add(dh[r], dy[t, r])                          # y_t = h_t
                _cell_backward(hs[t + 1, r], dh[r], da[r], e[r], alpha, use_tanh)
                add(dA[t, r], da[r])
                add(E[t, r], e[r])
                fill(dh[r], 0)
            matmul_rows(da, R, dh, r0, r1, use_blas)              # dh_{t-1} = da R
        if lo == 0:
            for r in range(r0, r1):
                add(dh0[r], dh[r])


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _context_backward_rows(ds_seq, alpha, delta, r0, r1, use_blas):
    """``δ_t = ds_t + α δ_{t+1}`` (``δ_T = 0``) for rows ``r0 .. r1-1``; ``delta (T, N, H)``."""
    T, H = ds_seq.shape[0], ds_seq.shape[2]
    for r in range(r0, r1):
        copy(delta[T - 1, r], ds_seq[T - 1, r])
    for t in range(T - 2, -1, -1):
        for r in range(r0, r1):
            d, nxt, src = delta[t, r], delta[t + 1, r], ds_seq[t, r]
            for j in range(H):
                d[j] = src[j] + alpha * nxt[j]                    # s_t feeds s_{t+1} = … + α s_t


# ------------------------------------------------------------------------------------ Python
def _scalars(dtype, alpha):
    """``α`` and ``1 - α`` in the arrays' dtype (as NumPy rounds a Python float next to them)."""
    return dtype.type(alpha), dtype.type(1 - alpha)


def forward(params, x, state0=None, **options):
    """Run over ``x (T, N, D)``: returns ``(y (T, N, H), (h_T, s_T), cache)``."""
    opts, (T, N, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    A, B, P, R, b = bptt.contiguous(params, ("A", "B", "P", "R", "b"))
    alpha, one_minus_alpha = _scalars(dtype, opts["alpha"])
    G = bptt.input_projection(x, np.concatenate([A, B]), np.concatenate([b, np.zeros_like(b)]))
    ss = np.empty((T + 1, N, H), dtype)
    hs = np.empty((T + 1, N, H), dtype)
    hs[0], ss[0] = (0, 0) if state0 is None else state0
    bptt.run(_context_rows, (G, ss, alpha, one_minus_alpha), N, False, 1)          # phase 2
    G[:, :, :H] += (ss[1:].reshape(T * N, H) @ P.T).reshape(T, N, H)   # phase 3: a_t = … + s_t P^T
    use_blas, n_chunks = bptt.plan(N, H, H, T)
    bptt.run(_forward_rows, (G, operand(R.T, use_blas), hs, opts["nonlinearity"] == "tanh"),
             N, use_blas, n_chunks)
    cache = {"x": x, "hs": hs, "ss": ss, "options": opts, "shape": (T, N, H), "dtype": dtype}
    return hs[1:], (hs[T].copy(), ss[T].copy()), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.scrn.backward``."""
    T, N, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 2)
    A, B, P, R = bptt.contiguous(params, ("A", "B", "P", "R"))
    alpha, one_minus_alpha = _scalars(dtype, cache["options"]["alpha"])
    chains, inject_all = bptt.chain_schedule(T, window)
    dstate_h = np.zeros((N, H), dtype) if dstate is None else np.ascontiguousarray(dstate[0])
    dA, E = np.zeros((T, N, H), dtype), np.zeros((T, N, H), dtype)
    da, e, dh, dh0 = (np.empty((N, H), dtype), np.empty((N, H), dtype), np.empty((N, H), dtype),
                      np.zeros((N, H), dtype))
    use_tanh = cache["options"]["nonlinearity"] == "tanh"
    use_blas, n_chunks = bptt.plan(N, H, H, T)
    args = (cache["hs"], operand(R, use_blas), np.ascontiguousarray(dy), dstate_h, alpha, use_tanh, chains, inject_all,
            dA, E, da, e, dh, dh0)
    bptt.run(_backward_rows, args, N, use_blas, n_chunks)
    dS = (E.reshape(T * N, H) @ P).reshape(T, N, H)               # ds = ds_next + da P, along each chain
    if dstate is not None:                                        # the final-state error on s, decayed by α
        lo = chains[-1, 1]                                        # lowest step the last chain reaches
        decay = (cache["options"]["alpha"] ** np.arange(T - 1 - lo, -1, -1, dtype=np.float64)).astype(dtype)
        dS[lo:] += decay[:, None, None] * dstate[1]
    x, hs, ss = cache["x"], cache["hs"], cache["ss"]
    return {"A": bptt.weight_gradient(dA, x),                      # a = x A^T + …
            "B": one_minus_alpha * bptt.weight_gradient(dS, x),    # s = (1-α) x B^T + …
            "P": bptt.weight_gradient(dA, ss[1:]),                 # a = … + s P^T
            "R": bptt.weight_gradient(dA, hs[:-1]),                # a = … + h_prev R^T
            "b": bptt.bias_gradient(dA),                                   # a = … + b
            "x": bptt.input_gradient(dA, A) + one_minus_alpha * bptt.input_gradient(dS, B),
            "state0": (dh0, alpha * dS[0])}                        # s_0 = … + α s_{-1}


def step_forward(params, x_t, state, alpha=0.95, nonlinearity="sigmoid"):
    """One step, ``x_t (N, D)``: the compiled loop on a sequence of length 1 -> ``((h, s), cache)``."""
    _, state, cache = forward(params, x_t[None], state, alpha=alpha, nonlinearity=nonlinearity)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh, ds)`` -> ``(dx_t, (dh_prev, ds_prev), dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1)}


# ------------------------------------------------------------------ the context for a read-out
def _check_cache(cache):
    if not isinstance(cache, dict) or "ss" not in cache or "options" not in cache \
            or "alpha" not in cache["options"]:
        raise TypeError("cache must be the third value returned by a forward pass of 'scrn' "
                        "on the numba backend")


def context_sequence(cache):
    """The context states ``s_0 … s_{T-1}`` of a forward pass, ``(T, N, H)`` (``numpy_ref.scrn``'s)."""
    _check_cache(cache)
    return cache["ss"][1:]


def context_backward(params, cache, ds_seq):
    """Gradients of ``Σ_t <ds_t, s_t>`` for an error ``ds_seq (T, N, H)`` on the context sequence.

    As ``numpy_ref.scrn.context_backward``: the compiled scan ``δ_t = ds_t + α δ_{t+1}``, then
    ``dB = (1-α) Σ_t δ_t^T x_t``, ``dx_t = (1-α) δ_t B``, ``ds_{-1} = α δ_0`` as GEMMs.
    """
    _check_cache(cache)
    T, N, H = cache["shape"]
    dtype = cache["dtype"]
    if not (hasattr(ds_seq, "shape") and tuple(ds_seq.shape) == (T, N, H)):
        raise ValueError(f"ds_seq must have the shape of the context sequence {(T, N, H)}, "
                         f"got {getattr(ds_seq, 'shape', type(ds_seq).__name__)}")
    if getattr(ds_seq, "dtype", None) != dtype:
        raise TypeError(f"ds_seq has dtype {getattr(ds_seq, 'dtype', None)} but the forward pass ran in {dtype}")
    alpha, one_minus_alpha = _scalars(dtype, cache["options"]["alpha"])
    delta = np.empty((T, N, H), dtype)
    bptt.run(_context_backward_rows, (np.ascontiguousarray(ds_seq), alpha, delta), N, False, 1)
    B = np.ascontiguousarray(params["B"])
    return {"B": one_minus_alpha * bptt.weight_gradient(delta, cache["x"]),   # s = (1-α) x B^T + …
            "x": one_minus_alpha * bptt.input_gradient(delta, B),
            "state0": (np.zeros((N, H), dtype), alpha * delta[0])}          # s_0 = … + α s_{-1}

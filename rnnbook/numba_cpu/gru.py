r"""GRU on the Numba backend, both placements of the reset gate: ``numpy_ref.gru`` compiled and fused.

Gate order **r, z, n**; ``G[t] = x_t W_ih^T + b_ih  (B, 3H) = [gi_r | gi_z | gi_n]`` for all
steps is one GEMM, as for every cell (see ``bptt``).

*Reset after the product* (``reset_after=True``, PyTorch/cuDNN).  One product per step::

    gh  = h_{t-1} W_hh^T + b_hh                     (B, 3H)  scratch, per step
    r = σ(gi_r + gh_r)    z = σ(gi_z + gh_z)    n = tanh(gi_n + r ⊙ gh_n)
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

  cache: ``acts (T, B, 3H)`` = [r | z | n] (written over G), ``ghn (T, B, H)`` = gh_n.

*Reset before the product* (``reset_after=False``, Cho et al.).  Two products per step,
because the second one needs ``r``::

    a_{r,z} = gi_{r,z} + h_{t-1} W_h{rz}^T + b_h{rz}    (B, 2H)   W_h{rz} = W_hh[:2H]
    r = σ(a_r)    z = σ(a_z)    rh_t = r ⊙ h_{t-1}
    n = tanh(a_n),   a_n = gi_n + rh_t W_hn^T + b_hn     W_hn = W_hh[2H:]
    h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

  Every part of ``b_hh`` is added to the matching part of ``gi``, so ``b_hh`` joins ``b_ih``
  in the input projection, and both products add into ``G[t]`` in place, each into its
  own gate columns of ``W_hh^T``.  cache: ``acts`` = [r | z | n], ``rh (T, B, H)``.

Backward of one step (``a_r, a_z, a_n`` are the arguments of σ, σ, tanh)::

    dn = dh ⊙ (1-z),  dz = dh ⊙ (h_prev - n),  dh_prev = dh ⊙ z + …     # h = (1-z) n + z h_prev
    da_n = dn ⊙ (1-n²),  da_z = dz ⊙ z(1-z)                             # n = tanh(a_n), z = σ(a_z)
    after:  dgh_n = da_n ⊙ r,  dr = da_n ⊙ gh_n                          # a_n = gi_n + r ⊙ gh_n
            da_r = dr ⊙ r(1-r);  dh_prev += [da_r|da_z|dgh_n] W_hh        # gh = h_prev W_hh^T + b_hh
    before: d(rh) = da_n W_hn,  dr = d(rh) ⊙ h_prev,  dh_prev += d(rh) ⊙ r # a_n = … + (r ⊙ h_prev) W_hn^T
            da_r = dr ⊙ r(1-r);  dh_prev += [da_r|da_z] W_h{rz}           # a_{r,z} = … + h_prev W_h{rz}^T
    dW_ih = Σ dgi^T x (dgi = [da_r|da_z|da_n]),  db_ih = Σ dgi,  dx = dgi W_ih        (GEMMs after the loop)
    after:  dW_hh = Σ dgh^T h_prev  (dgh = [da_r|da_z|dgh_n]),  db_hh = Σ dgh
    before: dW_h{rz} = Σ [da_r|da_z]^T h_prev,  dW_hn = Σ da_n^T rh,  db_hh = Σ dgi

  The r and z columns of ``dgh`` are those of ``dgi`` (gi and gh enter σ through the same sum),
  so the reset-after loop stores only ``dgi`` and ``dgh_n``: ``dGI (T, B, 3H)``, ``dGH_n (T, B, H)``.
  dW_hh is then two GEMMs, ``Σ [da_r|da_z]^T h_prev`` on the first 2H columns of ``dGI`` and
  ``Σ dgh_n^T h_prev``, and db_hh takes its r, z parts from db_ih.  (Storing all of ``dgh`` as well made the
  loop write 6H instead of 4H floats per row and step, into a second fresh ``(T, B, 3H)`` array
  whose pages were first touched -- page-faulted -- inside the loop.)
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call
from ..numpy_ref import gru as _spec
from . import bptt
from .bptt import revisits
from .functions import KERNEL_OPTIONS, dsigmoid_from_output, dtanh_from_output, sigmoid, tanh
from .gemm import matmul_gates, matmul_tile, operand
from .sync import arrive_and_wait, threads_of, wait_for_inputs
from .units import fill_units, put_units

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params


# ------------------------------------------------------------------ compiled: reset after the product
@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward_after(g, gh, h_prev, h, ghn, j0, j1):
    """One row, units ``j0 .. j1-1``: ``g (3H)`` holds [gi_r|gi_z|gi_n] and becomes [r|z|n] there;
    ``gh (3H)`` = h_prev W_hh^T + b_hh."""
    H = h.shape[0]
    # the tile's units as views (a loop over views compiles to SIMD code; see lstm._cell_forward)
    g_r, g_z, g_n = g[j0:j1], g[H + j0:H + j1], g[2 * H + j0:2 * H + j1]
    gh_r, gh_z, gh_n = gh[j0:j1], gh[H + j0:H + j1], gh[2 * H + j0:2 * H + j1]
    h_prev, h, ghn = h_prev[j0:j1], h[j0:j1], ghn[j0:j1]
    for j in range(j1 - j0):
        r = sigmoid(g_r[j] + gh_r[j])
        z = sigmoid(g_z[j] + gh_z[j])
        n = tanh(g_n[j] + r * gh_n[j])
        h[j] = (1 - z) * n + z * h_prev[j]
        g_r[j], g_z[j], g_n[j] = r, z, n
        ghn[j] = gh_n[j]


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_after_tile(acts, WT, b_hh, hs, ghn, gh, r0, r1, j0, j1, product, flags, me):
    """The whole recurrence for rows ``r0 .. r1-1`` × units ``j0 .. j1-1`` (see ``bptt.run_tiles``)."""
    n, H = threads_of(flags), hs.shape[2]
    for t in range(acts.shape[0]):
        wait_for_inputs(flags, t + 1)                   # G[t] is complete (see bptt.run_tiles)
        for r in range(r0, r1):
            put_units(gh[r], b_hh, j0, j1, 3, False)
        matmul_gates(hs[t], WT, gh, r0, r1, j0, j1, H, 0, 3, product, t % 2)    # gh = h_{t-1} W_hh^T + b_hh
        for r in range(r0, r1):
            _cell_forward_after(acts[t, r], gh[r], hs[t, r], hs[t + 1, r], ghn[t, r], j0, j1)
        arrive_and_wait(flags, me, n, t + 1)            # all of h_t is written before step t+1 reads it


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward_after(acts, ghn, h_prev, dh, dgi, dgh, j0, j1):
    """One row, units ``j0 .. j1-1``: ``dh`` (at h_t) becomes its direct part ``dh ⊙ z``;
    writes ``dgi``, ``dgh`` (3H each) there."""
    H = dh.shape[0]
    a_r, a_z, a_n = acts[j0:j1], acts[H + j0:H + j1], acts[2 * H + j0:2 * H + j1]
    dgi_r, dgi_z, dgi_n = dgi[j0:j1], dgi[H + j0:H + j1], dgi[2 * H + j0:2 * H + j1]
    dgh_r, dgh_z, dgh_n = dgh[j0:j1], dgh[H + j0:H + j1], dgh[2 * H + j0:2 * H + j1]
    ghn, h_prev, dh = ghn[j0:j1], h_prev[j0:j1], dh[j0:j1]          # views, as in _cell_forward_after
    for j in range(j1 - j0):
        r, z, n = a_r[j], a_z[j], a_n[j]
        dn = dh[j] * (1 - z)                                  # h = (1-z) n + z h_prev
        dzj = dh[j] * (h_prev[j] - n)
        da_n = dn * dtanh_from_output(n)                      # n = tanh(a_n)
        da_z = dzj * dsigmoid_from_output(z)                  # z = σ(a_z)
        da_r = da_n * ghn[j] * dsigmoid_from_output(r)        # a_n = gi_n + r ⊙ gh_n,  r = σ(a_r)
        dgi_r[j], dgi_z[j], dgi_n[j] = da_r, da_z, da_n
        dgh_r[j], dgh_z[j], dgh_n[j] = da_r, da_z, da_n * r
        dh[j] = dh[j] * z                                     # h = … + z h_prev


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_after_tile(acts, ghn, hs, W_hh, dy, dstate_h, chains, inject_all,
                         dGI, dGH, dgi, dgh, dh, dh0, r0, r1, j0, j1, product, flags, me):
    """Backward chains for rows ``r0 .. r1-1`` × units ``j0 .. j1-1`` (see ``lstm._backward_tile``
    for ``chains``).

    ``dGI[t] (B, 3H)`` receives the chains' ``dgi = [da_r|da_z|da_n]`` at step t, ``dGH[t] (B, H)``
    only their ``dgh_n = da_n ⊙ r`` (the r, z columns of ``dgh`` are those of ``dgi``, see the
    module docstring).  The first chain to reach step t writes its ``dgi`` straight into
    ``dGI[t]`` and stores ``dgh_n``; a later one writes ``dgi`` into the per-step scratch
    ``dgi (B, 3H)`` and adds both (``units.put_units``).  ``dgh (2, B, 3H)``, the operand of
    the product, is double-buffered as ``dz`` is in ``lstm._backward_tile``.
    """
    T = dy.shape[0]
    H = dh.shape[1]
    n = threads_of(flags)
    passed = 0
    for c in range(chains.shape[0]):
        s, lo = chains[c, 0], chains[c, 1]
        for r in range(r0, r1):
            if s == T - 1:
                put_units(dh[r], dstate_h[r], j0, j1, 1, False)
            else:
                fill_units(dh[r], 0, j0, j1)
        for t in range(s, lo - 1, -1):
            buf = dgh[passed % 2]
            again = revisits(chains, c, t)
            gi = dgi if again else dGI[t]                    # the first chain writes into dGI[t] itself
            for r in range(r0, r1):
                if inject_all or t == s:
                    put_units(dh[r], dy[t, r], j0, j1, 1, True)          # y_t = h_t
                _cell_backward_after(acts[t, r], ghn[t, r], hs[t, r], dh[r], gi[r], buf[r], j0, j1)
                if again:
                    put_units(dGI[t, r], gi[r], j0, j1, 3, True)                   # gi = x W_ih^T + b_ih
                put_units(dGH[t, r], buf[r, 2 * H:], j0, j1, 1, again)              # gh_n = h_prev W_hn^T + b_hn
            passed += 1
            arrive_and_wait(flags, me, n, passed)            # all of dgh_t is written before it is read
            matmul_tile(buf, W_hh, dh, r0, r1, j0, j1, product, passed % 2)    # dh_{t-1} += dgh W_hh
        if lo == 0:
            for r in range(r0, r1):
                put_units(dh0[r], dh[r], j0, j1, 1, True)


# ------------------------------------------------------------------ compiled: reset before the product
@njit(inline="always", **KERNEL_OPTIONS)
def _cell_gates_before(g, h_prev, rh, j0, j1):
    """One row, units ``j0 .. j1-1``: ``g[:2H]`` [a_r|a_z] becomes [r|z]; ``rh = r ⊙ h_prev``."""
    H = h_prev.shape[0]
    g_r, g_z = g[j0:j1], g[H + j0:H + j1]
    h_prev, rh = h_prev[j0:j1], rh[j0:j1]                  # views, as in _cell_forward_after
    for j in range(j1 - j0):
        r = sigmoid(g_r[j])
        z = sigmoid(g_z[j])
        g_r[j], g_z[j] = r, z
        rh[j] = r * h_prev[j]


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_update_before(g, h_prev, h, j0, j1):
    """One row, units ``j0 .. j1-1``: ``g[2H:]`` a_n becomes ``n = tanh(a_n)``;
    ``h = (1-z) n + z h_prev``."""
    H = h.shape[0]
    g_z, g_n = g[H + j0:H + j1], g[2 * H + j0:2 * H + j1]
    h_prev, h = h_prev[j0:j1], h[j0:j1]                    # views, as in _cell_forward_after
    for j in range(j1 - j0):
        z = g_z[j]
        n = tanh(g_n[j])
        h[j] = (1 - z) * n + z * h_prev[j]
        g_n[j] = n


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_before_tile(acts, WT, hs, rh, r0, r1, j0, j1, product, flags, me):
    """The recurrence for rows ``r0 .. r1-1`` × units ``j0 .. j1-1``: two products per step, so
    two barriers (the second product reads all of ``rh_t``, the next step all of ``h_t``).

    Both products add into ``G[t]`` (``acts``) in place, each into its own gate columns of
    ``W_hh^T`` (``WT (H, 3H)``): ``b_hh`` is already in ``G`` (see ``forward``)."""
    n, H = threads_of(flags), hs.shape[2]
    for t in range(acts.shape[0]):
        wait_for_inputs(flags, t + 1)                   # G[t] is complete (see bptt.run_tiles)
        matmul_gates(hs[t], WT, acts[t], r0, r1, j0, j1, H, 0, 2, product, t % 2)   # a_{r,z} = G[t] + h_{t-1} W_h{rz}^T
        for r in range(r0, r1):
            _cell_gates_before(acts[t, r], hs[t, r], rh[t, r], j0, j1)
        arrive_and_wait(flags, me, n, 2 * t + 1)        # all of rh_t is written before it is read
        matmul_gates(rh[t], WT, acts[t], r0, r1, j0, j1, H, 2, 3, product, t % 2)   # a_n = G_n[t] + rh_t W_hn^T
        for r in range(r0, r1):
            _cell_update_before(acts[t, r], hs[t, r], hs[t + 1, r], j0, j1)
        arrive_and_wait(flags, me, n, 2 * t + 2)        # all of h_t is written before step t+1 reads it


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward_before_1(acts, h_prev, dh, dgi, dan, j0, j1):
    """One row, first half, units ``j0 .. j1-1``: ``da_z``, ``da_n`` into ``dgi``/``dan``;
    ``dh`` becomes ``dh ⊙ z``."""
    H = dh.shape[0]
    a_z, a_n, dgi_z, dgi_n = acts[H + j0:H + j1], acts[2 * H + j0:2 * H + j1], dgi[H + j0:H + j1], dgi[2 * H + j0:2 * H + j1]
    h_prev, dh, dan = h_prev[j0:j1], dh[j0:j1], dan[j0:j1]     # views, as in _cell_forward_after
    for j in range(j1 - j0):
        z, n = a_z[j], a_n[j]
        dn = dh[j] * (1 - z)                                  # h = (1-z) n + z h_prev
        dzj = dh[j] * (h_prev[j] - n)
        da_n = dn * dtanh_from_output(n)                      # n = tanh(a_n)
        dgi_z[j] = dzj * dsigmoid_from_output(z)              # z = σ(a_z)
        dgi_n[j] = da_n
        dan[j] = da_n
        dh[j] = dh[j] * z                                     # h = … + z h_prev


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward_before_2(acts, h_prev, drh, dh, dgi, j0, j1):
    """One row, second half, units ``j0 .. j1-1``, given ``drh = da_n W_hn``: ``da_r`` into ``dgi``;
    ``dh += drh ⊙ r``."""
    a_r, dgi_r, h_prev, drh, dh = acts[j0:j1], dgi[j0:j1], h_prev[j0:j1], drh[j0:j1], dh[j0:j1]
    for j in range(j1 - j0):
        r = a_r[j]
        dgi_r[j] = drh[j] * h_prev[j] * dsigmoid_from_output(r)   # rh = r ⊙ h_prev,  r = σ(a_r)
        dh[j] += drh[j] * r                                   # rh = r ⊙ h_prev


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_before_tile(acts, hs, W_rz, W_n, dy, dstate_h, chains, inject_all,
                          dGI, dgi, dan, drh, dh, dh0, r0, r1, j0, j1, product, flags, me):
    """Backward chains for rows ``r0 .. r1-1`` × units ``j0 .. j1-1``; ``dgi (2, B, 3H)`` rows are
    [da_r|da_z|da_n] and ``dan (2, B, H)`` = da_n, both double-buffered by step (each is read
    by every thread's product after a barrier).

    ``dGI[t]`` receives the chains' ``dgi`` at step t as in ``_backward_after_tile``: the
    first chain's directly (it is then also the operand of the second product), a later
    one's through ``dgi`` and an add.
    """
    T = dy.shape[0]
    n = threads_of(flags)
    passed = 0
    for c in range(chains.shape[0]):
        s, lo = chains[c, 0], chains[c, 1]
        for r in range(r0, r1):
            if s == T - 1:
                put_units(dh[r], dstate_h[r], j0, j1, 1, False)
            else:
                fill_units(dh[r], 0, j0, j1)
        for t in range(s, lo - 1, -1):
            again = revisits(chains, c, t)                   # the first chain writes into dGI[t] itself
            gi, an = dgi[passed % 2] if again else dGI[t], dan[passed % 2]
            for r in range(r0, r1):
                if inject_all or t == s:
                    put_units(dh[r], dy[t, r], j0, j1, 1, True)          # y_t = h_t
                _cell_backward_before_1(acts[t, r], hs[t, r], dh[r], gi[r], an[r], j0, j1)
                fill_units(drh[r], 0, j0, j1)
            arrive_and_wait(flags, me, n, 2 * passed + 1)    # all of da_n is written before it is read
            matmul_tile(an, W_n, drh, r0, r1, j0, j1, product, passed % 2)            # d(rh) = da_n W_hn
            for r in range(r0, r1):
                _cell_backward_before_2(acts[t, r], hs[t, r], drh[r], dh[r], gi[r], j0, j1)
                if again:
                    put_units(dGI[t, r], gi[r], j0, j1, 3, True)                   # gi = x W_ih^T + b_ih
            arrive_and_wait(flags, me, n, 2 * passed + 2)    # all of da_r is written before it is read
            matmul_tile(gi, W_rz, dh, r0, r1, j0, j1, product, passed % 2)   # dh_{t-1} += [da_r|da_z] W_h{rz} (K = 2H: reads gi[:, :2H])
            passed += 1
        if lo == 0:
            for r in range(r0, r1):
                put_units(dh0[r], dh[r], j0, j1, 1, True)


# ------------------------------------------------------------------------------------ Python
def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T,), cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    W_ih, W_hh, b_ih, b_hh = bptt.contiguous(params, ("W_ih", "W_hh", "b_ih", "b_hh"))
    # G = X W_ih^T + b_ih (T, B, 3H); reset before the product, every part of b_hh is added to
    # the matching part of gi before its nonlinearity, so it joins b_ih here
    with bptt.deferred() as before_loop:      # recorded: run_tiles computes it before the loop, or ahead of it
        acts = bptt.input_projection(x, W_ih, b_ih if opts["reset_after"] else b_ih + b_hh)
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = 0 if state0 is None else state0[0]
    cache = {"x": x, "acts": acts, "hs": hs, "options": opts, "shape": (T, B, H), "dtype": dtype}
    if opts["reset_after"]:
        ghn, gh = np.empty((T, B, H), dtype), np.empty((B, 3 * H), dtype)
        tiling = bptt.plan_tiles(B, H, 3 * H, T, H, ahead=True)
        bptt.run_tiles(_forward_after_tile, (acts, operand(W_hh.T, tiling.product), b_hh, hs, ghn, gh),
                       B, H, tiling, before=before_loop, stream=T)
        cache["ghn"] = ghn
    else:
        rh = np.empty((T, B, H), dtype)
        tiling = bptt.plan_tiles(B, H, 3 * H, T, H, ahead=True)
        bptt.run_tiles(_forward_before_tile, (acts, operand(W_hh.T, tiling.product), hs, rh), B, H, tiling,
                       before=before_loop, stream=T)
        cache["rh"] = rh
    return hs[1:], (hs[T].copy(),), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.gru.backward``."""
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 1)
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    dstate_h = np.zeros((B, H), dtype) if dstate is None else np.ascontiguousarray(dstate[0])
    chains, inject_all = bptt.chain_schedule(T, window)
    dy = np.ascontiguousarray(dy)
    hs, x = cache["hs"], cache["x"]
    dGI = np.empty((T, B, 3 * H), dtype)    # every element stored at a chain's first visit (bptt.revisits)
    dh, dh0 = np.empty((B, H), dtype), np.zeros((B, H), dtype)
    tiling = bptt.plan_tiles(B, 3 * H, H, T, H, behind=window is None)
    reset_after = cache["options"]["reset_after"]
    if reset_after:
        dGH_n = np.empty((T, B, H), dtype)
    with bptt.deferred() as after_loop:                              # the products after the loop, recorded:
        dW_ih = bptt.weight_gradient(dGI, x)                         # gi = x W_ih^T + b_ih
        db_ih = bptt.bias_gradient(dGI)
        dx = bptt.input_gradient(dGI, W_ih)
        dW_rz = bptt.weight_gradient(dGI[:, :, :2 * H], hs[:-1])     # a_{r,z} = … + h_prev W_h{rz}^T
        if reset_after:
            # gh = h_prev W_hh^T + b_hh: its r, z columns' gradients are those of gi (module
            # docstring), its n columns' are dgh_n = da_n ⊙ r
            dW_n = bptt.weight_gradient(dGH_n, hs[:-1])
            db_n = bptt.bias_gradient(dGH_n)
        else:
            dW_n = bptt.weight_gradient(dGI[:, :, 2 * H:], cache["rh"])   # a_n = … + rh W_hn^T
    # ... run_tiles fills them: after the loop with one hand-off, or alongside it on an idle thread
    stream = T if window is None else 0
    if reset_after:
        dgi, dgh = np.empty((B, 3 * H), dtype), np.empty((2, B, 3 * H), dtype)
        args = (cache["acts"], cache["ghn"], hs, operand(W_hh, tiling.product), dy, dstate_h, chains,
                inject_all, dGI, dGH_n, dgi, dgh, dh, dh0)
        bptt.run_tiles(_backward_after_tile, args, B, H, tiling, then=after_loop, stream=stream)
    else:
        dgi, dan, drh = np.empty((2, B, 3 * H), dtype), np.empty((2, B, H), dtype), np.empty((B, H), dtype)
        args = (cache["acts"], hs, operand(W_hh[:2 * H], tiling.product), operand(W_hh[2 * H:], tiling.product),
                dy, dstate_h, chains, inject_all, dGI, dgi, dan, drh, dh, dh0)
        bptt.run_tiles(_backward_before_tile, args, B, H, tiling, then=after_loop, stream=stream,
                       barriers_per_step=2)
    dW_hh = np.concatenate([dW_rz, dW_n])
    db_hh = np.concatenate([db_ih[:2 * H], db_n]) if reset_after else db_ih.copy()   # a = gi + gh: the same sums
    return {"W_ih": dW_ih, "W_hh": dW_hh, "b_ih": db_ih, "b_hh": db_hh, "x": dx, "state0": (dh0,)}


def step_forward(params, x_t, state, reset_after=True):
    """One step, ``x_t (B, D)``: the compiled loop on a sequence of length 1 -> ``((h,), cache)``."""
    _, state, cache = forward(params, x_t[None], state, reset_after=reset_after)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh,)`` -> ``(dx_t, (dh_prev,), dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1)}

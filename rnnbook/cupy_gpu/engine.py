r"""The GPU backend's driver: both implementations of every cell, written once.

Every function here takes a *launcher* -- ``gpu.CupyLauncher`` on a GPU, or
``emulation.EmulatedLauncher`` on the CPU -- which supplies the array module
``xp`` (CuPy or NumPy) and the kernels (``launcher.kernel(name)(grid, block,
args, shared_mem=...)``).  The matrix products are written with ``@`` and run
on cuBLAS (CuPy) or BLAS (NumPy); everything recurrent runs in our kernels.  So
the very code that runs on the GPU is tested on the CPU, kernels included.

Two implementations (option ``impl``):

``"alternating"`` -- the teaching version.  Forward::

    xproj = x W_ih^T + b                          one GEMM for all T steps  (T, B, G*H)
    for t in 0..T-1:
        gh  = h_{t-1} W_hh^T                      GEMM (cuBLAS)             (B, G*H)
        h_t, c_t, gates_t = cell(xproj_t, gh)     one pointwise kernel

Backward (full BPTT)::

    for t in T-1..0:
        dz_t, dc_{t-1}, direct = cell_backward(dh_t + dy_t, dc_t, gates_t)   pointwise kernel
        dh_{t-1} = direct + dz_t W_hh                                        GEMM
    dW_ih = dz^T x,  dW_hh = dz^T h_prev,  db = sum dz,  dx = dz W_ih      four big GEMMs

``"persistent"`` -- the two loops above each become *one* kernel launch that
keeps its slice of ``W_hh`` on chip for all T steps (``kernels/persistent.cu``);
the GEMMs before and after are shared with the alternating version, and so is
the layout of the cache, so the two are interchangeable step for step.

Heads (option ``heads``, default 1): ``W_hh`` restricted to ``heads`` diagonal
blocks per gate, as in FlashRNN -- unit ``j`` of head ``m`` only sees the hidden
units of head ``m``.  The parameters keep the full ``(G*H, H)`` shape; the
entries off the diagonal blocks must be zero (``init_params(..., heads=k)``
makes them so, and ``forward`` refuses weights that break this, rather than
silently ignoring them), and their gradient is returned as zero because they
are not parameters of the head-wise model.

Truncated BPTT (``backward(..., window=k)``) runs the alternating step kernels,
one truncated chain per injection, whichever implementation made the cache
(the persistent backward kernel computes full BPTT only).

Cache layout (``(T, B, ...)``, shared by both implementations):
``y`` outputs h_t; ``c`` (LSTM) cell states; ``gates`` the activations the
backward pass needs, ``S`` slots of ``H`` columns (LSTM i,f,g,o; GRU reset-after
r,z,n,gh_n; GRU reset-before r,z,n; RNN: none, ``phi'`` comes from ``y``);
``rh`` (GRU reset-before) ``r * h_{t-1}``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import checks
from . import sources

IMPLS = ("alternating", "persistent")
_i32 = np.int32


# --------------------------------------------------------------------------- options
def cell_id(name: str, opts: dict) -> int:
    """The kernels' cell identifier for a numpy_ref cell name and its options."""
    if name == "rnn":
        return sources.CELL_IDS["rnn_relu" if opts.get("nonlinearity") == "relu" else "rnn_tanh"]
    if name == "lstm":
        return sources.CELL_IDS["lstm"]
    if name == "gru":
        return sources.CELL_IDS["gru_after" if opts.get("reset_after", True) else "gru_before"]
    raise ValueError(f"the GPU backend has no cell {name!r}")


def split_backend_options(options: dict):
    """Separate the backend's own options (impl, heads, tuning) from the cell's options."""
    options = dict(options)
    impl = options.pop("impl", "alternating")
    heads = options.pop("heads", 1)
    tuning = options.pop("tuning", None)
    if impl not in IMPLS:
        raise ValueError(f"option impl={impl!r} must be one of {IMPLS}")
    if isinstance(heads, bool) or not isinstance(heads, (int, np.integer)) or heads < 1:
        raise ValueError(f"option heads must be a positive integer, got {heads!r}")
    if tuning is not None and not isinstance(tuning, dict):
        raise TypeError(f"option tuning must be a dict (units_per_block, batch_tile, chunk, threads), "
                        f"got {type(tuning).__name__}")
    return options, impl, int(heads), tuning or {}


def head_mask(xp, G: int, H: int, heads: int, dtype):
    """``(G*H, H)`` mask: 1 on the ``heads`` diagonal blocks of every gate, 0 elsewhere."""
    head_of = np.arange(H) // (H // heads)
    mask = np.tile((head_of[:, None] == head_of[None, :]).astype(dtype), (G, 1))
    return xp.asarray(mask)


def check_heads(xp, W_hh, G: int, H: int, heads: int):
    if H % heads:
        raise ValueError(f"option heads={heads} must divide the hidden size {H}")
    if heads > 1:
        off = W_hh * (1 - head_mask(xp, G, H, heads, W_hh.dtype))
        if bool(xp.any(off != 0)):
            raise ValueError(f"params['W_hh'] has nonzero entries outside the {heads} diagonal head blocks; "
                             f"with heads={heads} the recurrent weights must be block diagonal "
                             f"(init_params(..., heads={heads}) makes them so)")


# --------------------------------------------------------------------------- helpers
def _grid1d(n: int, threads: int):
    return (max(1, -(-n // threads)),), (threads,)


def _dummy(xp, dtype):
    return xp.zeros(1, dtype)


def _unpack(cid, params):
    if cid in (3, 4):
        return params["W_ih"], params["W_hh"], params["b_ih"], params["b_hh"]
    return params["W_ih"], params["W_hh"], params["b"], None


# --------------------------------------------------------------------------- forward
def forward(launcher, cell, params, x, state0, options):
    """``(y, state, cache)`` for the numpy_ref spec module ``cell`` (its NAME, OPTIONS, ...)."""
    xp = launcher.xp
    cell_opts, impl, heads, tuning = split_backend_options(options)
    opts, (T, B, D, H), dtype, state0 = checks.check_forward_call(cell, params, x, state0, cell_opts)
    if cell.NAME == "lstm":
        checks.require_default_options(cell, opts, "cupy")       # the kernels know the PyTorch LSTM only
    cid = cell_id(cell.NAME, opts)
    G, S = sources.GATES[cid], sources.CACHE_SLOTS[cid]
    params = {k: xp.asarray(v) for k, v in params.items()}       # NumPy in: copied to the device once
    W_ih, W_hh, b, b_hh = _unpack(cid, params)
    check_heads(xp, W_hh, G, H, heads)
    x = xp.ascontiguousarray(xp.asarray(x))
    if state0 is None:
        state0 = tuple(xp.zeros((B, H), dtype) for _ in checks.state_names(cell, opts))
    state0 = tuple(xp.ascontiguousarray(xp.asarray(s)) for s in state0)
    h0 = state0[0]
    c0 = state0[1] if cid == 2 else None

    # the input projection of all T steps at once: one GEMM, (T*B, D) x (D, G*H)
    xproj = xp.ascontiguousarray((x.reshape(T * B, D) @ W_ih.T + b).reshape(T, B, G * H))
    y = xp.empty((T, B, H), dtype)
    c_all = xp.empty((T, B, H), dtype) if cid == 2 else None
    gates = xp.empty((T, B, S * H), dtype) if S else None
    rh = xp.empty((T, B, H), dtype) if cid == 4 else None
    W_hh = xp.ascontiguousarray(W_hh)

    if impl == "alternating":
        _alternating_forward(launcher, cid, xproj, W_hh, b_hh, h0, c0, y, c_all, gates, rh)
    else:
        _persistent_forward(launcher, cid, xproj, W_hh, b_hh, h0, c0, y, c_all, gates, rh, heads, tuning)

    state = (y[T - 1].copy(), c_all[T - 1].copy()) if cid == 2 else (y[T - 1].copy(),)
    cache = {"x": x, "state0": state0, "y": y, "c": c_all, "gates": gates, "rh": rh,
             "options": opts, "impl": impl, "heads": heads, "tuning": tuning, "cell_id": cid,
             "shape": (T, B, H), "dtype": dtype}
    return y, state, cache


def _alternating_forward(launcher, cid, xproj, W_hh, b_hh, h0, c0, y, c_all, gates, rh):
    """T steps of: one GEMM (``h_{t-1} W_hh^T``), then one pointwise kernel."""
    xp = launcher.xp
    T, B, H = y.shape
    dt = y.dtype
    grid, block = _grid1d(B * H, launcher.pointwise_threads)
    Bi, Hi = _i32(B), _i32(H)
    for t in range(T):
        h_prev = h0 if t == 0 else y[t - 1]
        if cid in (0, 1):                                          # Elman RNN
            gh = h_prev @ W_hh.T
            k = launcher.kernel(sources.kernel_name("rnn_pointwise_forward", dt, cid == 1))
            k(grid, block, (xproj[t], gh, y[t], Bi, Hi))
        elif cid == 2:                                             # LSTM
            gh = h_prev @ W_hh.T
            c_prev = c0 if t == 0 else c_all[t - 1]
            k = launcher.kernel(sources.kernel_name("lstm_pointwise_forward", dt))
            k(grid, block, (xproj[t], gh, c_prev, y[t], c_all[t], gates[t], Bi, Hi))
        elif cid == 3:                                             # GRU, reset after
            gh = h_prev @ W_hh.T
            k = launcher.kernel(sources.kernel_name("gru_after_pointwise_forward", dt))
            k(grid, block, (xproj[t], gh, b_hh, h_prev, y[t], gates[t], Bi, Hi))
        else:                                                      # GRU, reset before
            gh_rz = h_prev @ W_hh[:2 * H].T
            k1 = launcher.kernel(sources.kernel_name("gru_before_pointwise_gates", dt))
            k1(grid, block, (xproj[t], xp.ascontiguousarray(gh_rz), b_hh, h_prev, gates[t], rh[t], Bi, Hi))
            ghn = rh[t] @ W_hh[2 * H:].T                            # (r * h_prev) W_hn^T
            k2 = launcher.kernel(sources.kernel_name("gru_before_pointwise_output", dt))
            k2(grid, block, (xproj[t], xp.ascontiguousarray(ghn), b_hh, h_prev, gates[t], y[t], Bi, Hi))


# --------------------------------------------------------------------------- persistent planning
@dataclass
class Plan:
    """Launch configuration of a persistent kernel (see the layout comment in persistent.cu)."""
    units_per_block: int     # U
    blocks_per_head: int     # grid.x
    heads: int               # grid.y
    batch_tile: int          # Bt
    batch_tiles: int         # grid.z
    chunk: int               # KC
    threads: int
    shared_bytes: int

    @property
    def grid(self):
        return (self.blocks_per_head, self.heads, self.batch_tiles)

    @property
    def blocks(self):
        return self.blocks_per_head * self.heads * self.batch_tiles


def shared_bytes(direction: str, G: int, Hh: int, U: int, Bt: int, KC: int, itemsize: int) -> int:
    """Dynamic shared memory of the persistent kernels, exactly as they lay it out."""
    if direction == "forward":
        elems = G * U * (Hh + 1) + Bt * KC + Bt * G * U
    else:
        elems = U * (G * Hh + 1) + Bt * KC + 3 * Bt * U
    return elems * itemsize


def plan_persistent(launcher, direction: str, cid: int, B: int, H: int, heads: int, itemsize: int,
                    tuning: dict) -> Plan:
    """Choose units per block, batch tile and chunk so that everything fits on chip.

    Default: the whole batch in one tile; as many blocks per head as the GPU has
    multiprocessors (one block each), so that the head's slice of ``W_hh`` is
    spread over the whole chip.  ``tuning`` overrides any choice.  Raises a
    ``ValueError`` naming the alternative when the weights cannot stay on chip.
    """
    G = sources.GATES[cid]
    Hh = H // heads
    threads = int(tuning.get("threads", launcher.persistent_threads))
    Bt = int(tuning.get("batch_tile", B))
    KC = int(tuning.get("chunk", min(128, Hh)))
    tiles = -(-B // Bt)
    if "units_per_block" in tuning:
        U = int(tuning["units_per_block"])
    else:
        per_head = max(1, launcher.multiprocessors // (heads * tiles))
        U = -(-Hh // per_head)
        while U > 1 and shared_bytes(direction, G, Hh, U, Bt, KC, itemsize) > launcher.max_shared_bytes:
            U = -(-U // 2)      # not enough shared memory: more, smaller blocks
    if not (1 <= U and 1 <= Bt and 1 <= KC and threads >= 1):
        raise ValueError(f"invalid persistent tuning {tuning}")
    U = min(U, Hh)
    bph = -(-Hh // U)
    U = -(-Hh // bph)           # balance: every block gets ceil(Hh / bph) units (the last may get fewer)
    smem = shared_bytes(direction, G, Hh, U, Bt, KC, itemsize)
    plan = Plan(U, bph, heads, Bt, tiles, KC, threads, smem)
    if smem > launcher.max_shared_bytes:
        raise ValueError(
            f"persistent {direction}: the recurrent weights of one unit do not fit in shared memory "
            f"({smem} bytes needed per block of {U} unit(s), {launcher.max_shared_bytes} available; "
            f"head size {Hh}, {G} gate(s), itemsize {itemsize}). Use impl='alternating', more heads, "
            f"or a smaller batch_tile")
    return plan


def _launch_persistent(launcher, name, plan: Plan, args):
    k = launcher.kernel(name)
    capacity = launcher.max_resident_blocks(k, plan.threads, plan.shared_bytes)
    if plan.blocks > capacity:
        raise ValueError(
            f"{name}: {plan.blocks} blocks ({plan.blocks_per_head} per head x {plan.heads} heads x "
            f"{plan.batch_tiles} batch tiles) cannot all be resident on this GPU (at most {capacity}); "
            "the persistent kernel needs every block of a head on chip at once. "
            "Use impl='alternating', a larger units_per_block, or more heads")
    k(plan.grid, (plan.threads,), args, shared_mem=plan.shared_bytes)


def _persistent_forward(launcher, cid, xproj, W_hh, b_hh, h0, c0, y, c_all, gates, rh, heads, tuning):
    xp = launcher.xp
    T, B, H = y.shape
    dt = y.dtype
    plan = plan_persistent(launcher, "forward", cid, B, H, heads, dt.itemsize, tuning)
    counters = xp.zeros(plan.heads * plan.batch_tiles, np.uint32)
    d = _dummy(xp, dt)
    args = (xproj, W_hh, d if b_hh is None else b_hh, h0, d if c0 is None else c0,
            y, d if c_all is None else c_all, d if gates is None else gates, d if rh is None else rh,
            counters, _i32(T), _i32(B), _i32(H), _i32(heads), _i32(plan.units_per_block),
            _i32(plan.batch_tile), _i32(plan.chunk))
    _launch_persistent(launcher, sources.kernel_name("persistent_forward", dt, cid), plan, args)


# --------------------------------------------------------------------------- backward
def backward(launcher, cell, params, cache, dy, dstate, window):
    """Gradients of ``sum(dy*y) + sum(dstate*state)``: every parameter, ``"x"``, ``"state0"``."""
    xp = launcher.xp
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = checks.check_backward_call(cell, cache["shape"], dtype, dy, dstate, cell.STATE_NAMES)
    cid = cache["cell_id"]
    G = sources.GATES[cid]
    params = {k: xp.asarray(v) for k, v in params.items()}
    W_ih, W_hh, _, _ = _unpack(cid, params)
    W_hh = xp.ascontiguousarray(W_hh)
    dy = xp.ascontiguousarray(xp.asarray(dy))
    dstate = None if dstate is None else tuple(xp.asarray(d) for d in dstate)
    zeros = lambda: xp.zeros((B, H), dtype)  # noqa: E731
    dh_T = zeros() if dstate is None else xp.array(dstate[0], dtype=dtype, copy=True)
    dc_T = (zeros() if dstate is None else xp.array(dstate[1], dtype=dtype, copy=True)) if cid == 2 else None

    dgi = xp.zeros((T, B, G * H), dtype)
    dgh = xp.zeros((T, B, G * H), dtype) if cid == 3 else dgi     # differ only for the reset-after GRU
    if window is not None:
        k = checks.check_window(window, T)
        dh0, dc0 = _windowed_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh, k)
    elif cache["impl"] == "alternating":
        dh0, dc0 = _alternating_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh)
    else:
        dh0, dc0 = _persistent_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh)
    grads = _parameter_gradients(xp, cid, params, cache, dgi, dgh)
    grads["state0"] = (dh0, dc0) if cid == 2 else (dh0,)
    return grads


def _step_backward(launcher, cid, cache, W_hh, t, dh, dc, dgi_t, dgh_t):
    """Backward of step ``t``: writes ``dgi_t``, ``dgh_t`` and returns ``(dh_{t-1}, dc_{t-1})``.

    ``dh`` is all the error reaching ``h_t``; ``dc`` the error reaching ``c_t`` (LSTM).
    Every operation is linear in ``(dh, dc)`` given the cache -- which is what lets
    truncated BPTT add up separate chains.
    """
    xp = launcher.xp
    T, B, H = cache["shape"]
    dt = cache["dtype"]
    y, gates = cache["y"], cache["gates"]
    h_prev = cache["state0"][0] if t == 0 else y[t - 1]
    grid, block = _grid1d(B * H, launcher.pointwise_threads)
    Bi, Hi = _i32(B), _i32(H)
    dh = xp.ascontiguousarray(dh)
    if cid in (0, 1):
        k = launcher.kernel(sources.kernel_name("rnn_pointwise_backward", dt, cid == 1))
        k(grid, block, (dh, y[t], dgi_t, Bi, Hi))
        return dgi_t @ W_hh, None                                  # dh_{t-1} = da W_hh
    if cid == 2:
        c_all = cache["c"]
        c_prev = cache["state0"][1] if t == 0 else c_all[t - 1]
        dc_prev = xp.empty((B, H), dt)
        k = launcher.kernel(sources.kernel_name("lstm_pointwise_backward", dt))
        k(grid, block, (dh, xp.ascontiguousarray(dc), gates[t], c_all[t], c_prev, dgi_t, dc_prev, Bi, Hi))
        return dgi_t @ W_hh, dc_prev                               # dh_{t-1} = dz W_hh
    direct = xp.empty((B, H), dt)
    if cid == 3:
        k = launcher.kernel(sources.kernel_name("gru_after_pointwise_backward", dt))
        k(grid, block, (dh, h_prev, gates[t], dgi_t, dgh_t, direct, Bi, Hi))
        return direct + dgh_t @ W_hh, None                         # dh z + dgh W_hh
    k1 = launcher.kernel(sources.kernel_name("gru_before_pointwise_backward_gates", dt))
    k1(grid, block, (dh, h_prev, gates[t], dgi_t, direct, Bi, Hi))
    d_rh = xp.ascontiguousarray(dgi_t[:, 2 * H:] @ W_hh[2 * H:])   # error of r * h_prev: da_n W_hn
    k2 = launcher.kernel(sources.kernel_name("gru_before_pointwise_backward_reset", dt))
    k2(grid, block, (d_rh, h_prev, gates[t], dgi_t, direct, Bi, Hi))
    return direct + dgi_t[:, :2 * H] @ W_hh[:2 * H], None          # + [da_r|da_z] W_h{r,z}


def _alternating_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh):
    """Full BPTT, one step at a time (pointwise kernel + GEMM per step)."""
    T = cache["shape"][0]
    dh, dc = dh_T, dc_T
    for t in reversed(range(T)):
        dh, dc = _step_backward(launcher, cid, cache, W_hh, t, dh + dy[t], dc, dgi[t], dgh[t])
    return dh, dc


def _windowed_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh, k):
    """BPTT(k): the error injected at step s runs back through steps s, ..., s-k+1 only.

    As in numpy_ref.bptt, one chain per injection; the chains' pre-activation
    errors are summed into ``dgi``/``dgh`` (the weight gradients are linear in them).
    """
    xp = launcher.xp
    T, B, H = cache["shape"]
    dt = cache["dtype"]
    GH = dgi.shape[2]
    dh0, dc0 = xp.zeros((B, H), dt), (xp.zeros((B, H), dt) if cid == 2 else None)
    for s in range(T):
        dh = dy[s] + (dh_T if s == T - 1 else 0)
        dc = (dc_T if s == T - 1 else xp.zeros((B, H), dt)) if cid == 2 else None
        for t in range(s, max(s - k, -1), -1):
            gi_t, gh_t = xp.zeros((B, GH), dt), xp.zeros((B, GH), dt)
            dh, dc = _step_backward(launcher, cid, cache, W_hh, t, dh, dc, gi_t, gh_t if cid == 3 else gi_t)
            dgi[t] += gi_t
            if cid == 3:
                dgh[t] += gh_t
        if s - k < 0:                                          # this chain reached the initial state
            dh0 = dh0 + dh
            if cid == 2:
                dc0 = dc0 + dc
    return dh0, dc0


def _persistent_backward(launcher, cid, cache, W_hh, dy, dh_T, dc_T, dgi, dgh):
    xp = launcher.xp
    T, B, H = cache["shape"]
    dt = cache["dtype"]
    plan = plan_persistent(launcher, "backward", cid, B, H, cache["heads"], dt.itemsize, cache["tuning"])
    counters = xp.zeros(plan.heads * plan.batch_tiles, np.uint32)
    d = _dummy(xp, dt)
    h0 = cache["state0"][0]
    c0 = cache["state0"][1] if cid == 2 else d
    dh0 = xp.empty((B, H), dt)
    dc0 = xp.empty((B, H), dt) if cid == 2 else d
    g = cache["gates"]
    args = (W_hh, dy, dh_T, d if dc_T is None else dc_T, h0, c0, cache["y"],
            d if cache["c"] is None else cache["c"], d if g is None else g,
            dgi, dgh, dh0, dc0, counters, _i32(T), _i32(B), _i32(H), _i32(cache["heads"]),
            _i32(plan.units_per_block), _i32(plan.batch_tile), _i32(plan.chunk))
    _launch_persistent(launcher, sources.kernel_name("persistent_backward", dt, cid), plan, args)
    return dh0, (dc0 if cid == 2 else None)


def _parameter_gradients(xp, cid, params, cache, dgi, dgh):
    """The parallel part of the backward pass: large GEMMs over all T*B rows at once."""
    T, B, H = cache["shape"]
    x = cache["x"]
    D = x.shape[2]
    GH = dgi.shape[2]
    W_ih = params["W_ih"]
    x2, dgi2 = x.reshape(T * B, D), dgi.reshape(T * B, GH)
    h_prev = xp.concatenate([cache["state0"][0][None], cache["y"][:-1]], axis=0).reshape(T * B, H)
    grads = {"W_ih": dgi2.T @ x2}                                # pre = x W_ih^T + ...
    if cid == 4:                                                 # n rows multiply r * h_prev
        dW_hh = xp.concatenate([dgi2[:, :2 * H].T @ h_prev,
                                dgi2[:, 2 * H:].T @ cache["rh"].reshape(T * B, H)], axis=0)
    else:
        dW_hh = dgh.reshape(T * B, GH).T @ h_prev                # pre = ... + h_prev W_hh^T
    heads = cache["heads"]
    if heads > 1:                                                # off-block entries are not parameters
        dW_hh = dW_hh * head_mask(xp, GH // H, H, heads, dW_hh.dtype)
    grads["W_hh"] = dW_hh
    if cid in (3, 4):
        grads["b_ih"] = dgi2.sum(axis=0)
        grads["b_hh"] = dgh.reshape(T * B, GH).sum(axis=0)
    else:
        grads["b"] = dgi2.sum(axis=0)
    grads = {k: grads[k] for k in params}                        # the parameters' order
    grads["x"] = (dgi2 @ W_ih).reshape(T, B, D)
    return grads


# --------------------------------------------------------------------------- init
def init_params(xp, cell, input_size, hidden_size, seed=0, dtype=np.float64, **options):
    """numpy_ref's initialisation, moved to ``xp``; with ``heads > 1`` off-block W_hh entries zeroed."""
    cell_opts, _impl, heads, _tuning = split_backend_options(options)
    checks.check_sizes(input_size, hidden_size)
    if hidden_size % heads:
        raise ValueError(f"option heads={heads} must divide hidden_size={hidden_size}")
    p = cell.init_params(input_size, hidden_size, seed=seed, dtype=dtype, **cell_opts)
    if heads > 1:
        G = p["W_hh"].shape[0] // hidden_size
        p["W_hh"] = p["W_hh"] * head_mask(np, G, hidden_size, heads, p["W_hh"].dtype)
        p["W_hh"] *= math.sqrt(heads)      # keep the U(-1/sqrt(Hh), 1/sqrt(Hh)) scale of a head
    return {k: xp.asarray(v) for k, v in p.items()}

r"""LSTM on the Numba backend: ``numpy_ref.lstm`` with the time loop compiled and fused.

Same equations, names and gate order (**i, f, g, o**) as ``numpy_ref.lstm``::

    z_t = x_t W_ih^T + b  +  h_{t-1} W_hh^T      (B, 4H) = [z_i | z_f | z_g | z_o]
          ╰── G[t]: all steps, one GEMM ──╯ ╰── per step, inside the compiled loop ──╯
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g        h_t = o ⊙ tanh(c_t)

Arrays of the compiled loop (see ``bptt`` for the schedule)::

    gates (T, B, 4H)   G[t] before step t, the gate values [i|f|g|o] after it (the cache)
    hs    (T+1, B, H)  hs[0] = h_0,  hs[t+1] = h_t      (y = hs[1:])
    cs    (T+1, B, H)  cs[0] = c_0,  cs[t+1] = c_t
    WT    (H, 4H)      W_hh^T, so that the product runs along contiguous rows

Backward of one step (``_cell_backward``; each line differentiates the forward line named)::

    do  = dh ⊙ tanh(c_t)                          # h = o ⊙ tanh(c)
    dc  = dc_t + dh ⊙ o ⊙ (1 - tanh²(c_t))        # h = o ⊙ tanh(c), and c_t feeds step t+1
    di  = dc ⊙ g,  dg = dc ⊙ i,  df = dc ⊙ c_{t-1} # c = f ⊙ c_prev + i ⊙ g
    dc_{t-1} = dc ⊙ f
    dz  = [di·i(1-i) | df·f(1-f) | dg·(1-g²) | do·o(1-o)]   # the four gate nonlinearities
    dh_{t-1} = dz W_hh                             # z = … + h_prev W_hh^T   (in the compiled loop)
    dW_ih = Σ_t dz_t^T x_t,  dW_hh = Σ_t dz_t^T h_{t-1},  db = Σ dz,  dx_t = dz_t W_ih   (GEMMs after it)

The variant options of ``numpy_ref.lstm`` (peepholes, disabled gates or activations, CIFG,
FGR) run in their own two kernels at the end of this file, selected by bit flags
(``variant_flags``); ``forward``/``backward`` route there when any option is not the default.
"""
import numpy as np
from numba import njit

from ..checks import check_backward_call, check_forward_call, non_default_options
from ..numpy_ref import lstm as _spec
from . import bptt
from .bptt import revisits
from .functions import KERNEL_OPTIONS, dsigmoid_from_output, dtanh_from_output, sigmoid, tanh
from .gemm import matmul_gates, matmul_rows, matmul_tile, operand
from .sync import arrive_and_wait, threads_of, wait_for_inputs
from .units import add, copy, fill, fill_units, put_units

NAME, OPTIONS, STATE_NAMES = _spec.NAME, _spec.OPTIONS, _spec.STATE_NAMES
param_shapes, hidden_size, init_params = _spec.param_shapes, _spec.hidden_size, _spec.init_params


# ------------------------------------------------------------------------------------ compiled
@njit(inline="always", **KERNEL_OPTIONS)
def _cell_forward(z, c_prev, h, c, j0, j1):
    """Gate nonlinearities and state update of one batch row, units ``j0 .. j1-1``;
    ``z (4H)`` becomes ``[i|f|g|o]`` there."""
    H = h.shape[0]
    # the tile's units of each array, as views: a loop over views compiles to SIMD code, one
    # indexed from j0 does not (LLVM gives up on the overlap checks between z's four blocks)
    z_i, z_f, z_g, z_o = z[j0:j1], z[H + j0:H + j1], z[2 * H + j0:2 * H + j1], z[3 * H + j0:3 * H + j1]
    c_prev, h, c = c_prev[j0:j1], h[j0:j1], c[j0:j1]
    for j in range(j1 - j0):
        i = sigmoid(z_i[j])
        f = sigmoid(z_f[j])
        g = tanh(z_g[j])
        o = sigmoid(z_o[j])
        c[j] = f * c_prev[j] + i * g                   # c = f ⊙ c_prev + i ⊙ g
        h[j] = o * tanh(c[j])                          # h = o ⊙ tanh(c)
        z_i[j], z_f[j], z_g[j], z_o[j] = i, f, g, o


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _forward_tile(gates, WT, hs, cs, r0, r1, j0, j1, product, flags, me):
    """The whole recurrence for rows ``r0 .. r1-1`` × units ``j0 .. j1-1`` (no Python between steps)."""
    n, H = threads_of(flags), hs.shape[2]
    for t in range(gates.shape[0]):
        wait_for_inputs(flags, t + 1)                   # G[t] is complete (see bptt.run_tiles)
        matmul_gates(hs[t], WT, gates[t], r0, r1, j0, j1, H, 0, 4, product, t % 2)   # z_t = G[t] + h_{t-1} W_hh^T
        for r in range(r0, r1):
            _cell_forward(gates[t, r], cs[t, r], hs[t + 1, r], cs[t + 1, r], j0, j1)
        arrive_and_wait(flags, me, n, t + 1)            # all of h_t is written before step t+1 reads it


@njit(inline="always", **KERNEL_OPTIONS)
def _cell_backward(acts, c_prev, c, dh, dc, dz, j0, j1):
    """Backward of one row of one step, units ``j0 .. j1-1``: reads ``dh``, ``dc`` (at step t),
    writes ``dz``, ``dc <- dc_{t-1}``."""
    H = dh.shape[0]
    a_i, a_f, a_g, a_o = acts[j0:j1], acts[H + j0:H + j1], acts[2 * H + j0:2 * H + j1], acts[3 * H + j0:3 * H + j1]
    dz_i, dz_f, dz_g, dz_o = dz[j0:j1], dz[H + j0:H + j1], dz[2 * H + j0:2 * H + j1], dz[3 * H + j0:3 * H + j1]
    c_prev, c, dh, dc = c_prev[j0:j1], c[j0:j1], dh[j0:j1], dc[j0:j1]     # views, as in _cell_forward
    for j in range(j1 - j0):
        i, f, g, o = a_i[j], a_f[j], a_g[j], a_o[j]
        tc = tanh(c[j])
        do = dh[j] * tc                                     # h = o ⊙ tanh(c)
        dcj = dc[j] + dh[j] * o * dtanh_from_output(tc)     # h = o ⊙ tanh(c); c feeds t+1
        dz_i[j] = dcj * g * dsigmoid_from_output(i)         # c = … + i ⊙ g,  i = σ(z_i)
        dz_f[j] = dcj * c_prev[j] * dsigmoid_from_output(f)     # c = f ⊙ c_prev + …,  f = σ(z_f)
        dz_g[j] = dcj * i * dtanh_from_output(g)            # c = … + i ⊙ g,  g = tanh(z_g)
        dz_o[j] = do * dsigmoid_from_output(o)              # o = σ(z_o)
        dc[j] = dcj * f                                     # c = f ⊙ c_prev + …


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _backward_tile(gates, hs, cs, W_hh, dy, dstate_h, dstate_c, chains, inject_all,
                   dZ, dz, dh, dc, dh0, dc0, r0, r1, j0, j1, product, flags, me):
    """Backward chains for rows ``r0 .. r1-1`` × units ``j0 .. j1-1``; ``dZ`` gets every chain's gate gradients.

    ``chains[n] = (s, lo)``: start at step ``s`` with ``dy[s]`` (plus ``dstate`` when
    ``s = T-1``) and run down to step ``lo``; with ``inject_all`` also add ``dy[t]`` at
    every step (full BPTT is the single chain ``(T-1, 0)``).  A chain that ends at
    step 0 adds what is left into ``dh0, dc0`` (the gradient on the initial state).

    The first chain to reach step t writes its gate gradients straight into ``dZ[t]`` and
    the product reads them there.  A later chain (BPTT(k) only) writes them into ``dz``
    and adds them into ``dZ[t]`` (``units.put_units``): its product needs its own ``dz_t``,
    not the sum.  ``dz (2, B, 4H)`` is double-buffered: with unit blocks, the product at
    step t reads every thread's ``dz_t`` while a faster thread may already write ``dz_{t-1}``.
    """
    T = gates.shape[0]
    n = threads_of(flags)
    passed = 0
    for c in range(chains.shape[0]):
        s, lo = chains[c, 0], chains[c, 1]
        for r in range(r0, r1):
            if s == T - 1:
                put_units(dh[r], dstate_h[r], j0, j1, 1, False)
                put_units(dc[r], dstate_c[r], j0, j1, 1, False)
            else:
                fill_units(dh[r], 0, j0, j1)
                fill_units(dc[r], 0, j0, j1)
        for t in range(s, lo - 1, -1):
            again = revisits(chains, c, t)
            buf = dz[passed % 2] if again else dZ[t]
            for r in range(r0, r1):
                if inject_all or t == s:
                    put_units(dh[r], dy[t, r], j0, j1, 1, True)          # y_t = h_t
                _cell_backward(gates[t, r], cs[t, r], cs[t + 1, r], dh[r], dc[r], buf[r], j0, j1)
                if again:
                    put_units(dZ[t, r], buf[r], j0, j1, 4, True)
                fill_units(dh[r], 0, j0, j1)
            passed += 1
            arrive_and_wait(flags, me, n, passed)            # all of dz_t is written before it is read
            matmul_tile(buf, W_hh, dh, r0, r1, j0, j1, product, passed % 2)    # dh_{t-1} = dz W_hh
        if lo == 0:
            for r in range(r0, r1):
                put_units(dh0[r], dh[r], j0, j1, 1, True)
                put_units(dc0[r], dc[r], j0, j1, 1, True)


# ------------------------------------------------------------------------------------ Python
def forward(params, x, state0=None, **options):
    """Run over ``x (T, B, D)``: returns ``(y (T, B, H), (h_T, c_T[, i, f, o]), cache)``."""
    opts, (T, B, D, H), dtype, state0 = check_forward_call(_spec, params, x, state0, options)
    if non_default_options(_spec, opts):              # a variant: its own kernels (end of this file)
        return _variant_forward(params, x, state0, _spec._options(opts), T, B, H, dtype)
    W_ih, W_hh, b = bptt.contiguous(params, ("W_ih", "W_hh", "b"))
    with bptt.deferred() as before_loop:      # recorded: run_tiles computes it before the loop, or ahead of it
        gates = bptt.input_projection(x, W_ih, b)               # G = X W_ih^T + b   (T, B, 4H)
    hs = np.empty((T + 1, B, H), dtype)
    cs = np.empty((T + 1, B, H), dtype)
    hs[0], cs[0] = (0, 0) if state0 is None else state0
    tiling = bptt.plan_tiles(B, H, 4 * H, T, H, ahead=True)
    bptt.run_tiles(_forward_tile, (gates, operand(W_hh.T, tiling.product), hs, cs), B, H, tiling,
                   before=before_loop, stream=T)
    cache = {"x": x, "gates": gates, "hs": hs, "cs": cs, "options": opts,
             "shape": (T, B, H), "dtype": dtype}
    return hs[1:], (hs[T].copy(), cs[T].copy()), cache


def backward(params, cache, dy, dstate=None, window=None):
    """Full BPTT (``window=None``) or BPTT(k): the gradients of ``numpy_ref.lstm.backward``."""
    if "variant" in cache:                            # made by _variant_forward
        return _variant_backward(params, cache, dy, dstate, window)
    T, B, H = cache["shape"]
    dtype = cache["dtype"]
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, 2)
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    if dstate is None:
        dstate = (np.zeros((B, H), dtype), np.zeros((B, H), dtype))
    chains, inject_all = bptt.chain_schedule(T, window)
    dZ = np.empty((T, B, 4 * H), dtype)     # every element stored at a chain's first visit (bptt.revisits)
    dz, dh, dc = np.empty((2, B, 4 * H), dtype), np.empty((B, H), dtype), np.empty((B, H), dtype)
    dh0, dc0 = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
    tiling = bptt.plan_tiles(B, 4 * H, H, T, H, behind=window is None)
    args = (cache["gates"], cache["hs"], cache["cs"], operand(W_hh, tiling.product), np.ascontiguousarray(dy),
            np.ascontiguousarray(dstate[0]), np.ascontiguousarray(dstate[1]), chains, inject_all,
            dZ, dz, dh, dc, dh0, dc0)
    hs = cache["hs"]
    with bptt.deferred() as after_loop:                             # the products after the loop, recorded:
        grads = {"W_ih": bptt.weight_gradient(dZ, cache["x"]),     # z = x W_ih^T + …
                 "W_hh": bptt.weight_gradient(dZ, hs[:-1]),         # z = … + h_prev W_hh^T
                 "b": bptt.bias_gradient(dZ),                                # z = … + b
                 "x": bptt.input_gradient(dZ, W_ih),
                 "state0": (dh0, dc0)}
    # ... run_tiles fills them: after the loop with one hand-off, or alongside it on an idle thread
    bptt.run_tiles(_backward_tile, args, B, H, tiling, then=after_loop, stream=T if window is None else 0)
    return grads


def step_forward(params, x_t, state, **options):
    """One step, ``x_t (B, D)``: the compiled loop on a sequence of length 1 -> ``(state, cache)``."""
    _, state, cache = forward(params, x_t[None], state, **options)
    return state, cache


def step_backward(params, cache, dstate):
    """Backward of one step: ``dstate = (dh, dc[, di, df, do])`` -> ``(dx_t, dstate_prev, dparams)``."""
    g = backward(params, cache, np.zeros_like(dstate[0])[None], dstate)
    return g["x"][0], g["state0"], {k: g[k] for k in param_shapes(1, 1, **cache["options"])}


# ================================================================================================
# The variants: every other combination of ``numpy_ref.lstm.OPTIONS`` (Greff et al.'s Odyssey).
#
# The default path above is the PyTorch LSTM and is left alone; ``forward``/``backward`` send any
# non-default option here.  One forward and one backward kernel cover all 160 accepted option
# combinations: the options travel as one integer of bit flags (``variant_flags``), so each
# kernel is compiled once per dtype, not once per combination.
# ================================================================================================
state_names, ODYSSEY = _spec.state_names, _spec.ODYSSEY

#: bit flags of the ``variant`` integer the kernels take, and the equations each one switches
#: (symbols of ``numpy_ref.lstm``; a flag that is not set leaves the default equation):
PEEPHOLES = 1           #: z_i += p_i ⊙ c_{t-1},  z_f += p_f ⊙ c_{t-1},  z_o += p_o ⊙ c_t
NO_INPUT_GATE = 2       #: i_t = 1                    (input_gate=False, NIG)
NO_FORGET_GATE = 4      #: f_t = 1                    (forget_gate=False, NFG)
NO_OUTPUT_GATE = 8      #: o_t = 1                    (output_gate=False, NOG)
LINEAR_INPUT = 16       #: g_t = z_g                  (input_activation=False, NIAF)
LINEAR_OUTPUT = 32      #: h_t = o_t ⊙ c_t            (output_activation=False, NOAF)
COUPLED = 64            #: f_t = 1 - i_t              (coupled=True, CIFG)
GATE_RECURRENCE = 128   #: [z_i|z_f|z_o] += [i|f|o]_{t-1} R^T, state (h, c, i, f, o)   (FGR)

_FLAG_OF_OPTION = {"peepholes": (True, PEEPHOLES), "input_gate": (False, NO_INPUT_GATE),
                   "forget_gate": (False, NO_FORGET_GATE), "output_gate": (False, NO_OUTPUT_GATE),
                   "input_activation": (False, LINEAR_INPUT), "output_activation": (False, LINEAR_OUTPUT),
                   "coupled": (True, COUPLED), "gate_recurrence": (True, GATE_RECURRENCE)}


def variant_flags(options) -> int:
    """The bit flags of a full option dict (``{"peepholes": True}`` -> ``PEEPHOLES``); 0 is the default LSTM."""
    return sum(flag for name, (value, flag) in _FLAG_OF_OPTION.items() if options[name] == value)


@njit(inline="always", **KERNEL_OPTIONS)
def _variant_cell_forward(z, rz, peep, c_prev, h, c, ifo, one, peep_on, has_i, has_f, has_o,
                          act_in, act_out, coupled, fgr):
    """One row of one step.  ``z (4H)`` holds ``G[t] + h_{t-1} W_hh^T`` and becomes ``[i|f|g|o]``.

    ``rz (3H)`` = ``[i|f|o]_{t-1} R^T`` (FGR), ``peep (3, H)`` = ``[p_i; p_f; p_o]``; ``ifo (3H)``
    receives ``[i|f|o]_t`` (FGR).  A disabled gate is stored as 1, as in ``numpy_ref``.
    """
    H = h.shape[0]
    for j in range(H):
        z_i, z_f, z_g, z_o = z[j], z[H + j], z[2 * H + j], z[3 * H + j]
        if fgr:                                               # [z_i|z_f|z_o] += [i|f|o]_{t-1} R^T
            z_i += rz[j]
            z_f += rz[H + j]
            z_o += rz[2 * H + j]
        if peep_on:                                           # z_i, z_f += p ⊙ c_{t-1}
            z_i += peep[0, j] * c_prev[j]
            z_f += peep[1, j] * c_prev[j]
        i = sigmoid(z_i) if has_i else one                    # i = σ(z_i)   | 1
        if coupled:
            f = one - i                                       # f = 1 - i
        else:
            f = sigmoid(z_f) if has_f else one                # f = σ(z_f)   | 1
        g = tanh(z_g) if act_in else z_g                      # g = tanh(z_g) | z_g
        cj = f * c_prev[j] + i * g                            # c = f ⊙ c_prev + i ⊙ g
        if peep_on:
            z_o += peep[2, j] * cj                            # z_o += p_o ⊙ c
        o = sigmoid(z_o) if has_o else one                    # o = σ(z_o)   | 1
        tc = tanh(cj) if act_out else cj                      # tanh(c)      | c
        c[j] = cj
        h[j] = o * tc                                         # h = o ⊙ tanh(c)
        z[j], z[H + j], z[2 * H + j], z[3 * H + j] = i, f, g, o
        if fgr:
            ifo[j], ifo[H + j], ifo[2 * H + j] = i, f, o


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _variant_forward_rows(gates, WT, RT, peep, hs, cs, ifo, rz, variant, r0, r1, use_blas):
    """The whole recurrence of any variant for rows ``r0 .. r1-1``.

    As ``_forward_tile``, plus ``RT = R^T (3H, 3H)``, ``ifo (T+1, B, 3H)`` with
    ``ifo[0] = [i|f|o]_{-1}`` from the initial state and ``rz (B, 3H)`` scratch (FGR only;
    zero-width arrays otherwise).
    """
    peep_on, fgr = (variant & PEEPHOLES) != 0, (variant & GATE_RECURRENCE) != 0
    has_i, has_f, has_o = ((variant & NO_INPUT_GATE) == 0, (variant & NO_FORGET_GATE) == 0,
                           (variant & NO_OUTPUT_GATE) == 0)
    act_in, act_out = (variant & LINEAR_INPUT) == 0, (variant & LINEAR_OUTPUT) == 0
    coupled = (variant & COUPLED) != 0
    one = hs.dtype.type(1)
    for t in range(gates.shape[0]):
        matmul_rows(hs[t], WT, gates[t], r0, r1, use_blas)      # z_t = G[t] + h_{t-1} W_hh^T
        if fgr:
            for r in range(r0, r1):
                fill(rz[r], 0)
            matmul_rows(ifo[t], RT, rz, r0, r1, use_blas)        # rz = [i|f|o]_{t-1} R^T
        for r in range(r0, r1):
            _variant_cell_forward(gates[t, r], rz[r], peep, cs[t, r], hs[t + 1, r], cs[t + 1, r],
                                  ifo[t + 1, r], one, peep_on, has_i, has_f, has_o, act_in, act_out,
                                  coupled, fgr)


@njit(inline="always", **KERNEL_OPTIONS)
def _variant_cell_backward(acts, peep, c_prev, c, dh, dc, dg, dz, dzr, one, peep_on, has_i, has_f,
                           has_o, act_in, act_out, coupled, fgr):
    """Backward of one row of one step (``numpy_ref.lstm.step_backward`` line by line).

    Reads ``dh``, ``dc`` (errors at ``h_t``, ``c_t``) and, under FGR, ``dg (3H)`` = the errors
    at ``[i|f|o]_t`` carried from step ``t+1``.  Writes ``dz (4H)``, ``dzr (3H)`` =
    ``[dz_i|dz_f|dz_o]`` (FGR) and leaves ``dc_{t-1}`` in ``dc``.  A disabled gate's slope is
    0, so its ``dz`` block is exactly zero.
    """
    H = dh.shape[0]
    zero = one - one
    for j in range(H):
        i, f, g, o = acts[j], acts[H + j], acts[2 * H + j], acts[3 * H + j]
        cj = c[j]
        tc = tanh(cj) if act_out else cj                          # tc = tanh(c) | c
        si = dsigmoid_from_output(i) if has_i else zero           # i = σ(z_i)
        sf = dsigmoid_from_output(f) if (has_f and not coupled) else zero   # f = σ(z_f)
        sg = dtanh_from_output(g) if act_in else one              # g = tanh(z_g)
        so = dsigmoid_from_output(o) if has_o else zero           # o = σ(z_o)
        sc = dtanh_from_output(tc) if act_out else one            # d tc / d c
        do = dh[j] * tc                                           # h = o ⊙ tc
        if fgr:
            do += dg[2 * H + j]                                   # o_t is also carried as state
        dz_o = do * so                                            # o = σ(z_o)
        dcj = dc[j] + dh[j] * o * sc                              # h = o ⊙ tc(c); c also feeds t+1
        if peep_on:
            dcj += dz_o * peep[2, j]                              # z_o = … + p_o ⊙ c
        di = dcj * g                                              # c = … + i ⊙ g
        dgj = dcj * i
        df = dcj * c_prev[j]                                      # c = f ⊙ c_prev + …
        if fgr:
            di += dg[j]                                           # i_t, f_t also carried as state
            df += dg[H + j]
        dcp = dcj * f                                             # c = f ⊙ c_prev + …
        if coupled:
            di -= df                                              # f = 1 - i
        dz_i = di * si                                            # i = σ(z_i)
        dz_f = df * sf                                            # f = σ(z_f)
        dz_g = dgj * sg                                           # g = tanh(z_g)
        if peep_on:
            dcp += dz_i * peep[0, j] + dz_f * peep[1, j]          # z_i, z_f = … + p ⊙ c_prev
        dc[j] = dcp
        dz[j], dz[H + j], dz[2 * H + j], dz[3 * H + j] = dz_i, dz_f, dz_g, dz_o
        if fgr:
            dzr[j], dzr[H + j], dzr[2 * H + j] = dz_i, dz_f, dz_o


@njit(cache=True, nogil=True, **KERNEL_OPTIONS)
def _variant_backward_rows(gates, cs, W_hh, R, peep, dy, dstate_h, dstate_c, dstate_g, variant, chains,
                           inject_all, dZ, dz, dzr, dh, dc, dg, dh0, dc0, dg0, r0, r1, use_blas):
    """Backward chains of any variant for rows ``r0 .. r1-1`` (``chains`` as in ``_backward_tile``).

    Under FGR the chain also carries ``dg (B, 3H)``, the error at ``[i|f|o]_t``:
    ``dg_{t-1} = [dz_i|dz_f|dz_o] R``; ``dstate_g``, ``dg0`` are its final/initial values
    (zero-width arrays otherwise).
    """
    peep_on, fgr = (variant & PEEPHOLES) != 0, (variant & GATE_RECURRENCE) != 0
    has_i, has_f, has_o = ((variant & NO_INPUT_GATE) == 0, (variant & NO_FORGET_GATE) == 0,
                           (variant & NO_OUTPUT_GATE) == 0)
    act_in, act_out = (variant & LINEAR_INPUT) == 0, (variant & LINEAR_OUTPUT) == 0
    coupled = (variant & COUPLED) != 0
    one = dZ.dtype.type(1)
    T = gates.shape[0]
    for n in range(chains.shape[0]):
        s, lo = chains[n, 0], chains[n, 1]
        for r in range(r0, r1):
            if s == T - 1:
                copy(dh[r], dstate_h[r])
                copy(dc[r], dstate_c[r])
                copy(dg[r], dstate_g[r])
            else:
                fill(dh[r], 0)
                fill(dc[r], 0)
                fill(dg[r], 0)
        for t in range(s, lo - 1, -1):
            for r in range(r0, r1):
                if inject_all or t == s:
                    add(dh[r], dy[t, r])                        # y_t = h_t
                _variant_cell_backward(gates[t, r], peep, cs[t, r], cs[t + 1, r], dh[r], dc[r], dg[r],
                                       dz[r], dzr[r], one, peep_on, has_i, has_f, has_o, act_in,
                                       act_out, coupled, fgr)
                add(dZ[t, r], dz[r])
                fill(dh[r], 0)
                fill(dg[r], 0)
            matmul_rows(dz, W_hh, dh, r0, r1, use_blas)         # dh_{t-1} = dz W_hh
            if fgr:
                matmul_rows(dzr, R, dg, r0, r1, use_blas)       # d[i|f|o]_{t-1} = [dz_i|dz_f|dz_o] R
        if lo == 0:
            for r in range(r0, r1):
                add(dh0[r], dh[r])
                add(dc0[r], dc[r])
                add(dg0[r], dg[r])


def _variant_forward(params, x, state0, opts, T, B, H, dtype):
    """``forward`` for any non-default options (same returns; the cache records the flags)."""
    variant = variant_flags(opts)
    fgr = opts["gate_recurrence"]
    W_ih, W_hh, b = bptt.contiguous(params, ("W_ih", "W_hh", "b"))
    gates = bptt.input_projection(x, W_ih, b)                   # G = X W_ih^T + b   (T, B, 4H)
    hs = np.empty((T + 1, B, H), dtype)
    cs = np.empty((T + 1, B, H), dtype)
    ifo = np.empty((T + 1, B, 3 * H if fgr else 0), dtype)      # [i|f|o]_{t-1} for step t (FGR)
    if state0 is None:
        hs[0], cs[0], ifo[0] = 0, 0, 0
    else:
        hs[0], cs[0] = state0[0], state0[1]
        if fgr:
            ifo[0] = np.concatenate(state0[2:5], axis=1)
    peep = np.stack([params[k] for k in ("p_i", "p_f", "p_o")]) if opts["peepholes"] \
        else np.zeros((3, 0), dtype)
    rz = np.empty((B, 3 * H if fgr else 0), dtype)
    use_blas, n_chunks = bptt.plan(B, H, 4 * H, T)
    RT = operand(params["R"].T, use_blas) if fgr else np.zeros((0, 0), dtype)
    bptt.run(_variant_forward_rows, (gates, operand(W_hh.T, use_blas), RT, peep, hs, cs, ifo, rz, variant),
             B, use_blas, n_chunks)
    state = (hs[T].copy(), cs[T].copy())
    if fgr:
        state += tuple(ifo[T, :, k * H:(k + 1) * H].copy() for k in range(3))
    cache = {"x": x, "gates": gates, "hs": hs, "cs": cs, "ifo": ifo, "options": opts,
             "variant": variant, "shape": (T, B, H), "dtype": dtype}
    return hs[1:], state, cache


def _variant_backward(params, cache, dy, dstate, window):
    """``backward`` for a cache made by ``_variant_forward``."""
    T, B, H = cache["shape"]
    dtype, opts = cache["dtype"], cache["options"]
    fgr = opts["gate_recurrence"]
    names = state_names(**opts)
    dstate = check_backward_call(_spec, cache["shape"], dtype, dy, dstate, names)
    W_ih, W_hh = bptt.contiguous(params, ("W_ih", "W_hh"))
    if dstate is None:
        dstate = tuple(np.zeros((B, H), dtype) for _ in names)
    dstate_g = np.concatenate(dstate[2:5], axis=1) if fgr else np.zeros((B, 0), dtype)
    chains, inject_all = bptt.chain_schedule(T, window)
    G3 = 3 * H if fgr else 0
    dZ = np.zeros((T, B, 4 * H), dtype)
    dz, dzr = np.empty((B, 4 * H), dtype), np.empty((B, G3), dtype)
    dh, dc, dg = np.empty((B, H), dtype), np.empty((B, H), dtype), np.empty((B, G3), dtype)
    dh0, dc0, dg0 = np.zeros((B, H), dtype), np.zeros((B, H), dtype), np.zeros((B, G3), dtype)
    peep = np.stack([params[k] for k in ("p_i", "p_f", "p_o")]) if opts["peepholes"] \
        else np.zeros((3, 0), dtype)
    use_blas, n_chunks = bptt.plan(B, 4 * H, H, T)
    R = operand(params["R"], use_blas) if fgr else np.zeros((0, 0), dtype)
    args = (cache["gates"], cache["cs"], operand(W_hh, use_blas), R, peep, np.ascontiguousarray(dy),
            np.ascontiguousarray(dstate[0]), np.ascontiguousarray(dstate[1]), dstate_g, cache["variant"],
            chains, inject_all, dZ, dz, dzr, dh, dc, dg, dh0, dc0, dg0)
    bptt.run(_variant_backward_rows, args, B, use_blas, n_chunks)
    hs, cs = cache["hs"], cache["cs"]
    with bptt.together():                                          # the products after the loop: one hand-off
        grads = {"W_ih": bptt.weight_gradient(dZ, cache["x"]),    # z = x W_ih^T + …
                 "W_hh": bptt.weight_gradient(dZ, hs[:-1]),        # z = … + h_prev W_hh^T
                 "b": bptt.bias_gradient(dZ),                               # z = … + b
                 "x": bptt.input_gradient(dZ, W_ih)}
    state0 = (dh0, dc0)
    if opts["peepholes"]:
        grads["p_i"] = np.einsum("tbj,tbj->j", dZ[:, :, :H], cs[:-1])          # z_i = … + p_i ⊙ c_prev
        grads["p_f"] = np.einsum("tbj,tbj->j", dZ[:, :, H:2 * H], cs[:-1])     # z_f = … + p_f ⊙ c_prev
        grads["p_o"] = np.einsum("tbj,tbj->j", dZ[:, :, 3 * H:], cs[1:])       # z_o = … + p_o ⊙ c
    if fgr:
        dZ_ifo = np.concatenate([dZ[:, :, :2 * H], dZ[:, :, 3 * H:]], axis=2)  # (T, B, 3H)
        grads["R"] = bptt.weight_gradient(dZ_ifo, cache["ifo"][:-1])         # [z_i|z_f|z_o] += a_prev R^T
        state0 += (dg0[:, :H], dg0[:, H:2 * H], dg0[:, 2 * H:])
    grads["state0"] = state0
    return grads

"""The Numba backend against the NumPy reference: same outputs, states and gradients.

Error measure: normwise relative error ``max|a - b| / max|b|`` per array (``b`` from
``numpy_ref`` in the same dtype).  Bounds from the acceptance criteria: 1e-10 in
float64, 1e-5 in float32.  Every parameter, the initial state and the final-state
gradient are random.  All three ways of computing the recurrent product (compiled
loops, BLAS, packed panels) are checked, and both ways of putting the threads on it:
blocks of batch rows, and blocks of hidden units with the per-step barrier
(``bptt.split``).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnbook as rb
from rnnbook import dispatch

numba_cpu = pytest.importorskip("rnnbook.numba_cpu")
from rnnbook.numba_cpu import bptt  # noqa: E402

CELLS = [("rnn", {"nonlinearity": "tanh"}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}),
         ("gru", {"reset_after": True}), ("gru", {"reset_after": False})]
TOL = {np.float64: 1e-10, np.float32: 1e-5}
STRATEGIES = ["loops", "panels"] + (["blas"] if numba_cpu.gemm.HAVE_BLAS else [])
#: how tile kernels put threads on the work: as planned, two row blocks, two or three unit blocks
SPLITS = [("auto", None), ("rows", 2), ("units", 2), ("units", 3)]


def rel_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return diff / scale if scale > 0 else diff


def random_problem(arch, opts, T, B, D, H, dtype, seed, weight_noise=0.3):
    """Parameters of ``init_params`` with noise on every entry (``weight_noise`` on the weights,
    0.3 on the biases), inputs, initial states and the errors to inject."""
    rng = np.random.default_rng(seed)
    params = rb.init_params(arch, D, H, seed=seed, dtype=dtype, **opts)
    params = {k: (v + (0.3 if k.startswith("b") else weight_noise) * rng.standard_normal(v.shape)).astype(dtype)
              for k, v in params.items()}
    n_state = 2 if arch == "lstm" else 1
    x = rng.standard_normal((T, B, D)).astype(dtype)
    state0 = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(n_state))
    dy = rng.standard_normal((T, B, H)).astype(dtype)
    dstate = tuple(rng.standard_normal((B, H)).astype(dtype) for _ in range(n_state))
    return params, x, state0, dy, dstate


def compare(arch, opts, T, B, D, H, dtype, strategy, window, seed=0, use_state=True, split=("auto", None),
            weight_noise=0.3):
    params, x, state0, dy, dstate = random_problem(arch, opts, T, B, D, H, dtype, seed, weight_noise)
    if not use_state:
        state0 = dstate = None
    y0, s0, c0 = rb.forward(arch, params, x, state0, backend="numpy", **opts)
    g0 = rb.backward(arch, params, c0, dy, dstate, window=window)
    with bptt.strategy(strategy), bptt.split(*split):
        y1, s1, c1 = rb.forward(arch, params, x, state0, backend="numba", **opts)
        g1 = rb.backward(arch, params, c1, dy, dstate, window=window)
    assert y1.dtype == dtype and all(s.dtype == dtype for s in s1)
    errors = {"y": rel_error(y1, y0)}
    errors.update({f"state[{i}]": rel_error(a, b) for i, (a, b) in enumerate(zip(s1, s0))})
    for k in list(params) + ["x"]:
        assert g1[k].dtype == dtype, k
        errors[f"d{k}"] = rel_error(g1[k], g0[k])
    errors.update({f"dstate0[{i}]": rel_error(a, b) for i, (a, b) in enumerate(zip(g1["state0"], g0["state0"]))})
    # a NaN error compares False with everything: make it the worst, so that it fails the check
    worst = max(errors, key=lambda k: np.inf if np.isnan(errors[k]) else errors[k])
    assert errors[worst] <= TOL[dtype], (f"{arch} {opts} T,B,D,H={T, B, D, H} {np.dtype(dtype)} {strategy} "
                                         f"window={window} split={split}: {worst} off by {errors[worst]:.2e}\n{errors}")
    return errors


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell=st.sampled_from(CELLS), T=st.integers(1, 7), B=st.integers(1, 6), D=st.integers(1, 6),
       H=st.integers(1, 9), dtype=st.sampled_from([np.float64, np.float32]),
       strategy=st.sampled_from(STRATEGIES), window=st.one_of(st.none(), st.integers(1, 8)),
       use_state=st.booleans(), seed=st.integers(0, 2**16), split=st.sampled_from(SPLITS))
def test_parity_with_numpy_reference(cell, T, B, D, H, dtype, strategy, window, use_state, seed, split):
    arch, opts = cell
    compare(arch, opts, T, B, D, H, dtype, strategy, window, seed, use_state, split)


@pytest.mark.parametrize("arch,opts", CELLS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("split", SPLITS)
def test_parity_fixed_shapes(arch, opts, dtype, strategy, split):
    """Every cell, dtype, product path and thread split at least once; H = 37 puts unit-block
    edges inside a SIMD vector's worth of units and B = 5 gives the row blocks unequal sizes."""
    compare(arch, opts, 6, 5, 4, 37, dtype, strategy, None, seed=1, split=split)
    compare(arch, opts, 6, 5, 4, 37, dtype, strategy, 3, seed=2, split=split)


@pytest.mark.parametrize("arch,opts", CELLS)
def test_panels_with_whole_row_blocks(arch, opts):
    """The panel product inside the cells with more rows per thread than one kernel block
    (``panels.ROWS``): whole blocks, a partial one, and a second one per thread."""
    B = 2 * numba_cpu.panels.ROWS + 3
    for dtype in (np.float64, np.float32):
        for window in (None, 2):
            compare(arch, opts, 4, B, 5, 37, dtype, "panels", window, seed=7, split=("rows", 2))
            compare(arch, opts, 4, B, 5, 37, dtype, "panels", window, seed=8, split=("rows", 1))


def poison_empty(monkeypatch):
    """Every ``np.empty`` of the tile cells and of ``bptt`` comes filled with NaN (float arrays)."""
    import types
    from rnnbook.numba_cpu import gru, lstm, rnn

    def poisoned(shape, dtype=float, *args, **kwargs):
        out = np.empty(shape, dtype, *args, **kwargs)
        if np.dtype(dtype).kind == "f":
            out.fill(np.nan)
        return out
    for module in (rnn, lstm, gru, bptt):
        fake = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
        fake.empty = poisoned
        monkeypatch.setattr(module, "np", fake)


def test_gate_gradient_buffers_need_no_zeroing(monkeypatch):
    """The backward tile kernels store every element of their gate-gradient arrays at a
    chain's first visit (``bptt.revisits``), so those are allocated with ``np.empty``.
    Here every ``np.empty`` of the three modules comes filled with NaN: a kernel that
    added into an element instead, or skipped one, would leave NaN in a gradient."""
    poison_empty(monkeypatch)
    for n, ((arch, opts), split, window) in enumerate(
            (c, sp, w) for c in CELLS for sp in SPLITS for w in (None, 1, 3, 10)):
        strategy = STRATEGIES[n % len(STRATEGIES)]
        compare(arch, opts, 6, 5, 4, 37, np.float64, strategy, window, seed=n, split=split)
        compare(arch, opts, 3, 1, 2, 3, np.float64, strategy, window, seed=n + 1000, split=split)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_threaded_row_blocks_are_used_and_agree(monkeypatch, strategy):
    """With two threads and B >= 4 the batch is split into row blocks; results equal one thread's
    (outputs bit for bit, except on the panels, where the input projection takes another route)."""
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    old = numba.get_num_threads()
    params, x, state0, dy, dstate = random_problem("lstm", {}, 5, 8, 3, 6, np.float64, 3)
    try:
        numba.set_num_threads(2)
        with bptt.strategy("loops"):
            enough = -(-bptt.MIN_MACS_FOR_THREADS // (8 * 16 * 64))   # steps that make it pay
            assert bptt.plan(8, 16, 64, enough) == (False, 2)
            assert bptt.plan(8, 16, 64, enough - 1) == (False, 1)  # too little work to hand off
            assert bptt.plan(3, 16, 64, enough) == (False, 1)      # fewer than two rows per thread
            monkeypatch.setattr(bptt, "MIN_MACS_FOR_THREADS", 0)   # so that this small case splits
            assert bptt.plan(8, 6, 24, 5) == (False, 2)
        with bptt.strategy(strategy):
            y2, s2, c2 = rb.forward("lstm", params, x, state0, backend="numba")
            g2 = rb.backward("lstm", params, c2, dy, dstate)
            numba.set_num_threads(1)
            assert bptt.plan(8, 6, 24, 5)[1] == 1
            y1, s1, c1 = rb.forward("lstm", params, x, state0, backend="numba")
            g1 = rb.backward("lstm", params, c1, dy, dstate)
    finally:
        numba.set_num_threads(old)
    # on the panels, two row blocks compute the input projection through the panels
    # (bptt._own_inputs) and one block, this small, through NumPy's matmul (below
    # bptt.INPUT_PANELS_MIN_MACS), which may add in another order
    if strategy == "panels":
        np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_array_equal(y1, y2)
    for k in ("W_ih", "W_hh", "b", "x"):
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("arch,opts", CELLS)
def test_window_at_least_T_is_full_bptt(arch, opts):
    """BPTT(k) with k >= T runs the windowed chains and must equal full BPTT."""
    params, x, state0, dy, dstate = random_problem(arch, opts, 5, 3, 2, 4, np.float64, 4)
    _, _, cache = rb.forward(arch, params, x, state0, backend="numba", **opts)
    full = rb.backward(arch, params, cache, dy, dstate)
    for k in (5, 9):
        win = rb.backward(arch, params, cache, dy, dstate, window=k)
        for name in list(params) + ["x"]:
            np.testing.assert_allclose(win[name], full[name], rtol=1e-12, atol=1e-13)
    short = rb.backward(arch, params, cache, dy, dstate, window=2)
    assert not np.allclose(short["W_hh"], full["W_hh"])      # truncation really truncates


@pytest.mark.parametrize("arch,opts", CELLS)
def test_gradient_check_through_numba(arch, opts):
    """Centred differences of the Numba forward against the Numba backward (float64)."""
    rng = np.random.default_rng(5)
    D, H, T, B = 3, 4, 4, 2
    params = rb.init_params(arch, D, H, seed=5, **opts)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in params.items()}
    x = rng.standard_normal((T, B, D))
    n_state = 2 if arch == "lstm" else 1
    state0 = tuple(rng.standard_normal((B, H)) for _ in range(n_state))
    report = rb.gradcheck.check_architecture(arch, params, x, state0, backend="numba", **opts)
    report.assert_ok()


@pytest.mark.parametrize("arch,opts", CELLS)
def test_step_functions_match_reference(arch, opts):
    """``step_forward``/``step_backward`` exist with the reference's signatures and results."""
    from rnnbook import numpy_ref
    ref, mod = getattr(numpy_ref, arch), getattr(numba_cpu, arch)
    params, x, state0, dy, dstate = random_problem(arch, opts, 1, 3, 2, 5, np.float64, 6)
    s_ref, c_ref = ref.step_forward(params, x[0], state0, **opts)
    s_nb, c_nb = mod.step_forward(params, x[0], state0, **opts)
    for a, b in zip(s_nb, s_ref):
        assert rel_error(a, b) < 1e-12
    dx_ref, ds_ref, dp_ref = ref.step_backward(params, c_ref, dstate)
    dx_nb, ds_nb, dp_nb = mod.step_backward(params, c_nb, dstate)
    assert rel_error(dx_nb, dx_ref) < 1e-12
    for a, b in zip(ds_nb, ds_ref):
        assert rel_error(a, b) < 1e-12
    for k in params:
        assert rel_error(dp_nb[k], dp_ref[k]) < 1e-12


def test_registered_and_composites_run_on_numba():
    assert "numba" in rb.available_backends()
    rows = set(rb.coverage())
    for arch in ("rnn", "lstm", "gru"):
        for op in ("init_params", "forward", "backward"):
            assert (arch, op, "numba") in rows
    assert ("lstm", "rtrl", "numba") not in rows
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 2, 3))
    dy = rng.standard_normal((4, 2, 10))
    params = rb.init_params("stacked", 3, 5, seed=1, cell="gru", num_layers=2, bidirectional=True)
    out = {}
    for be in ("numpy", "numba"):
        y, s, cache = rb.forward("stacked", params, x, backend=be, cell="gru", bidirectional=True)
        out[be] = (y, rb.backward("stacked", params, cache, dy))
    assert rel_error(out["numba"][0], out["numpy"][0]) < 1e-10
    for k in list(params) + ["x"]:
        assert rel_error(out["numba"][1][k], out["numpy"][1][k]) < 1e-10
    with rb.use_backend("numba"):
        _, _, cache = rb.forward("lstm", rb.init_params("lstm", 3, 4), x)
    assert cache["backend"] == "numba"


@pytest.mark.parametrize("bad,err", [
    (lambda p, x: (p, x.astype(np.float32)), TypeError),           # dtype mix
    (lambda p, x: (p, x[0]), ValueError),                           # not (T, B, D)
    (lambda p, x: ({**p, "W_hh": p["W_hh"][:, :-1]}, x), ValueError),  # wrong shape
])
def test_bad_input_is_rejected_like_the_reference(bad, err):
    params = rb.init_params("lstm", 3, 4)
    x = np.zeros((2, 2, 3))
    p, xx = bad(params, x)
    with pytest.raises(err):
        rb.forward("lstm", p, xx, backend="numba")
    with pytest.raises(TypeError, match="unknown option"):
        dispatch.forward("gru", rb.init_params("gru", 3, 4), x, backend="numba", bogus=1)
    with pytest.raises(ValueError, match="must have the shape of the outputs"):
        _, _, cache = rb.forward("lstm", params, x, backend="numba")
        rb.backward("lstm", params, cache, np.zeros((2, 2, 5)))


def test_blas_thread_count_is_restored():
    """The recurrence runs BLAS single-threaded and gives NumPy its thread count back."""
    gemm = numba_cpu.gemm
    if gemm._threads is None:
        pytest.skip("no OpenBLAS thread control here")
    get, _ = gemm._threads
    before = get()
    params, x, state0, dy, dstate = random_problem("gru", {}, 3, 8, 4, 40, np.float32, 8)
    with bptt.strategy("blas"):
        _, _, cache = rb.forward("gru", params, x, backend="numba")
        with gemm.single_threaded_blas():
            assert get() == 1
        rb.backward("gru", params, cache, dy)
    assert get() == before


@pytest.mark.parametrize("use_blas", [False, True] if numba_cpu.gemm.HAVE_BLAS else [False])
@pytest.mark.parametrize("B,K,N,r0,r1", [(8, 256, 1024, 2, 6),     # few rows, wide: column panels
                                         (4, 1030, 250, 0, 4),     # panel width not dividing N
                                         (5, 7, 9, 1, 5), (16, 256, 1024, 0, 16), (3, 4, 5, 2, 2)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matmul_rows(use_blas, B, K, N, r0, r1, dtype):
    """``C[r] += A[r] @ M`` on a block of rows, also on column slices, both product paths."""
    rng = np.random.default_rng(B * K + N)
    A, M, C = (rng.standard_normal(s).astype(dtype) for s in ((B, K + 2), (K, N + 3), (B, N + 3)))
    A, M, C2 = A[:, 1:K + 1], M[:, :N], C.copy()
    ref = C.copy()
    ref[r0:r1, :N] += A[r0:r1] @ M
    numba_cpu.gemm.matmul_rows(A, M, C2[:, :N], r0, r1, use_blas)
    assert rel_error(C2, ref) < (1e-13 if dtype == np.float64 else 2e-6)

"""How the Numba backend puts threads on a recurrence: tilings, unit blocks and the step barrier.

Parity of every cell under every split is in ``test_numba_parity.py``; here are the
pieces: the unit-block edges, the planner's choice, and the barrier itself, run by
real threads that check after every step that nobody has run ahead.
"""
import concurrent.futures

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

numba = pytest.importorskip("numba")
from rnnbook.numba_cpu import bptt, sync  # noqa: E402


@given(H=st.integers(1, 600), n=st.integers(1, 8))
def test_unit_bounds_cover_the_units_once(H, n):
    if n > H:
        n = H
    bounds = bptt.unit_bounds(H, n)
    assert len(bounds) == n
    assert bounds[0][0] == 0 and bounds[-1][1] == H
    for (a0, a1), (b0, b1) in zip(bounds, bounds[1:]):
        assert a1 == b0
    assert all(j1 > j0 for j0, j1 in bounds)                   # no empty block
    if H >= 16 * n:
        assert all(j0 % 16 == 0 for j0, _ in bounds)          # edges on whole SIMD vectors
        sizes = [j1 - j0 for j0, j1 in bounds]
        assert max(sizes) - min(sizes) <= 16 + H % 16


def test_plan_tiles_splits_rows_unless_told(monkeypatch):
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    with bptt.strategy("blas" if bptt.gemm.HAVE_BLAS else "loops"):
        use_blas = bptt.gemm.HAVE_BLAS
        assert bptt.plan_tiles(32, 256, 1024, 128, 256) == (use_blas, 2, 1, False)     # enough rows: rows
        big = bptt.plan_tiles(64, 1024, 4096, 128, 1024)                         # a large GEMM per step:
        assert big == ((True, 1, 1, True) if use_blas else (False, 2, 1, False))  # BLAS threads it
        assert bptt.plan_tiles(1, 128, 512, 1024, 128) == (use_blas, 1, 1, False)      # one row: one block
        with bptt.split("units", 3):
            assert bptt.plan_tiles(64, 256, 1024, 128, 256) == (use_blas, 1, 3, False)
            assert bptt.plan_tiles(1, 2, 2, 5, 2) == (use_blas, 1, 2, False)           # never more blocks than units
        with bptt.split("rows"):                                                  # forced rows: no BLAS threads
            assert bptt.plan_tiles(64, 1024, 4096, 128, 1024) == (use_blas, 2, 1, False)
        with bptt.split("units"):
            assert bptt.plan_tiles(1, 128, 512, 1024, 128) == (use_blas, 1, 2, False)  # one per thread
        with bptt.split("rows", 4):
            assert bptt.plan_tiles(3, 8, 8, 5, 8) == (use_blas, 3, 1, False)           # never more blocks than rows
        assert bptt.plan_tiles(1, 128, 512, 1024, 128) == (use_blas, 1, 1, False)      # restored on exit
    with pytest.raises(ValueError, match="split must be"):
        with bptt.split("columns"):
            pass
    with pytest.raises(ValueError, match="at least 1"):
        with bptt.split("units", 0):
            pass


@numba.njit(nogil=True)
def _barrier_walk(flags, me, n, steps, seen, delay):
    """Each step: write my step number, pass the barrier, then record everybody's number.

    After barrier ``t`` every thread must see all others at step ``t`` or later -- never
    earlier (that would be a thread that ran ahead of the barrier)."""
    for t in range(1, steps + 1):
        x = 0.0
        for _ in range(delay[me, t - 1]):     # uneven work, so that the threads drift apart
            x += 1e-9
        seen[me, t - 1, me] = t + (x > 1e9)
        sync.arrive_and_wait(flags, me, n, t)
        for k in range(n):
            seen[me, t - 1, k] = min(seen[me, t - 1, k], sync.load_acquire(flags, k * sync.PAD))


@settings(max_examples=5, deadline=None)
@given(n=st.integers(2, 3), seed=st.integers(0, 2**16))
def test_barrier_lets_no_thread_run_ahead(n, seed):
    steps = 300
    rng = np.random.default_rng(seed)
    delay = rng.integers(0, 3000, size=(n, steps))
    flags = sync.new_flags(n)
    seen = np.full((n, steps, n), 10**9, np.int64)
    with concurrent.futures.ThreadPoolExecutor(n - 1) as pool:
        others = [pool.submit(_barrier_walk, flags, k, n, steps, seen, delay) for k in range(1, n)]
        _barrier_walk(flags, 0, n, steps, seen, delay)
        for f in others:
            f.result(timeout=60)
    # seen[me, t-1, k] = the counter of thread k as thread me saw it right after barrier t
    for t in range(1, steps + 1):
        assert (seen[:, t - 1, :] >= t).all(), f"a thread passed barrier {t} before all others reached it"
    assert (flags[::sync.PAD] == steps).all()
    assert not flags.reshape(n, sync.PAD)[:, 1:].any()         # padding never written


def test_barrier_of_one_thread_is_free():
    flags = sync.new_flags(1)
    seen = np.zeros((1, 3, 1), np.int64)
    _barrier_walk(flags, 0, 1, 3, seen, np.zeros((1, 3), np.int64))
    assert not flags.any()                                     # n = 1 never touches the counters


@pytest.mark.parametrize("arch,opts", [("rnn", {}), ("lstm", {}), ("gru", {"reset_after": True}),
                                       ("gru", {"reset_after": False})])
def test_blas_threads_path_matches_the_reference(monkeypatch, arch, opts):
    """The large-GEMM plan (one block, BLAS threads inside each product), forced at a small size."""
    import rnnbook as rb
    if not bptt.gemm.HAVE_BLAS:
        pytest.skip("needs NumPy's bundled BLAS")
    monkeypatch.setattr(bptt, "BLAS_THREADS_MIN_MACS", 0)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(11)
    T, B, D, H = 5, 6, 4, 20
    params = {k: v + 0.2 * rng.standard_normal(v.shape) for k, v in rb.init_params(arch, D, H, seed=3, **opts).items()}
    x, dy = rng.standard_normal((T, B, D)), rng.standard_normal((T, B, H))
    y0, _, c0 = rb.forward(arch, params, x, backend="numpy", **opts)
    with bptt.strategy("blas"):
        assert bptt.plan_tiles(B, H, H, T, H).blas_threads
        y1, _, c1 = rb.forward(arch, params, x, backend="numba", **opts)
        np.testing.assert_allclose(y1, y0, rtol=1e-10, atol=1e-12)
        for window in (None, 2):
            g0, g1 = rb.backward(arch, params, c0, dy, window=window), rb.backward(arch, params, c1, dy, window=window)
            for k in list(params) + ["x"]:
                np.testing.assert_allclose(g1[k], g0[k], rtol=1e-10, atol=1e-12, err_msg=f"{k} window={window}")
